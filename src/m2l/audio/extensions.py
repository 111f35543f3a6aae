"""The audio file extensions m2l reads and writes (no torch here: the CLI's parser needs them)."""

from __future__ import annotations

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"}
)
"""Lowercase file extensions that `load_audio` accepts (and the CLI picks up in folders)."""

WRITE_EXTENSIONS: frozenset[str] = frozenset({".wav", ".flac"})
"""Lowercase file extensions that `save_audio` can write."""
