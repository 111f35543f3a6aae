"""Markdown table of `m2l eval` results (one row per model x setting), for BENCHMARKS.md.

python bench/eval_table.py eval/results.json [more/results.json ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = (
    ("visqol", "ViSQOL", 2),
    ("mel_distance", "mel dist.", 3),
    ("stft_distance", "STFT dist.", 2),
    ("si_sdr", "SI-SDR (dB)", 1),
    ("level_db", "level (dB)", 1),
    ("lr_correlation_error", "L/R corr. error", 2),
    ("side_mid_change_db", "side/mid change (dB)", 1),
    ("balance_error", "L/R balance error", 2),
    ("visqol_change_from_1_step", "ViSQOL vs 1 step", 2),
    ("fad", "FAD (mel-stats)", 1),
)


def rows(path: Path) -> list[str]:
    results = json.loads(path.read_text())
    out = []
    for model in results["models"]:
        for setting in model["settings"]:
            m = setting["metrics"]
            cells = [f"{m[key]:.{digits}f}" if m.get(key) is not None else "-" for key, _, digits in COLUMNS]
            out.append(f"| {model['label']} | {setting['label']} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results", nargs="+", type=Path)
    args = ap.parse_args()
    print("| model | setting | " + " | ".join(name for _, name, _ in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for path in args.results:
        print("\n".join(rows(path)))


if __name__ == "__main__":
    main()
