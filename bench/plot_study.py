"""Validation curves of training runs against CPU time: one PNG (needs matplotlib, `[plot]`).

Reads each RUN/log.jsonl (records carry the trainer's CPU seconds `cpu_s`; a validation record
without it gets the CPU time of the training record logged just before it) and plots the validation
mel and STFT distances against CPU-minutes.

    python bench/plot_study.py --out BENCH.png published=runs/a fast=runs/b
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curve(run: Path) -> list[dict]:
    """Validation records of a run, each with the trainer's CPU seconds at that point."""
    points, cpu = [], 0.0
    for line in (run / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("split") == "val":
            points.append({"cpu_s": cpu if rec["step"] else 0.0, **rec})
        elif "cpu_s" in rec:
            cpu = rec["cpu_s"]
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--title", default="validation during training (held-out music, one step)")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for item in args.runs:
        label, _, folder = item.partition("=")
        pts = curve(Path(folder))
        minutes = [p["cpu_s"] / 60 for p in pts]
        axes[0].plot(minutes, [p["mel_distance"] for p in pts], marker="o", label=label)
        axes[1].plot(minutes, [p["stft_distance"] for p in pts], marker="o", label=label)
    axes[0].set_ylabel("mel distance (lower is better)")
    axes[1].set_ylabel("multi-resolution STFT distance (lower is better)")
    for ax in axes:
        ax.set_xlabel("CPU-minutes of the training process")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
