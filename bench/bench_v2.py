"""Codec benchmark: Music2Latent2 vs Music2Latent (v1) at the paper sizes, in one run.

Each measurement runs in a fresh child process (so peak memory is its own). Weights are the
presets' initial weights (speed does not depend on their values). Reports wall time, real-time
factor (audio seconds per second), peak RSS, and decode time per audio second at several lengths
(v2 decodes autoregressively chunk by chunk, so its cost must grow linearly).

    python bench/bench_v2.py --seconds 10 20 40 --out bench/results_v2_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from child import peak_rss_mb, run_child

SR = 44100
MODELS = {"v1": "m2l-v1", "v2": "m2l-v2"}


def child(model: str, op: str, seconds: float, device: str) -> dict:
    """Runs in a subprocess: one encode or decode of `seconds` of noise, timed."""
    import warnings

    warnings.simplefilter("ignore")
    import m2l

    codec = m2l.load(MODELS[model], device=device)
    x = (np.random.RandomState(0).randn(int(seconds * SR)) * 0.1).astype(np.float32)
    z = codec.encode(x) if op == "decode" else None
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = codec.encode(x) if op == "encode" else codec.decode(z, seed=0)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return {"wall_s": wall, "out_shape": list(out.shape), "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, nargs="+", default=[10, 20, 40])
    ap.add_argument("--ops", nargs="+", default=["encode", "decode"])
    ap.add_argument("--models", nargs="+", default=["v1", "v2"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("bench/out/v2.json"))
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        model, op, seconds, device = args.child
        print(json.dumps(child(model, op, float(seconds), device)))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "device": args.device,
        "cases": [],
    }
    for seconds in args.seconds:
        for op in args.ops:
            for model in args.models:
                r = run_child(__file__, model, op, seconds, args.device)
                r.update(model=model, preset=MODELS[model], op=op, seconds=seconds)
                if "wall_s" in r:
                    r["rtf"] = seconds / r["wall_s"]
                    r["s_per_audio_s"] = r["wall_s"] / seconds
                results["cases"].append(r)
                print(json.dumps(r), flush=True)
                args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
