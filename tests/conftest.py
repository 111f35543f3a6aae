"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def _tiny_checkpoint(path: Path, seed: int) -> Path:
    """A tiny Music2Latent with small random weights (so decoding is not trivially zero)."""
    from m2l.config import preset
    from m2l.formats import save_checkpoint
    from m2l.models.v1 import Music2Latent

    torch.manual_seed(seed)
    model = Music2Latent(preset("m2l-v1-tiny"))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    save_checkpoint(path, model.state_dict(), model.cfg)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to an m2l checkpoint of the m2l-v1-tiny preset with seeded random weights."""
    return _tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint_other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture as `tiny_checkpoint`, other weights (a different model id)."""
    return _tiny_checkpoint(tmp_path_factory.mktemp("ckpt2") / "tiny-other.safetensors", seed=1)
