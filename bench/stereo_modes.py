"""How should a per-channel model carry a stereo pair? Four codings side by side on the same items.

A per-channel model (v1, mono v2) decodes each coded channel with its own noise, and its one-step
decodes invent phase. So the two decoded channels keep their energies but not their phase
relation, and which two signals are coded decides what survives:

- ms / independent noise (the default): mid and side; keeps the L/R correlation (a centred
  source stays centred) but a source that sits on one side comes back in both;
- ms / shared noise: the same, both rows decoded from the same noise;
- lr / independent noise (the authors'): keeps each channel's energy, loses the correlation;
- lr / shared noise;
- rotation: the pair rotated onto its principal axes (one angle per item, from the covariance
  of L and R) so that the two coded signals are uncorrelated, decoded with independent noise and
  rotated back; M/S is the rotation by 45 degrees. Not a codec mode (the angle would have to
  travel with the latents): a measurement of what it would give.

Scores per item kind (`m2l.evaluate.fidelity`): L/R balance error, L/R correlation error, |side/mid
change| (dB; not for dual-mono, whose side is silent), level (dB), mel distance. Items: the first
N test tracks (centred 5-second crops) and the stress items of `bench/stereo_items.py`.

    python bench/stereo_items.py --data DATA/music/test/manifest.jsonl --out stereo-items
    python bench/stereo_modes.py --data DATA/music/test/manifest.jsonl --items stereo-items \
        --out bench/results/fidelity/stereo_modes.json
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import torch

import m2l
import m2l.codec_v1 as codec_v1
from m2l.audio.io import load_audio
from m2l.evaluate.fidelity import fidelity_scores
from m2l.evaluate.metrics import mel_distance

RATE = 44100
KINDS = ("pan", "one-sided", "dual-mono", "wide")


def items(manifest: Path, stress: Path, tracks: int, per_kind: int) -> list[tuple[str, torch.Tensor]]:
    """(kind, [2, samples]) items: centred 5 s crops of the first test tracks, then stress items."""
    out = []
    root = manifest.parent.parent.parent
    for line in manifest.read_text().splitlines()[:tracks]:
        wave, _ = load_audio(root / json.loads(line)["path"], RATE)
        n = 5 * RATE
        start = (wave.shape[-1] - n) // 2
        out.append(("music", wave[:, start : start + n]))
    for kind in KINDS:
        for path in sorted((stress / kind).glob("*.wav"))[:per_kind]:
            out.append((kind, load_audio(path)[0]))
    return out


def principal_angle(x: torch.Tensor) -> float:
    """Angle of the principal axis of the L/R covariance of `x` [2, samples] (45 deg: centred)."""
    left, right = x.double()
    cross, diff = float((left * right).mean()), float((left.square() - right.square()).mean())
    return 0.5 * math.atan2(2 * cross, diff)


def rotate(x: torch.Tensor, angle: float, inverse: bool = False) -> torch.Tensor:
    """Rotate [2, samples] onto (or back from) the axes at `angle`, scaled as M/S is at 45 deg."""
    c, s = math.cos(angle), math.sin(angle)
    g = abs(c) + abs(s)
    left, right = x
    if inverse:
        return torch.stack([(c * left - s * right) * g, (s * left + c * right) * g])
    return torch.stack([(c * left + s * right) / g, (-s * left + c * right) / g])


def coder(codec: m2l.Codec, mode: str, shared: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function that reconstructs an item [2, samples] with one coding."""
    plain = codec_v1.tile_noise

    def one_noise(seed: int, row: int, *args: object) -> torch.Tensor:
        return plain(seed, 0, *args)

    def run(x: torch.Tensor) -> torch.Tensor:
        codec.stereo = "lr" if mode == "rotation" else mode
        codec_v1.tile_noise = one_noise if shared else plain
        try:
            if mode == "rotation":
                angle = principal_angle(x)
                y = codec.decode(codec.encode(rotate(x, angle), RATE), seed=0, length=x.shape[-1])
                return rotate(y, angle, inverse=True)
            return codec.decode(codec.encode(x, RATE), seed=0, length=x.shape[-1])
        finally:
            codec_v1.tile_noise = plain

    return run


def mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="manifest.jsonl of the music test split")
    ap.add_argument("--items", type=Path, required=True, help="folder made by bench/stereo_items.py")
    ap.add_argument("--model", default="default", help="a per-channel model")
    ap.add_argument("--tracks", type=int, default=10)
    ap.add_argument("--per-kind", type=int, default=4)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    codec = m2l.load(args.model)
    data = items(args.data, args.items, args.tracks, args.per_kind)
    codings = [("ms", False), ("ms", True), ("lr", False), ("lr", True), ("rotation", False)]
    rows = []
    print("| coding | noise | items | balance err. | corr. err. | abs side/mid (dB) | level (dB) | mel |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, shared in codings:
        run = coder(codec, mode, shared)
        scores: dict[str, list[dict]] = {}
        for kind, x in data:
            y = run(x)
            s = fidelity_scores(y, x, RATE)
            s["mel"] = float(mel_distance(y[None], x[None], RATE).mean())
            side_mid = s["side_mid_change_db"]
            s["abs_side_mid"] = None if kind == "dual-mono" or side_mid is None else abs(side_mid)
            scores.setdefault(kind, []).append(s)
        for kind, got in scores.items():
            row = {"coding": mode, "noise": "shared" if shared else "independent", "items": kind}
            for key in ("balance_error", "lr_correlation_error", "abs_side_mid", "level_db", "mel"):
                row[key] = mean([s[key] for s in got])
            rows.append(row)
            cells = [
                "-" if row[k] is None else f"{row[k]:.{d}f}"
                for k, d in (
                    ("balance_error", 3),
                    ("lr_correlation_error", 3),
                    ("abs_side_mid", 2),
                    ("level_db", 2),
                    ("mel", 3),
                )
            ]
            print(f"| {mode} | {row['noise']} | {kind} | " + " | ".join(cells) + " |", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
