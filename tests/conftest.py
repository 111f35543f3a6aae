"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker process takes its share of the cores for torch's threads."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files holding a `slow` test first (the rest keep their order): the parallel run hands out
    whole files in this order, so the longest ones start at once instead of ending the run alone."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


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
