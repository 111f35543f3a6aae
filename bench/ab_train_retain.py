"""Real training with and without `m2l.runtime.retain_freed_memory`, alternated.

Copies a run folder's config, data index and newest checkpoint into a scratch folder and resumes
it for `--steps` steps (`m2l train --until`), each time in a fresh process, alternating the two
settings `--repeats` times; prints the trainer's closing line (wall and CPU seconds) per try.

    python bench/ab_train_retain.py RUN_DIR --data DATA/music/train --val DATA/music/val
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
from m2l.cli import main
from m2l.runtime import retain_freed_memory
if sys.argv[1] == "retain":
    retain_freed_memory()
sys.exit(main(sys.argv[2:]))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    newest = sorted((args.run / "checkpoints").glob("step-*.safetensors"))[-1]
    start = int(newest.stem.removeprefix("step-"))
    for mode in ["system", "retain"] * args.repeats:
        with tempfile.TemporaryDirectory() as scratch:
            run = Path(scratch) / "run"
            (run / "checkpoints").mkdir(parents=True)
            for name in ("config.json", "data_index.json"):
                shutil.copy(args.run / name, run / name)
            shutil.copy(newest, run / "checkpoints" / newest.name)
            argv = ["train", str(run / "config.json"), "--data", args.data, "--val", args.val]
            argv += ["--out", str(run), "--until", str(start + args.steps), "--no-progress"]
            res = subprocess.run([sys.executable, "-c", CHILD, mode, *argv], capture_output=True, text=True)
            print(f"{mode}: {res.stderr.strip().splitlines()[-1]}", flush=True)


if __name__ == "__main__":
    main()
