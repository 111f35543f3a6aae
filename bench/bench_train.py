"""Training throughput: optimiser steps/s, CPU-seconds per step and audio-seconds/s.

Runs the real objective + backward + clipping + RAdam + EMA on random crops of the preset's length
and batch, after `--warmup` untimed steps, in this process. `--set FIELD=VALUE` overrides the
training config (recipe, precision, batch_size, ...); `--threads` sets torch's threads. CPU seconds
(process time) stay meaningful on a shared machine, wall seconds do not.

    python bench/bench_train.py --presets tiny small paper --steps 3
    python bench/bench_train.py --presets small --threads 1 --set recipe=fast --set precision=bf16
    python bench/bench_train.py --presets small --retain   # with m2l.runtime.retain_freed_memory
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from m2l.audio.spectral import num_samples
from m2l.config import resolve_precision
from m2l.models import create
from m2l.runtime import retain_freed_memory
from m2l.train.config import TRAIN_PRESETS, apply_overrides, model_config
from m2l.train.objective import ConsistencyObjective, sample_seeds
from m2l.train.state import EMA


def measure(name: str, steps: int, warmup: int, device: str, overrides: list[str], at_step: int) -> dict:
    cfg = apply_overrides(TRAIN_PRESETS[name](), overrides)
    dev = torch.device(device)
    model = create(model_config(cfg)).to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    autocast = resolve_precision(cfg.precision, dev, training=True)
    objective = ConsistencyObjective(model, cfg, autocast)
    optimizer = torch.optim.RAdam(model.parameters(), lr=cfg.lr)
    ema = EMA(model, cfg.ema_decay)
    sp = model.cfg.spectral
    crop = num_samples(cfg.crop_frames, sp)
    audio = torch.randn(cfg.batch_size, model.audio_channels, crop, device=dev) * 0.1
    wall, cpu = [], []
    for i in range(warmup + steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        step = at_step + i  # the teacher gap (and so the passes run) follows the step
        loss = objective(audio, sample_seeds(0, step, 0, cfg.batch_size), step).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        ema.update(model)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    per_step = sum(wall) / len(wall)
    out = {
        "preset": name,
        "overrides": overrides,
        "model": cfg.model,
        "batch": cfg.batch_size,
        "device": device,
        "threads": torch.get_num_threads(),
        "precision": str(autocast or "fp32"),
        "params": sum(p.numel() for p in model.parameters()),
        "s_per_step": per_step,
        "cpu_s_per_step": sum(cpu) / len(cpu),
        "steps_per_s": 1 / per_step,
        "audio_s_per_s": cfg.batch_size * crop / sp.sample_rate / per_step,
    }
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if dev.type == "cuda":
        out["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "paper"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument(
        "--at-step",
        type=int,
        default=10**6,
        help="training step to time (sets the teacher gap; default: late in training)",
    )
    ap.add_argument("--set", action="append", default=[], dest="overrides", metavar="FIELD=VALUE")
    ap.add_argument("--retain", action="store_true", help="keep freed memory for reuse (m2l.runtime)")
    args = ap.parse_args()
    if args.retain:
        retain_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.presets:
        print(
            json.dumps(measure(name, args.steps, args.warmup, args.device, args.overrides, args.at_step)),
            flush=True,
        )


if __name__ == "__main__":
    main()
