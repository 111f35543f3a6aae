"""GPU codec benchmark: m2l vs the authors' `music2latent` package on CUDA, in one process.

Identical random weights of the released-size v1 network (the authors' checkpoint format, as in
`bench_codec.py`). Each case is warmed up once, then timed `--repeats` times with the device
synchronised; the median is reported. Precisions: fp32, and bf16 / fp16 autocast for both
implementations (the authors' calls are wrapped in `torch.autocast`; m2l sets `Codec.precision`,
what `--precision` does). Then, for m2l's v1 and v2 at the paper sizes: real-time factors, and
throughput against batch size (v1 windows / v2 chunks per pass) up to the largest that fits.

    python bench/bench_gpu.py --device cuda --out bench/out/gpu_codec.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_codec import make_checkpoint

SR = 44100
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str, repeats: int) -> tuple[float, object]:
    """Median wall seconds of `repeats` calls after one warm-up call; and the last result."""
    out = fn()
    walls = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls), out


def peak_mb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def implementations(ckpt: str, device: str) -> dict[str, tuple[Callable, Callable]]:
    """encode(x, precision) and decode(z, precision) of each implementation."""
    import music2latent.inference as inf

    import m2l

    inf.download_model = lambda: None
    ed = inf.EncoderDecoder(ckpt, device=device)
    codec = m2l.load(ckpt, device=device)

    def ctx(p: torch.dtype | None) -> contextlib.AbstractContextManager:
        return torch.autocast(device.split(":")[0], dtype=p) if p else contextlib.nullcontext()

    def authors_encode(x: np.ndarray, p: torch.dtype | None) -> object:
        with ctx(p):
            return ed.encode(x)

    def authors_decode(z: object, p: torch.dtype | None) -> object:
        with ctx(p):
            return ed.decode(z)

    def m2l_encode(x: np.ndarray, p: torch.dtype | None) -> object:
        codec.precision = p
        return codec.encode(x)

    def m2l_decode(z: object, p: torch.dtype | None) -> object:
        codec.precision = p
        return codec.decode(z, seed=0)

    return {"authors": (authors_encode, authors_decode), "m2l": (m2l_encode, m2l_decode)}


def codec_cases(ckpt: str, device: str, seconds: list[float], repeats: int) -> list[dict]:
    impls, rows = implementations(ckpt, device), []
    for s in seconds:
        x = (np.random.RandomState(0).randn(int(s * SR)) * 0.1).astype(np.float32)
        for pname, p in PRECISIONS.items():
            for impl, (enc, dec) in impls.items():
                row = {"impl": impl, "precision": pname, "seconds": s}
                try:
                    reset_peak(device)
                    row["encode_s"], z = timed(lambda: enc(x, p), device, repeats)  # noqa: B023
                    row["decode_s"], _ = timed(lambda: dec(z, p), device, repeats)  # noqa: B023
                    row["peak_gpu_mb"] = peak_mb(device)
                    row["encode_rtf"], row["decode_rtf"] = s / row["encode_s"], s / row["decode_s"]
                except Exception as e:  # a case that fails is reported, the others still run
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def ratios(rows: list[dict]) -> dict[str, float]:
    """m2l's speed over the authors' per case (same precision, length and operation)."""
    by = {(r["impl"], r["precision"], r["seconds"]): r for r in rows if "error" not in r}
    out = {}
    for (impl, p, s), r in by.items():
        a = by.get(("authors", p, s))
        if impl == "m2l" and a:
            for op in ("encode", "decode"):
                out[f"{op} {p} {s:g}s"] = a[f"{op}_s"] / r[f"{op}_s"]
    return out


def batch_sweep(name: str, device: str, sizes: list[int], max_pass_s: float, p: torch.dtype | None) -> dict:
    """Encoder throughput of m2l's `name` preset (untrained weights) against the batch of one
    pass, until a size runs out of memory or a pass takes over `max_pass_s`. v1: `size` clips of
    one window each through `m2l.packing.encode_many` with `batch_size=size` (one clip's encode runs
    window by window, so only the corpus path batches windows); v2: one clip of `size` chunks with
    `chunk_batch=size`. v2 decode (autoregressive over chunks) is timed alongside."""
    import m2l
    from m2l.packing import encode_many

    codec = m2l.load(name, device=device)
    codec.precision = p
    v2 = hasattr(codec, "chunk_batch")
    unit = codec.model.cfg.samples_per_chunk if v2 else codec.pass_units * codec.samples_per_unit
    result: dict = {"model": name, "unit_seconds": unit / SR, "sizes": []}
    noise = (np.random.RandomState(0).randn(unit * (1 if not v2 else 4)) * 0.1).astype(np.float32)
    for size in sizes:
        codec.batch_size = size
        if v2:
            codec.chunk_batch = size
            x = np.resize(noise, size * unit)
            enc = lambda: codec.encode(x)  # noqa: B023, E731
        else:
            clip = torch.from_numpy(noise[: unit - codec.samples_per_unit])[None]  # exactly one window
            clips = [(i, clip, SR) for i in range(size)]
            units = size * codec.pass_units
            enc = lambda: list(encode_many(codec, iter(clips), batch_units=units))  # noqa: B023, E731
        row: dict = {"size": size, "audio_s": size * unit / SR}
        try:
            reset_peak(device)
            row["encode_s"], z = timed(enc, device, 1)
            row["peak_gpu_mb"] = peak_mb(device)
            row["encode_rtf"] = row["audio_s"] / row["encode_s"]
            if v2:
                row["decode_s"], _ = timed(lambda: codec.decode(z, seed=0), device, 1)  # noqa: B023
                row["decode_rtf"] = row["audio_s"] / row["decode_s"]
        except torch.OutOfMemoryError:
            row["error"] = "out of memory"
        result["sizes"].append(row)
        print(json.dumps({"model": name, **row}), file=sys.stderr, flush=True)
        if "error" in row or max(row["encode_s"], row.get("decode_s", 0.0)) > max_pass_s:
            break
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    fits = [r["size"] for r in result["sizes"] if "error" not in r]
    result["largest_tried_that_fits"] = max(fits) if fits else None
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seconds", type=float, nargs="+", default=[5, 10, 60])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64, 256, 512])
    ap.add_argument("--max-pass-s", type=float, default=8.0)
    ap.add_argument("--out", type=Path, default=Path("bench/out/gpu_codec.json"))
    args = ap.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    torch.backends.cudnn.benchmark = False  # both implementations: no per-shape autotuning
    ckpt = args.out.parent / "random_authors.pt"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not ckpt.exists():
        make_checkpoint(ckpt)
    result: dict = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
    }
    result["codec"] = codec_cases(str(ckpt), args.device, args.seconds, args.repeats)
    result["ratios"] = ratios(result["codec"])
    args.out.write_text(json.dumps(result, indent=1) + "\n")  # what is done is kept if stopped
    result["batches"] = []
    for name in ("m2l-v1", "m2l-v2"):
        result["batches"].append(batch_sweep(name, args.device, args.sizes, args.max_pass_s, torch.bfloat16))
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["ratios"], indent=1))


if __name__ == "__main__":
    main()
