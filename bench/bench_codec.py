"""Codec benchmark: m2l vs the authors' `music2latent` package on identical random weights.

Each measurement runs in a fresh child process (so peak memory is its own); one run of this
script does every case, alternating implementations. Reports wall time, real-time factor,
peak RSS, and achieved FLOP/s as a fraction of this machine's measured fp32 matmul rate.

    python bench/bench_codec.py --seconds 10 60 --out bench/out/codec.json
    python bench/bench_codec.py --profile 5 --out bench/out/codec.json   # operator shares
    python bench/bench_codec.py --seconds 5 --impls authors authors+retain m2l m2l+retain

An implementation name ending in `+retain` runs with `m2l.runtime.retain_freed_memory()` on
(opt-in; no m2l command uses it): freed memory is kept for the next allocation.

Before/after a change (a refactor must not slow the codec): `m2l-base` runs the same calls with
the m2l of another source folder, alternating with `m2l`, and the script prints m2l / m2l-base
wall-time ratios:

    git worktree add --detach /tmp/m2l-base 00e1712
    python bench/bench_codec.py --seconds 10 --impls m2l-base m2l --rounds 3 --no-flops \
        --base-src /tmp/m2l-base/src --out bench/out/codec-before-after.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from child import RETAIN, apply_retain, peak_rss_mb, run_child

SR = 44100
BASE_SRC = "M2L_BENCH_BASE_SRC"
"""The environment variable that hands --base-src to the child processes."""


def make_checkpoint(path: Path) -> None:
    """The authors' network with random non-zero weights, saved in their format."""
    from music2latent.models import UNet

    torch.manual_seed(0)
    net = UNet()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 1 / math.sqrt(p[0].numel())) if p.dim() > 1 else p.normal_(0, 0.05)
    torch.save({"gen_state_dict": net.state_dict()}, path)


def matmul_rate() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(3):
        a @ b
    best = math.inf
    for _ in range(10):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 2048**3 / best


def child(impl: str, op: str, seconds: float, ckpt: str) -> dict:
    """Runs in a subprocess: one encode or decode, timed."""
    import warnings

    warnings.simplefilter("ignore")
    impl = apply_retain(impl)
    if impl == "m2l-base":  # the same calls, on the m2l of --base-src
        sys.path.insert(0, os.environ[BASE_SRC])
        import m2l

        assert m2l.__file__.startswith(os.environ[BASE_SRC]), m2l.__file__
        impl = "m2l"
    x = (np.random.RandomState(0).randn(int(seconds * SR)) * 0.1).astype(np.float32)
    if impl == "authors":
        import music2latent.inference as inf

        inf.download_model = lambda: None
        ed = inf.EncoderDecoder(ckpt, device="cpu")
        encode, decode = (lambda: ed.encode(x)), (lambda z: ed.decode(z))
    else:
        import m2l

        codec = m2l.load(ckpt, device="cpu")
        if impl == "m2l-bf16":  # bf16 autocast (`--precision bf16`): not the authors' arithmetic
            codec.precision = torch.bfloat16
        encode, decode = (lambda: codec.encode(x)), (lambda z: codec.decode(z, seed=0))
    z = encode() if op == "decode" else None
    start = time.perf_counter()
    out = encode() if op == "encode" else decode(z)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "out_shape": list(out.shape), "peak_rss_mb": peak_rss_mb()}


def count_flops(op: str, seconds: float, ckpt: str) -> float:
    """FLOPs of one one-shot encode/decode (the same network as the authors'). The network's cost
    is linear in length (convolutions, attention within frames), so beyond 60 s it is counted on
    60 s and scaled."""
    if seconds > 60:
        return count_flops(op, 60, ckpt) * seconds / 60
    from torch.utils.flop_counter import FlopCounterMode

    import m2l

    codec = m2l.load(ckpt, device="cpu", window_seconds=1e9)  # count the one-shot cost
    x = (np.random.RandomState(0).randn(int(seconds * SR)) * 0.1).astype(np.float32)
    z = codec.encode(x, left_pad=0)
    with FlopCounterMode(display=False) as counter:
        codec.encode(x, left_pad=0) if op == "encode" else codec.decode(z, seed=0, left_pad=0)
    return float(counter.get_total_flops())


def profile(seconds: float, ckpt: str) -> dict:
    """Share of a warm m2l encode's CPU time per operator (torch.profiler), largest first."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    import m2l

    codec = m2l.load(ckpt, device="cpu")
    x = (np.random.RandomState(0).randn(int(seconds * SR)) * 0.1).astype(np.float32)
    codec.encode(x)  # warm up
    with profiler(activities=[ProfilerActivity.CPU]) as prof:
        codec.encode(x)
    ops = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in ops)
    return {k: round(t / total, 3) for k, t in sorted(ops, key=lambda kv: -kv[1])[:8]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, nargs="+", default=[10, 60])
    ap.add_argument("--ops", nargs="+", default=["encode", "decode"])
    impls = [i + r for i in ("authors", "m2l", "m2l-bf16") for r in ("", RETAIN)] + ["m2l-base"]
    ap.add_argument("--impls", nargs="+", default=["authors", "m2l"], choices=impls)
    ap.add_argument("--out", type=Path, default=Path("bench/out/codec.json"))
    ap.add_argument("--base-src", type=Path, help="another m2l's src folder: the m2l-base case")
    ap.add_argument("--rounds", type=int, default=1, help="repeat every case, alternating")
    ap.add_argument("--no-flops", action="store_true", help="skip counting FLOPs (a one-shot pass)")
    ap.add_argument("--profile", type=float, metavar="SECONDS", help="only profile one m2l encode")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        impl, op, seconds, ckpt = args.child
        print(json.dumps(child(impl, op, float(seconds), ckpt)))
        return
    if "m2l-base" in args.impls:
        if args.base_src is None or not (args.base_src / "m2l").is_dir():
            ap.error("the m2l-base case needs --base-src, a folder holding an m2l package")
        os.environ[BASE_SRC] = str(args.base_src.resolve())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = args.out.parent / "random_authors.pt"
    if not ckpt.exists():
        make_checkpoint(ckpt)
    if args.profile:
        print(json.dumps(profile(args.profile, str(ckpt)), indent=1))
        return
    rate = matmul_rate()
    results = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "matmul_fp32_flops": rate,
        "cases": [],
    }
    print(f"fp32 matmul: {rate / 1e9:.1f} GFLOP/s, threads {torch.get_num_threads()}", flush=True)
    for seconds in args.seconds:
        for op in args.ops:
            flops = math.nan if args.no_flops else count_flops(op, seconds, str(ckpt))
            for round_ in range(args.rounds):
                for impl in args.impls:
                    r = run_child(__file__, impl, op, seconds, ckpt)
                    r.update(impl=impl, op=op, seconds=seconds, flops=flops, round=round_)
                    if "wall_s" in r:
                        r["rtf"] = seconds / r["wall_s"]
                        r["flops_fraction"] = flops / r["wall_s"] / rate
                    results["cases"].append(r)
                    print(json.dumps(r), flush=True)
                    args.out.write_text(json.dumps(results, indent=1))
    if "m2l-base" in args.impls and "m2l" in args.impls:
        print_ratios(results["cases"])


def print_ratios(cases: list[dict]) -> None:
    """m2l / m2l-base wall time per operation and length: each round's ratio and their median."""
    for op, seconds in dict.fromkeys((c["op"], c["seconds"]) for c in cases):
        walls = {
            impl: [
                c.get("wall_s", math.nan)
                for c in cases
                if (c["op"], c["seconds"], c["impl"]) == (op, seconds, impl)
            ]
            for impl in ("m2l", "m2l-base")
        }
        ratios = [a / b for a, b in zip(walls["m2l"], walls["m2l-base"], strict=True)]
        shown = " ".join(f"{r:.3f}" for r in ratios)
        print(f"{op} {seconds:g} s: m2l / m2l-base wall {shown} (median {float(np.median(ratios)):.3f})")


if __name__ == "__main__":
    main()
