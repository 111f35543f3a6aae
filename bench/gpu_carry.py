"""Prepare what a GPU machine without network needs to continue a training run (`bench/gpu_run.sh`).

Writes into OUT (default `.carry/`, ignored by git, carried by the device tool):
- `state/`: the run's newest checkpoint as parts (`scripts/state_transfer.py pack`);
- `config.json`: the run's config with only the loader and bookkeeping fields changed
  (workers, checkpoint interval): the training arithmetic is the run's own;
- `music/`, `val/`: mono (`--stereo`: stereo) Ogg Opus excerpts (about 45 kbit/s; band energies
  within 0.3 dB of the source up to 20 kHz) of every training file (SEGMENTS excerpts of SECONDS
  each, spread over the file) and of the first validation files, so a carry of tens of MiB holds
  music of every source.

    python bench/gpu_carry.py RUN DATA/music/train DATA/music/val --out .carry
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from m2l.formats import list_checkpoints

OPUS_RATE = 48000


def excerpts(
    src: Path, dst: Path, segments: int, seconds: float, rng: np.random.Generator, stereo: bool = False
) -> float:
    """Write `segments` excerpts of `src` (mono, or stereo: a mono source on both channels) as one
    Opus file; returns their seconds."""
    info = sf.info(str(src))
    length = int(seconds * info.samplerate)
    if info.frames < length:
        starts = [0]
    else:
        edges = np.linspace(0, info.frames - length, segments + 1).astype(int)
        starts = [int(rng.integers(a, max(a + 1, b))) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    pieces = []
    with sf.SoundFile(str(src)) as f:
        for s in starts:
            f.seek(s)
            x = f.read(length, dtype="float32", always_2d=True)
            x = np.repeat(x, 2, axis=1)[:, :2] if stereo and x.shape[1] == 1 else x[:, :2]
            x = x if stereo else x.mean(axis=1, keepdims=True)
            fade = np.minimum(1.0, np.arange(len(x)) / 441.0)  # no clicks at the joins
            pieces.append(x * (fade * fade[::-1])[:, None])
    y = soxr.resample(np.concatenate(pieces), info.samplerate, OPUS_RATE)
    y = y if stereo else y[:, 0]
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(dst), y, OPUS_RATE, format="OGG", subtype="OPUS", compression_level=0.85)
    return len(y) / OPUS_RATE


def subset(
    folder: Path, out: Path, segments: int, seconds: float, limit: int | None, seed: int, stereo: bool
) -> float:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".ogg", ".flac", ".wav", ".mp3"))
    rng = np.random.default_rng(seed)
    return sum(
        excerpts(p, out / p.relative_to(folder).with_suffix(".ogg"), segments, seconds, rng, stereo)
        for p in files[:limit]
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("train", type=Path)
    ap.add_argument("val", type=Path)
    ap.add_argument("--out", type=Path, default=Path(".carry"))
    ap.add_argument("--segments", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=9.0)
    ap.add_argument("--val-files", type=int, default=8)
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--stereo", action="store_true", help="keep both channels (for a stereo model)")
    args = ap.parse_args()
    if args.out.exists():
        print(f"gpu_carry: error: {args.out} exists (remove it first)", file=sys.stderr)
        return 1
    newest = list_checkpoints(args.run / "checkpoints")[-1][1]
    pack = [sys.executable, str(Path(__file__).parents[1] / "scripts" / "state_transfer.py"), "pack"]
    subprocess.run([*pack, str(newest), str(args.out / "state")], check=True)
    cfg = json.loads((args.run / "config.json").read_text())
    cfg |= {"workers": args.workers, "ckpt_every": args.ckpt_every}
    (args.out / "config.json").write_text(json.dumps(cfg, indent=1))
    music = subset(args.train, args.out / "music", args.segments, args.seconds, None, 0, args.stereo)
    val = subset(args.val, args.out / "val", 1, 10.0, args.val_files, 1, args.stereo)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    mib = size / 2**20
    print(f"{newest.name}: {music / 60:.1f} min of music, {val:.0f} s of validation, {mib:.1f} MiB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
