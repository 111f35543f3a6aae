"""The step schedules of a run (learning rate, teacher offset), and how `--extend` continues them.

A run's schedules decay over `cfg.steps`. Extending a run at step E from S to M steps must not
rescale them (the rate would jump back up mid-run), so each extension is recorded in
`cfg.extensions` as (E, S), and from step E on every schedule decays from the value it had at E
to its final value at M, with the same shape (cosine for the learning rate, exponential for the
teacher offset). Before E nothing changes, so a run resumed from an older checkpoint replays the
schedule it had. An extension during the learning-rate warm-up leaves the warm-up as it was and
the cosine spans the new steps (the warm-up does not depend on `steps`, so nothing jumps).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from m2l.errors import M2LError
from m2l.train.config import TrainConfig

Curve = Callable[[float, float, float], float]
"""(progress in [0, 1], start value, final value) -> value."""


def cosine(frac: float, start: float, end: float) -> float:
    """Half a cosine from `start` (frac 0) to `end` (frac 1)."""
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * frac))


def exponential(frac: float, start: float, end: float) -> float:
    """Geometric interpolation from `start` (frac 0) to `end` (frac 1)."""
    return start * (end / start) ** frac


def continued(step: int, cfg: TrainConfig, begin: int, start: float, end: float, curve: Curve) -> float:
    """A schedule that decays with `curve` from `start` at step `begin` to `end` at `cfg.steps`,
    continued piecewise from each extension of `cfg.extensions` on (see the module docstring).

    Args:
        step: the optimiser step (0-based).
        cfg: the run's config (its `steps` and `extensions`).
        begin: the step the decay starts at (before it the schedule is `start`).
        start: the value at `begin`.
        end: the value at the last step.
        curve: the shape of the decay.

    Returns:
        The schedule's value at `step`.
    """

    def value(at: int, first: int, last: int, initial: float) -> float:
        return curve(min(max((at - first) / max(last - first, 1), 0.0), 1.0), initial, end)

    for at, before in cfg.extensions:
        if at <= begin:  # extended before the decay began: the decay spans the new steps
            continue
        if step < at:
            return value(step, begin, before, start)
        begin, start = at, value(at, begin, before, start)
    return value(step, begin, cfg.steps, start)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.min_lr at cfg.steps (continued over
    each extension)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return continued(step, cfg, cfg.warmup_steps, cfg.lr, cfg.min_lr, cosine)


def delta_at(step: int, cfg: TrainConfig) -> float:
    """The published teacher offset (index space): exponential decay from cfg.delta_start to
    cfg.delta_end over the run (continued over each extension)."""
    return continued(step, cfg, 0, cfg.delta_start, cfg.delta_end, exponential)


def extend(cfg: TrainConfig, steps: int, at: int) -> TrainConfig:
    """`cfg` extended at step `at` to `steps` steps, its schedules continuing from step `at`.

    Raises:
        M2LError: `steps` is not more than `cfg.steps`, or `at` is past `cfg.steps`.
    """
    if steps <= cfg.steps or not 0 <= at <= cfg.steps:
        raise M2LError(f"cannot extend a run of {cfg.steps} steps at step {at} to {steps} steps")
    history = cfg.extensions + ((at, cfg.steps),) if at > 0 else cfg.extensions
    return dataclasses.replace(cfg, steps=steps, extensions=history)
