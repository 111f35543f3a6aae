"""Can a fixed output filter fix the shipped model's level? (issue "A faithful codec")

The default model decodes 3-4 dB quieter than its input (BENCHMARKS.md, fidelity). Two filters
that a codec could apply after decoding, fitted on crops of the *train* split and scored on the
*test* split (never fitted there):

- eq: one gain per STFT bin (2048-point, hop 512), sqrt(sum |X_orig|^2 / sum |X_dec|^2) over the
  train crops (clamped to 0.25-4), applied to the decode's STFT;
- qmap: per log-spaced band (48 bands), quantile mapping of log-magnitudes: each decoded value
  moves to the original's value at the same quantile (of the train crops), phase kept.

Crops: the mono mix of one 5-second crop per file (train: 24 files spread over the split, at a
third of each file; test: the 18 files, centred), decoded in one step with seed 0. Scores: level
difference (dB, mean / min / max), mel distance, and ViSQOL (with `--visqol`).

    python bench/level_postfilter.py --data DATA [--train-files 24] [--visqol] \
        [--out bench/results/fidelity/level_postfilter.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

import m2l
from m2l.evaluate.fidelity import level_difference_db
from m2l.evaluate.metrics import mel_distance

N_FFT, HOP, BINS = 2048, 512, 1024


def crops(data: Path, split: str, count: int, where: float, rate: int, seconds: float = 5.0) -> list:
    """Mono crops [samples] of `count` files spread over the split's manifest."""
    rows = [json.loads(line) for line in (data / "music" / split / "manifest.jsonl").open()]
    out = []
    for row in rows[:: max(1, len(rows) // count)][:count]:
        try:
            info = sf.info(data / row["path"])
            start = int(max(0.0, info.duration * where - seconds / 2) * info.samplerate)
            frames = int(seconds * info.samplerate)
            x, fs = sf.read(data / row["path"], start=start, frames=frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            print(f"skipped {row['path']}: {err}")
            continue
        x = x.mean(1)
        out.append(torch.from_numpy(np.ascontiguousarray(soxr.resample(x, fs, rate) if fs != rate else x)))
    return out


def stft(x: torch.Tensor) -> torch.Tensor:
    return torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)[:BINS]


def istft(spec: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    full = torch.cat([spec, torch.zeros_like(spec[:1])])  # Nyquist bin back
    return torch.istft(full, N_FFT, HOP, window=torch.hann_window(N_FFT), length=like.shape[-1])


def fit_eq(orig: list, dec: list) -> torch.Tensor:
    power = lambda xs: sum(stft(x).abs().square().sum(-1) for x in xs)  # noqa: E731
    return (power(orig) / power(dec).clamp_min(1e-12)).sqrt().clamp(0.25, 4.0)


def band_edges(bands: int = 48) -> list[int]:
    return [0, *sorted({int(round(v)) for v in np.geomspace(1, BINS, bands + 1)})]


def fit_qmap(orig: list, dec: list) -> list:
    """Per band: (quantiles of the decodes' log-magnitudes, the originals' at the same levels)."""
    q = torch.linspace(0, 1, 201)
    lo, ld = (torch.cat([stft(x).abs().add(1e-7).log() for x in xs], 1) for xs in (orig, dec))
    edges = band_edges()
    return [
        (torch.quantile(ld[a:b].flatten()[::3], q), torch.quantile(lo[a:b].flatten()[::3], q))
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]


def interp(v: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    i = torch.searchsorted(xp, v.clamp(xp[0], xp[-1]).contiguous()).clamp(1, len(xp) - 1)
    t = ((v - xp[i - 1]) / (xp[i] - xp[i - 1]).clamp_min(1e-9)).clamp(0, 1)
    return fp[i - 1] + t * (fp[i] - fp[i - 1])


def apply_eq(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    return istft(stft(x) * gain[:, None], x)


def apply_qmap(x: torch.Tensor, maps: list) -> torch.Tensor:
    spec = stft(x)
    logmag = spec.abs().add(1e-7).log()
    edges = band_edges()
    for (a, b), (xp, fp) in zip(zip(edges[:-1], edges[1:], strict=True), maps, strict=True):
        logmag[a:b] = interp(logmag[a:b], xp, fp)
    return istft(spec / spec.abs().add(1e-7) * logmag.exp(), x)


def score(refs: list, ests: list, rate: int, with_visqol: bool) -> dict:
    levels = [level_difference_db(e[None], r[None]) for r, e in zip(refs, ests, strict=True)]
    out = {
        "level_db_mean": float(np.mean(levels)),
        "level_db_min": float(np.min(levels)),
        "level_db_max": float(np.max(levels)),
        "mel_distance": float(
            np.mean([float(mel_distance(e, r, rate)) for r, e in zip(refs, ests, strict=True)])
        ),
    }
    if with_visqol:
        from m2l.evaluate.visqol import visqol

        out["visqol"] = float(np.mean([visqol(e, r, rate) for r, e in zip(refs, ests, strict=True)]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--train-files", type=int, default=24)
    ap.add_argument("--test-files", type=int, default=18)
    ap.add_argument("--visqol", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    codec = m2l.load(args.model)
    rate = codec.sample_rate

    def decode(xs: list) -> list:
        return [codec.decode(codec.encode(x[None]), steps=1, seed=0, length=x.shape[-1])[0] for x in xs]

    train = crops(args.data, "train", args.train_files, 1 / 3, rate)
    train_dec = decode(train)
    gain, maps = fit_eq(train, train_dec), fit_qmap(train, train_dec)
    bands = [(0, 5), (5, 23), (23, 93), (93, 186), (186, 372), (372, BINS)]
    eq_db = {
        f"{a * rate / N_FFT:.0f}-{b * rate / N_FFT:.0f} Hz": 20
        * math.log10(float(gain[a:b].square().mean().sqrt()))
        for a, b in bands
    }
    test = crops(args.data, "test", args.test_files, 0.5, rate)
    dec = decode(test)
    results = {
        "model": codec.model_id,
        "train_crops": len(train),
        "test_crops": len(test),
        "eq_gain_db_by_band": eq_db,
        "decoded": score(test, dec, rate, args.visqol),
        "eq": score(test, [apply_eq(y, gain) for y in dec], rate, args.visqol),
        "qmap": score(test, [apply_qmap(y, maps) for y in dec], rate, args.visqol),
    }
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
