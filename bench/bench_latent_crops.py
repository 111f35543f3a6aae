"""Latent dataset benchmark: random crops per second for a generative model's data loader, in one
run: from a packed dataset (`m2l pack`, memory-mapped slices), from a folder of `.m2l` files
through the same `LatentCropDataset`, and the obvious baseline (load the whole `.m2l` file with
`m2l.formats.load_latents`, then slice).

The corpus is random v1 latents (64 dims, 200 files of 8-60 s at 10.77 latents/s, so every file
holds a crop of 64 frames); speed does not depend on the values.

    python bench/bench_latent_crops.py --files 200 --crops 2000 --out bench/results/latent_crops.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from child import report

from m2l.formats import LatentFile, load_latents
from m2l.latents import LatentCropDataset, pack_folder

RATE = 44100 / 4096  # v1 latent frames per second


def write_corpus(folder: Path, files: int, seed: int) -> list[Path]:
    """`files` random v1 latent files of 8-60 s, mono or stereo."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(files):
        frames = int(rng.uniform(8, 60) * RATE)
        channels = 1 + i % 2
        lf = LatentFile(
            latents=torch.from_numpy(rng.standard_normal((channels, 64, frames), dtype=np.float32)),
            sample_rate=44100,
            length=frames * 4096,
            model_id="bench@1",
            config_hash="bench",
            latent_scale=1.0,
            left_pad=3072,
            kind="v1",
        )
        paths.append(folder / f"f{i:04d}.m2l")
        lf.save(paths[-1])
    return paths


def crops_per_second(get, count: int) -> float:
    """Items per second of `get(i)` for i in range(count) (after one warm-up item)."""
    get(0)
    start = time.perf_counter()
    for i in range(count):
        get(i)
    return count / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--crops", type=int, default=2000)
    p.add_argument("--frames", type=int, default=64, help="crop length in latent frames")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_corpus(Path(tmp) / "latents", args.files, seed=0)
        pack_folder(Path(tmp) / "latents", Path(tmp) / "pack", shard_bytes=64 << 20)
        packed = LatentCropDataset(
            Path(tmp) / "pack", args.frames, seed=0, items=args.crops + 1, verify=False
        )
        folder = LatentCropDataset(
            Path(tmp) / "latents", args.frames, seed=0, items=args.crops + 1, verify=False
        )
        rng = np.random.default_rng(1)

        def whole_file(i: int) -> torch.Tensor:
            z = load_latents(paths[int(rng.integers(len(paths)))]).latents
            start = int(rng.integers(0, z.shape[-1] - args.frames + 1))
            return z[0, :, start : start + args.frames]

        result = {
            "files": args.files,
            "crop_frames": args.frames,
            "packed_crops_per_s": crops_per_second(packed.__getitem__, args.crops),
            "folder_crops_per_s": crops_per_second(folder.__getitem__, args.crops),
            "whole_file_crops_per_s": crops_per_second(whole_file, args.crops // 10),
        }
    result["packed_vs_whole_file"] = result["packed_crops_per_s"] / result["whole_file_crops_per_s"]
    result["folder_vs_whole_file"] = result["folder_crops_per_s"] / result["whole_file_crops_per_s"]
    report(result, args.out)


if __name__ == "__main__":
    main()
