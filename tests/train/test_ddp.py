"""Two CPU processes (torchrun, gloo) train the same model one process trains with the same
global batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_testing import train_argv

from m2l.config import preset
from m2l.formats import list_checkpoints
from m2l.models.v1 import Music2Latent
from m2l.train.state import read_state

REPO = Path(__file__).parents[2]


def _train(audio_dirs, run, launcher):
    cmd = [*launcher, "-m", "m2l", *train_argv(audio_dirs, run, "batch_size=4", "steps=3", "warmup_steps=1")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return read_state(list_checkpoints(run / "checkpoints")[-1][1])


@pytest.mark.filterwarnings("ignore")
def test_two_gloo_processes_match_one_process(audio_dirs, tmp_path):
    single = _train(audio_dirs, tmp_path / "one", [sys.executable])
    ddp = _train(
        audio_dirs,
        tmp_path / "two",
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"],
    )
    assert single["step"] == ddp["step"] == 3
    torch.manual_seed(0)  # the trainer's initialisation
    init = Music2Latent(preset("m2l-v1-tiny")).state_dict()
    moved = max(float((single["model"][k] - init[k]).abs().max()) for k in init)
    assert moved > 1e-4  # training changed the weights: not a comparison of two initialisations
    for key, value in single["model"].items():
        torch.testing.assert_close(ddp["model"][key], value, rtol=1e-4, atol=1e-6, msg=key)
