"""Stereo stress items from the music test split: does a codec keep a hard-panned source where it is?

Reports of Music2Latent2 reproductions say stereo collapsed. Real mixes are mostly centred, so an
average over the test split can hide a codec that folds a hard-panned source into the middle.
This script writes four folders of 5-second stereo items built from the centred crops of the test
tracks (each track's mono mix, RMS-normalised to -20 dBFS; A and B are consecutive tracks):

- `pan/`        L = (A + B) / 2, R = A / 2: B hard-panned left over a centred A (then mirrored, B
                right, for every other pair);
- `one-sided/`  L = A, R = silence (a mono source panned hard left; mirrored every other item);
- `dual-mono/`  L = R = A;
- `wide/`       L = A, R = B (unrelated channels, correlation near 0).

Score each folder with `m2l eval` (its L/R balance error, L/R correlation error and side/mid
change columns):

    python bench/stereo_items.py --data DATA/music/test/manifest.jsonl --out stereo-items
    for kind in pan one-sided dual-mono wide; do
      m2l eval --model default --data stereo-items/$kind --out evals/stereo-$kind --steps 1 -q
    done
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from m2l.audio.io import load_audio, save_audio

SAMPLE_RATE = 44100
RMS_DBFS = -20.0


def centred_mono(path: Path, seconds: float) -> torch.Tensor:
    """The centred `seconds` of a file's mono mix, RMS-normalised. [samples]"""
    wave, _ = load_audio(path, SAMPLE_RATE, downmix=True)
    n = int(seconds * SAMPLE_RATE)
    start = max(0, (wave.shape[-1] - n) // 2)
    mono = wave[0, start : start + n]
    if mono.shape[-1] < n:
        raise SystemExit(f"{path}: shorter than {seconds} s")
    rms = mono.pow(2).mean().sqrt().clamp_min(1e-8)
    return mono * (10 ** (RMS_DBFS / 20) / rms)


def stress_items(a: torch.Tensor, b: torch.Tensor, mirror: bool) -> dict[str, torch.Tensor]:
    """The four stereo items of a pair of mono crops `a`, `b` [samples] -> {kind: [2, samples]}."""
    items = {
        "pan": torch.stack([(a + b) / 2, a / 2]),
        "one-sided": torch.stack([a, torch.zeros_like(a)]),
        "dual-mono": torch.stack([a, a]),
        "wide": torch.stack([a, b]),
    }
    if mirror:  # the same source on the other side
        items["pan"] = items["pan"].flip(0)
        items["one-sided"] = items["one-sided"].flip(0)
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="manifest.jsonl of the music test split")
    ap.add_argument("--out", type=Path, required=True, help="folder to write (must not exist)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--tracks", type=int, default=12, help="the first N tracks (N/2 pairs)")
    args = ap.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out}: exists; name a new folder")
    root = args.data.parent.parent.parent  # manifest paths are relative to the data folder
    lines = args.data.read_text().splitlines()[: args.tracks]
    paths = [root / json.loads(line)["path"] for line in lines]
    crops = [centred_mono(p, args.seconds) for p in paths]
    for i in range(0, len(crops) - 1, 2):
        mirror = (i // 2) % 2 == 1
        for kind, wave in stress_items(crops[i], crops[i + 1], mirror).items():
            # peaks of the sum can pass full scale: scale the item down rather than clip it
            wave = wave / max(1.0, float(wave.abs().max()) / 0.99)
            save_audio(args.out / kind / f"{kind}-{i // 2:02d}.wav", wave, SAMPLE_RATE)
    print(f"wrote {len(crops) // 2} items of each kind under {args.out}")


if __name__ == "__main__":
    main()
