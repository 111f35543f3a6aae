"""Peak memory of a reconstruction (encode_file + decode, what `m2l reconstruct` runs) of mono vs
stereo audio with the released-size v1 model (`m2l-v1`, initial weights: memory and speed do not
depend on their values), each in a fresh child process, in one run.

Stereo is two rows; a model pass holds at most one window of units over all rows, so stereo should
peak near mono (plus its larger audio buffers), not at twice the activations.

    python bench/bench_stereo_memory.py --seconds 30 --out bench/results/stereo_memory.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from child import peak_rss_mb, report, run_child

SR = 44100


def child(channels: int, seconds: float) -> dict:
    """Runs in a subprocess: one reconstruction of `seconds` of noise with `channels` channels."""
    import warnings

    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    import m2l

    codec = m2l.load("m2l-v1", device="cpu")
    x = (np.random.RandomState(0).randn(channels, int(seconds * SR)) * 0.1).astype(np.float32)
    start = time.perf_counter()
    y = codec.decode(codec.encode_file(x, SR), seed=0)
    return {"wall_s": time.perf_counter() - start, "out_shape": list(y.shape), "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--out", type=Path)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), float(args.child[1]))))
        return
    rows = {f"{c}ch": run_child(__file__, c, args.seconds) for c in (1, 2)}
    mono, stereo = rows["1ch"], rows["2ch"]
    result = {"seconds": args.seconds, **rows}
    if "peak_rss_mb" in mono and "peak_rss_mb" in stereo:
        result["stereo_over_mono_peak"] = stereo["peak_rss_mb"] / mono["peak_rss_mb"]
    report(result, args.out)


if __name__ == "__main__":
    main()
