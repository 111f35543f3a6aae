"""Generation speed: seconds of generated music (sampling + decoding) per second of wall time.

The issue's target: 30 s of generated music in under 30 s on the 2-core CPU. One process: load
the generator and its codec once, then for each round sample the latents (`make_latents`) and
decode them (the same two calls `m2l generate` makes), timing each part apart.

    OMP_NUM_THREADS=2 python bench/bench_generate.py --seconds 30 --rounds 3 \
        [--model RUN_OR_FILE] [--steps 8] [--out bench/results/generate_speed.json]

With no generator file (`--model preset:gen-small`), an untrained gen-small stands in: sampling
costs the same whatever the weights are.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch


def load(model: str, device: str):  # noqa: ANN201 (bench script)
    """The generator file and its codec; `preset:NAME` makes an untrained generator of the
    shipped codec's latents (for timing only)."""
    import m2l
    from m2l.generate.checkpoint import GeneratorFile, load_generator
    from m2l.generate.model import Generator, generator_preset
    from m2l.latents.stats import LatentStats

    if not model.startswith("preset:"):
        gen = load_generator(model)
        return gen, m2l.load(gen.codec_source, device=device)
    codec = m2l.load(device=device)
    cfg = generator_preset(model.removeprefix("preset:"))
    dims = cfg.latent_dim
    stats = LatentStats(
        kind="v1",
        model_id=codec.model_id,
        config_hash="",
        vectors=1,
        mean=(0.0,) * dims,
        std=(1.0,) * dims,
        global_mean=0.0,
        global_std=1.0,
    )
    gen = GeneratorFile(Generator(cfg).eval(), (), stats, codec.model_id, "default", Path(model))
    return gen, codec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="generator file, run folder, or preset:NAME")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from m2l.generate.make import Request, make_latents
    from m2l.generate.normalize import from_generator

    gen, codec = load(args.model, args.device)
    gen.model.to(codec.device)
    rows = []
    for seed in range(args.rounds):
        start = time.perf_counter()
        z, length = make_latents(gen, codec, Request(seconds=args.seconds, seed=seed, steps=args.steps))
        sampled = time.perf_counter()
        audio = codec.decode(from_generator(z, gen.stats, gen.cfg), seed=seed, length=length)
        done = time.perf_counter()
        assert audio.shape[-1] == length
        rows.append({"sample_s": sampled - start, "decode_s": done - sampled, "total_s": done - start})
        print(f"round {seed}: sample {rows[-1]['sample_s']:.2f} s, decode {rows[-1]['decode_s']:.2f} s")
    total = statistics.median(r["total_s"] for r in rows)
    result = {
        "model": args.model,
        "generator": gen.cfg.name,
        "codec": codec.model_id,
        "seconds": args.seconds,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "rounds": rows,
        "median_total_s": total,
        "median_sample_s": statistics.median(r["sample_s"] for r in rows),
        "median_decode_s": statistics.median(r["decode_s"] for r in rows),
        "x_realtime": args.seconds / total,
    }
    print(
        f"{args.seconds:g} s of music in {total:.2f} s (median of {args.rounds}): "
        f"{result['x_realtime']:.2f}x real time; sampling {result['median_sample_s']:.2f} s, "
        f"decoding {result['median_decode_s']:.2f} s"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
