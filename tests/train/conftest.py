"""Fixtures for the trainer tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_testing import make_audio_dirs


@pytest.fixture(scope="session")
def audio_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_audio_dirs(tmp_path_factory.mktemp("audio"))
