"""Rectified flow vs EDM-style diffusion for the latent generator, at equal CPU.

Both arms train the same network (a generator preset, `gen-small` by default) from the same seed on
the same crops, context masks and schedule (`m2l.generate.training`, one process, no run folder),
each for the same CPU budget measured with `time.process_time` around its optimiser steps (all
threads of the process; validation and sampling not counted). With `--steps` both train the same
number of steps instead; each arm's CPU seconds per step are reported either way, so one can check
that equal steps are equal CPU (the two losses cost the same network pass; EDM adds a few
elementwise operations).

What is compared (the two losses are on different scales and are not comparable to each other):

- each arm's validation loss curve (EMA weights, `validation_loss`), every `--val-every` steps;
- sample quality that needs no codec: the Frechet distance between feature statistics of
  `--windows` generated windows (unconditional, EMA weights) and as many held-out real windows,
  for 4, 8 and 16 sampler steps, with the Heun and the Euler sampler (keys "heun-8"...; Heun
  takes 2 steps network evaluations for flow, 2 steps - 1 for EDM, Euler `steps`: reported as
  `nfe`). Euler is there because EDM's Heun over the Karras schedule overshoots at very few steps
  (see `m2l.generate.edm`). A window's features are, per latent dimension, its mean and standard
  deviation over time and its lag-1 autocorrelation (3 x 64 numbers for v1 latents). Two
  references frame the numbers: `fd_real_vs_real` (two independent sets of held-out windows: the
  floor that the sample size allows) and `fd_noise_vs_real` (unit Gaussian windows: no skill).
  With 64 windows and 192 features the covariances are rank-deficient: the FD is biased upwards
  and only comparable at the same `--windows`.

    python bench/gen_objective_study.py DATASET --cpu-seconds 3600 --out bench/results/gen_objective.json

DATASET is a packed latent dataset (`m2l pack`) or a folder of v1 `.m2l` files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from m2l.generate.data import LatentSplit
from m2l.generate.flow import SAMPLERS
from m2l.generate.model import Generator, generator_preset
from m2l.generate.sampling import sample
from m2l.generate.train_config import GenTrainConfig
from m2l.generate.training import Run, start_run, step_generator, train_step, validation_loss

OBJECTIVES = ("flow", "edm")


def window_features(x: torch.Tensor) -> torch.Tensor:
    """Per-window features of latents [N, D, T]: per dimension the mean and std over time and the
    lag-1 autocorrelation -> [N, 3 D] (float64)."""
    x = x.double()
    mean, std = x.mean(-1), x.std(-1, correction=0)  # [N, D] each
    centred = x - mean[..., None]  # [N, D, T]
    lag1 = (centred[..., 1:] * centred[..., :-1]).mean(-1) / (std**2).clamp_min(1e-12)  # [N, D]
    return torch.cat((mean, std, lag1), dim=1)  # [N, 3 D]


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Frechet distance between Gaussians fitted to feature sets a [N, F] and b [M, F]:
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    mu_a, mu_b = a.double().mean(0), b.double().mean(0)  # [F] each
    s_a, s_b = torch.cov(a.double().T), torch.cov(b.double().T)  # [F, F] each
    values, vectors = torch.linalg.eigh(s_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T  # S_a^(1/2)
    middle = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp_min(0)  # eigenvalues of S_a S_b
    trace = torch.trace(s_a) + torch.trace(s_b) - 2 * middle.sqrt().sum()
    return float((mu_a - mu_b).square().sum() + trace)


def new_run(data: LatentSplit, preset: str, objective: str, cfg: GenTrainConfig, folder: Path) -> Run:
    """A fresh run of `preset` trained with `objective` on `data` (CPU; nothing is written)."""
    network = generator_preset(preset, objective=objective, latent_dim=data.stats.latent_dim)
    return start_run(folder, data, network, cfg, torch.device("cpu"))


def cpu_per_step(data: LatentSplit, args: argparse.Namespace, objective: str, folder: Path) -> float:
    """CPU seconds of one optimiser step of an arm: the mean over 3 steps after one warm-up step."""
    run = new_run(data, args.preset, objective, train_config(args, steps=10), folder)
    train_step(run)
    start = time.process_time()
    for _ in range(3):
        train_step(run)
    return (time.process_time() - start) / 3


def train_config(args: argparse.Namespace, steps: int) -> GenTrainConfig:
    """The training settings of both arms, with the schedule ending at `steps`."""
    return GenTrainConfig(
        lr=args.lr,
        batch_size=args.batch_size,
        steps=max(1, steps),
        warmup=min(args.warmup, max(0, steps // 10)),
        val_batches=args.val_batches,
        precision=args.precision,
        seed=args.seed,
    )


def train_arm(run: Run, budget: float | None, val_every: int) -> dict[str, Any]:
    """Train `run.cfg.steps` steps, or until `budget` CPU seconds are spent (past the schedule's
    end, if the estimate of the steps fell short, at its final lr); the validation curve on the way."""
    used, curve = 0.0, []
    while run.step < run.cfg.steps if budget is None else used < budget:
        start = time.process_time()
        train_step(run)
        used += time.process_time() - start
        if run.step % val_every == 0:
            curve.append([run.step, validation_loss(run)])
            print(f"  {run.model.cfg.objective} step {run.step}: val {curve[-1][1]:.4f} ({used:.0f} CPU-s)")
    if not curve or curve[-1][0] != run.step:
        curve.append([run.step, validation_loss(run)])
    return {"steps": run.step, "cpu_s": used, "cpu_s_per_step": used / max(1, run.step), "val_curve": curve}


def ema_model(run: Run) -> Generator:
    """The EMA weights of `run` as a generator in eval mode."""
    model = Generator(run.model.cfg)
    model.load_state_dict(run.ema.state)
    return model.eval().requires_grad_(False)


def network_evaluations(objective: str, method: str, steps: int) -> int:
    """Network passes of `sample`: Heun 2 per step (EDM's last step is Euler), Euler 1."""
    if method == "euler":
        return steps
    return 2 * steps - 1 if objective == "edm" else 2 * steps


def sample_quality(run: Run, real: torch.Tensor, args: argparse.Namespace) -> dict[str, Any]:
    """The FD of `len(real)` samples against the real windows [N, D, T], for each sampler method
    and step count (keys "heun-8"...), and the network evaluations each took."""
    model, features = ema_model(run), window_features(real)
    fd, nfe = {}, {}
    for method in args.methods:
        for steps in args.sampler_steps:
            made = sample(model, tuple(real.shape), steps, args.seed, method=method)  # [N, D, T]
            fd[f"{method}-{steps}"] = frechet_distance(window_features(made), features)
            nfe[f"{method}-{steps}"] = network_evaluations(model.cfg.objective, method, steps)
    return {"fd": fd, "nfe": nfe}


def real_windows(data: LatentSplit, count: int, key: str, seed: int) -> torch.Tensor:
    """`count` held-out windows [N, D, T] (normalised), drawn with the key `key`."""
    return data.batch(data.val, count, step_generator(seed, "study", key))[0]


def study(args: argparse.Namespace) -> dict[str, Any]:
    """Train both arms and measure them (see the module docstring)."""
    data = LatentSplit(args.dataset, generator_preset(args.preset).frames, "", args.val_share)
    real, other = (real_windows(data, args.windows, key, args.seed) for key in ("real", "other"))
    noise = torch.randn(real.shape, generator=torch.Generator().manual_seed(args.seed))
    result: dict[str, Any] = {
        "dataset": data.identity,
        "settings": {k: v for k, v in vars(args).items() if k not in ("dataset", "out")},
        "torch_threads": torch.get_num_threads(),
        "fd_real_vs_real": frechet_distance(window_features(other), window_features(real)),
        "fd_noise_vs_real": frechet_distance(window_features(noise), window_features(real)),
        "arms": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        for objective in OBJECTIVES:
            folder = Path(scratch) / objective
            steps, budget = args.steps, None
            if args.steps is None:
                per_step = cpu_per_step(data, args, objective, folder)
                steps, budget = max(1, math.floor(args.cpu_seconds / per_step)), args.cpu_seconds
                print(f"{objective}: {per_step:.3f} CPU-s/step, about {steps} steps in {budget:g} CPU-s")
            run = new_run(data, args.preset, objective, train_config(args, steps), folder)
            arm = train_arm(run, budget, args.val_every)
            arm.update(sample_quality(run, real, args))
            result["arms"][objective] = arm
            print(f"{objective}: {json.dumps({k: arm[k] for k in ('steps', 'cpu_s', 'fd')})}")
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path, help="packed latent dataset or folder of .m2l files (v1)")
    budget = ap.add_mutually_exclusive_group(required=True)
    budget.add_argument("--cpu-seconds", type=float, help="training CPU budget of each arm")
    budget.add_argument("--steps", type=int, help="train each arm this many steps instead")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--preset", default="gen-small", help="generator preset of both arms")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=500, help="warm-up steps (at most a tenth of the steps)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--val-batches", type=int, default=4)
    ap.add_argument("--val-share", type=float, default=0.1)
    ap.add_argument("--windows", type=int, default=64, help="generated and real windows of the FD")
    ap.add_argument(
        "--sampler-steps",
        type=lambda s: [int(n) for n in s.split(",")],
        default=[4, 8, 16],
        help="sampler step counts of the FD (default 4,8,16)",
    )
    ap.add_argument(
        "--methods",
        type=lambda text: text.split(","),
        default=["heun", "euler"],
        help="sampler methods of the FD (default heun,euler)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if min(args.cpu_seconds or 1, args.steps or 1) <= 0:
        ap.error("the budget must be positive")
    if not set(args.methods) <= set(SAMPLERS) or min(args.sampler_steps) < 1:
        ap.error(f"methods must be among {', '.join(SAMPLERS)} and sampler steps positive")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the study; print and return (and with --out, write) the results."""
    args = parse_args(argv)
    result = study(args)
    text = json.dumps(result, indent=1, default=str)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
