"""`m2l.cli.one_file`: one input file from the command line to the network and back, through few
modules (the path ARCHITECTURE.md draws), and never through the corpus machinery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from m2l.cli.one_file import CodecOptions

MODULES_AT_MOST = 20
"""m2l modules whose functions run during `m2l reconstruct in.wav -o out.wav`: what a newcomer
follows from the command line to the network and back (it was 35)."""

TRACE = r"""
import collections, importlib.util, json, os, sys

root = importlib.util.find_spec("m2l").submodule_search_locations[0] + os.sep
ran = collections.defaultdict(set)


def profile(frame, event, arg):
    code = frame.f_code
    # functions only (CO_NEWLOCALS): module and class bodies run when a module is imported
    if event == "call" and code.co_flags & 0x2 and code.co_filename.startswith(root):
        ran[code.co_filename[len(root):]].add(code.co_name)


sys.setprofile(profile)
from m2l.cli.app import main

status = main(sys.argv[1:])
sys.setprofile(None)
print(json.dumps({"status": status, "modules": {name: sorted(ran[name]) for name in sorted(ran)}}))
"""


def _traced(*argv: str | Path) -> tuple[int, dict[str, list[str]]]:
    """Run `m2l ARGV` in a fresh interpreter -> (exit code, {module file: its functions that ran})."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", TRACE, *map(str, argv)], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["status"], result["modules"]


def test_reconstructing_one_file_with_the_shipped_model_runs_few_modules(tmp_path):
    t = np.arange(int(1.5 * 44100)) / 44100
    pair = 0.3 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], axis=1)
    sf.write(tmp_path / "in.wav", pair, 44100)
    status, modules = _traced("reconstruct", tmp_path / "in.wav", "-o", tmp_path / "out.wav", "-q")
    assert status == 0 and sf.info(tmp_path / "out.wav").channels == 2
    listing = "\n".join(f"{name}: {', '.join(functions)}" for name, functions in modules.items())
    assert len(modules) <= MODULES_AT_MOST, f"{len(modules)} modules ran functions:\n{listing}"
    assert {"cli/one_file.py", "codec.py", "codec_v1.py", "models/v1.py"} <= set(modules), listing
    corpus = {"cli/jobs.py", "cli/prefetch.py", "passes.py", "packing.py", "datasets/__init__.py"}
    other_commands = {"cli/info.py", "train/cli.py", "evaluate/cli.py", "probe/cli.py", "latents/cli.py"}
    assert not set(modules) & (corpus | other_commands | {"sniff.py", "lazy.py"}), listing


def test_one_file_means_one_existing_file_outside_torchrun(tmp_path, monkeypatch):
    audio, manifest = tmp_path / "a.wav", tmp_path / "list.jsonl"
    audio.write_bytes(b"RIFF")
    manifest.write_text("")
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert CodecOptions((str(audio),), "out").one_file() == audio
    for inputs in ((str(audio), str(audio)), (str(tmp_path),), (str(manifest),), (str(tmp_path / "b.wav"),)):
        assert CodecOptions(inputs, "out").one_file() is None, inputs
    monkeypatch.setenv("WORLD_SIZE", "1")  # a rank of torchrun: its share of the jobs
    assert CodecOptions((str(audio),), "out").one_file() is None
