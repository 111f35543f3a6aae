"""Real training with and without one process setting, alternated.

Copies a run folder's config, data index and newest checkpoint into a scratch folder and resumes
it for `--steps` steps (`m2l train --until`); with `--from-scratch`, starts the run's config
afresh instead (step 0: a new model). Each try runs in a fresh process, the two settings
alternated `--repeats` times; prints the trainer's closing line (wall and CPU seconds) per try.
Settings: `retain` (`m2l.runtime.retain_freed_memory()`), `flush-denormal`
(`torch.set_flush_denormal(True)`).

    python bench/ab_train.py RUN_DIR --data DATA/music/train --val DATA/music/val --setting retain
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import sys
import torch
from m2l.cli import main
from m2l.runtime import retain_freed_memory
if sys.argv[1] == "retain":
    retain_freed_memory()
elif sys.argv[1] == "flush-denormal":
    assert torch.set_flush_denormal(True)
sys.exit(main(sys.argv[2:]))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--setting", choices=["retain", "flush-denormal"], default="retain")
    ap.add_argument("--from-scratch", action="store_true", help="step 0, a new model")
    args = ap.parse_args()
    newest = sorted((args.run / "checkpoints").glob("step-*.safetensors"))[-1]
    start = 0 if args.from_scratch else int(newest.stem.removeprefix("step-"))
    for mode in ["default", args.setting] * args.repeats:
        with tempfile.TemporaryDirectory() as scratch:
            run = Path(scratch) / "run"
            (run / "checkpoints").mkdir(parents=True)
            for name in ("config.json", "data_index.json"):
                shutil.copy(args.run / name, run / name)
            if not args.from_scratch:
                shutil.copy(newest, run / "checkpoints" / newest.name)
            argv = ["train", str(run / "config.json"), "--data", args.data, "--val", args.val]
            argv += ["--out", str(run), "--until", str(start + args.steps), "--no-progress"]
            res = subprocess.run([sys.executable, "-c", CHILD, mode, *argv], capture_output=True, text=True)
            print(f"{mode}: {res.stderr.strip().splitlines()[-1]}", flush=True)


if __name__ == "__main__":
    main()
