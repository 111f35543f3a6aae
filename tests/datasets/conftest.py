"""Fixtures of the dataset tests (defined in datasets_testing)."""

from datasets_testing import audio_writer, fake_packages, sine_sf2  # noqa: F401
