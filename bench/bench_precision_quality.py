"""What bf16 autocast (`--precision bf16`) costs in quality, on real held-out music.

For each audio file under MUSIC_DIR (the test split), a centred crop of SECONDS is encoded and
decoded (1 step, seed 0) by MODEL in fp32 and under bf16 autocast; reports the mel and STFT
distances of each reconstruction to the original (mean over files), and how far bf16's latents
and audio are from fp32's (relative L2).

    python bench/bench_precision_quality.py DATA/music/test --out bench/out/precision_quality.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from child import report

import m2l
from m2l.evaluate.metrics import mel_distance, stft_distance


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("music_dir", type=Path)
    ap.add_argument("--model", default="default")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=Path("bench/out/precision_quality.json"))
    args = ap.parse_args()
    codec = m2l.load(args.model, device="cpu")
    files = sorted(p for p in args.music_dir.rglob("*") if p.suffix.lower() in (".ogg", ".flac", ".wav"))
    crop = int(args.seconds * codec.sample_rate)
    rows: dict[str, list[float]] = {}
    walls = {"fp32": 0.0, "bf16": 0.0}
    for path in files:
        wave = codec.load_audio(path, downmix=True).mean(0, keepdim=True)
        start = max(0, (wave.shape[-1] - crop) // 2)
        clip = wave[:, start : start + crop]
        out = {}
        for name, precision in (("fp32", None), ("bf16", torch.bfloat16)):
            codec.precision = precision
            began = time.perf_counter()
            z = codec.encode(clip)
            y = codec.decode(z, seed=0, length=clip.shape[-1])
            walls[name] += time.perf_counter() - began
            out[name] = (z, y)
            rows.setdefault(f"mel_{name}", []).append(mel_distance(y, clip, codec.sample_rate).item())
            rows.setdefault(f"stft_{name}", []).append(stft_distance(y, clip).item())
        rows.setdefault("latents_bf16_vs_fp32", []).append(relative(out["bf16"][0], out["fp32"][0]))
        rows.setdefault("audio_bf16_vs_fp32", []).append(relative(out["bf16"][1], out["fp32"][1]))
    result = {
        "model": codec.model_id,
        "files": len(files),
        "seconds": args.seconds,
        "threads": torch.get_num_threads(),
        "mean": {k: sum(v) / len(v) for k, v in rows.items()},
        "wall_s": walls,
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
