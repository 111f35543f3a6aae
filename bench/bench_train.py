"""Training throughput of the training presets: optimiser steps/s and audio-seconds/s.

Runs the real objective + backward + RAdam + EMA on random crops of the preset's length and batch,
after `--warmup` untimed steps, in this process (threads: torch default).

    python bench/bench_train.py --presets tiny small paper --steps 3
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from m2l.audio.spectral import num_samples
from m2l.config import preset
from m2l.models.v1 import Music2Latent
from m2l.train.config import TRAIN_PRESETS
from m2l.train.loop import precision
from m2l.train.objective import ConsistencyObjective, sample_seeds
from m2l.train.state import EMA


def measure(name: str, steps: int, warmup: int, device: str, batch: int | None) -> dict:
    cfg = TRAIN_PRESETS[name]()
    dev = torch.device(device)
    model = Music2Latent(preset(cfg.model)).to(dev).to(memory_format=torch.channels_last)
    autocast, _ = precision(cfg, dev)
    objective = ConsistencyObjective(model, cfg, autocast)
    optimizer = torch.optim.RAdam(model.parameters(), lr=cfg.lr)
    ema = EMA(model, cfg.ema_decay)
    sp = model.cfg.spectral
    crop = num_samples(cfg.crop_frames, sp)
    bs = batch or cfg.batch_size
    audio = torch.randn(bs, 1, crop, device=dev) * 0.1
    times = []
    for i in range(warmup + steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = objective(audio, sample_seeds(0, i, 0, bs), i).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        ema.update(model)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    per_step = sum(times) / len(times)
    out = {"preset": name, "model": cfg.model, "batch": bs, "device": device,
           "precision": str(autocast or "fp32"), "params": sum(p.numel() for p in model.parameters()),
           "s_per_step": per_step, "steps_per_s": 1 / per_step,
           "audio_s_per_s": bs * crop / sp.sample_rate / per_step}
    if dev.type == "cuda":
        out["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "paper"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=None, help="override the preset's batch")
    args = ap.parse_args()
    for name in args.presets:
        print(json.dumps(measure(name, args.steps, args.warmup, args.device, args.batch)), flush=True)


if __name__ == "__main__":
    main()
