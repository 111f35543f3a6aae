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

LABELS = {
    "mel_distance": "mel distance (lower is better)",
    "stft_distance": "multi-resolution STFT distance (lower is better)",
    "mel_distance_2step": "mel distance, 2 steps (lower is better)",
    "level_db": "level vs the original (dB; 0 is right)",
    "si_sdr": "SI-SDR (dB, higher is better)",
}


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
    ap.add_argument(
        "--metrics",
        default="mel_distance,stft_distance",
        help="comma list of validation fields, one panel each (e.g. mel_distance_2step,level_db)",
    )
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = args.metrics.split(",")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for item in args.runs:
        label, _, folder = item.partition("=")
        pts = curve(Path(folder))
        for ax, metric in zip(axes[0], metrics, strict=True):
            kept = [p for p in pts if p.get(metric) is not None]
            ax.plot([p["cpu_s"] / 60 for p in kept], [p[metric] for p in kept], marker="o", label=label)
    for ax, metric in zip(axes[0], metrics, strict=True):
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.set_xlabel("CPU-minutes of the training process")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
