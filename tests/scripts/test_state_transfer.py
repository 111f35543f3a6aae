"""`scripts/state_transfer.py`: a training state through a size-limited channel and back."""

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_testing import save_micro_state

from m2l.errors import M2LError
from m2l.formats import read_training_state
from m2l.train.state import read_state

SCRIPT = Path(__file__).parents[2] / "scripts" / "state_transfer.py"
spec = importlib.util.spec_from_file_location("state_transfer", SCRIPT)
transfer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(transfer)


def _close(a: torch.Tensor, b: torch.Tensor, rel: float) -> bool:
    return bool((a - b).abs().max() <= rel * a.abs().max() + 1e-30)


def test_pack_splits_and_unpack_rejoins_a_state_that_resumes(tmp_path):
    src = tmp_path / "run" / "step-000000007.safetensors"
    src.parent.mkdir()
    save_micro_state(src, step=7)
    parts = transfer.pack(src, tmp_path / "parts", part_bytes=300_000)
    assert len(parts) > 1 and all(p.stat().st_size <= 300_000 for p in parts)  # headers counted
    sent = [t for p in parts for t in load_file(str(p)).values()]
    kept = read_training_state(src)[0].values()
    assert sum(t.nbytes for t in sent) < 0.55 * sum(t.nbytes for t in kept)  # half-width floats
    (tmp_path / "new").mkdir()
    out = transfer.unpack(tmp_path / "parts", tmp_path / "new")
    assert out.name == "step-000000007.safetensors"
    a, b = read_state(src), read_state(out)  # sealed again: the checksum holds
    assert b["step"] == 7 and b["counters"] == a["counters"] and b["train_config"] == a["train_config"]
    for part, rel in (("model", 1e-3), ("ema", 1e-3)):
        assert all(b[part][k].dtype == a[part][k].dtype for k in a[part])
        assert all(_close(a[part][k].float(), b[part][k].float(), rel) for k in a[part])
    moments = [(a["optim"][i][n], b["optim"][i][n]) for i in a["optim"] for n in a["optim"][i]]
    assert all(x.dtype == y.dtype and _close(x.float(), y.float(), 1e-2) for x, y in moments)
    assert torch.equal(a["rng"], b["rng"])


def test_unpack_refuses_a_missing_part_and_an_existing_target(tmp_path):
    src = tmp_path / "s.safetensors"
    save_micro_state(src)
    parts = transfer.pack(src, tmp_path / "parts", part_bytes=300_000)
    (tmp_path / "new").mkdir()
    transfer.unpack(tmp_path / "parts", tmp_path / "new")
    with pytest.raises(M2LError, match="already exists"):
        transfer.unpack(tmp_path / "parts", tmp_path / "new")  # never overwrites a checkpoint
    parts[-1].unlink()
    with pytest.raises(M2LError, match="expected parts"):
        transfer.unpack(tmp_path / "parts", tmp_path / "other.safetensors")
    assert not (tmp_path / "other.safetensors").exists()
