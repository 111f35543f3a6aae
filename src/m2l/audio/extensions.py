"""The audio file extensions m2l reads and writes (no torch here: the CLI's parser needs them)."""

from __future__ import annotations

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"}
)
"""Lowercase file extensions that `load_audio` accepts (and the CLI picks up in folders)."""

WRITE_EXTENSIONS: frozenset[str] = frozenset({".wav", ".flac"})
"""Lowercase file extensions that `save_audio` can write."""

WRITE_SUBTYPES: dict[str, tuple[str, ...]] = {
    ".wav": ("PCM_16", "PCM_24", "FLOAT"),
    ".flac": ("PCM_16", "PCM_24"),
}
"""The sample formats (libsndfile subtypes) `save_audio` writes for each extension."""

SUBTYPES: tuple[str, ...] = ("PCM_16", "PCM_24", "FLOAT")
"""Every sample format `save_audio` writes (`--subtype`)."""

DEFAULT_SUBTYPE = "PCM_24"
"""The sample format of written audio unless told otherwise (24-bit integers)."""
