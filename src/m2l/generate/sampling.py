"""Sampling a latent generator, whichever its objective: `sample` (one window, with context
frames and classes) and `sample_long` (clips of any length, window after window).

`sample` checks its arguments, draws the initial unit noise from `seed` and hands it to the
integrator of the model's objective (`model.cfg.objective`): `m2l.generate.flow.flow_sample` or
`m2l.generate.edm.edm_sample`; context frames come back exactly as given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from m2l.errors import M2LError
from m2l.generate.edm import edm_sample
from m2l.generate.flow import SAMPLERS, flow_sample, prefix_mask
from m2l.generate.model import Generator

INTEGRATORS: dict[str, Callable[..., torch.Tensor]] = {"flow": flow_sample, "edm": edm_sample}
"""The integrator of each objective: f(model, noise, steps, mask, context, label, guidance,
method) -> [B, D, T] latents."""


def sample(
    model: Generator,
    shape: tuple[int, int, int],
    steps: int,
    seed: int,
    context: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    label: torch.Tensor | int | None = None,
    guidance: float = 1.0,
    method: str = "heun",
) -> torch.Tensor:
    """Generate normalised latents by integrating the model's ODE from noise to data: the flow
    ODE from t = 1 to 0 for a flow model, the probability-flow ODE from sigma_max to 0 on the
    Karras schedule for an EDM model (`model.cfg.objective`).

    Deterministic for a seed: the initial unit noise comes from a CPU generator seeded with
    `seed` (the same noise on every device, and for both objectives), and no other randomness
    is used. Runs without autograd on
    the model's device and dtype; the model has no dropout, so its train/eval mode does not matter.

    Args:
        model: the generator.
        shape: (B, D, T) of the latents to make; T may differ from the training window.
        steps: ODE steps (Heun: 2 evaluations each, but EDM's last step is Euler; Euler: 1).
        seed: an integer in [0, 2**63).
        context: [B, D, T] or [D, T] clean latents given at the `mask` frames.
        mask: [B, T] or [T] bool, True on context frames (returned exactly as given).
        label: a class label for every clip, or [B] labels (None: no class).
        guidance: the classifier-free guidance scale (other than 1 only with a label).
        method: "heun" or "euler" (`SAMPLERS`).

    Returns:
        [B, D, T] latents (normalised, as the model was trained on).
    """
    like = model.proj_in.weight  # [W, D + 1]: the model's device and dtype
    b, d, frames = _check_sampling(model, shape, steps, seed, guidance, method)
    context, mask = _check_context(context, mask, (b, d, frames), like)
    label = _check_label(label, guidance, b, like.device)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=generator).to(like.device, like.dtype)  # [B, D, T]
    with torch.no_grad():
        x = INTEGRATORS[model.cfg.objective](model, noise, steps, mask, context, label, guidance, method)
    return x if mask is None else torch.where(mask[:, None], context, x)  # [B, D, T]


def _check_sampling(
    model: Generator, shape: tuple[int, ...], steps: int, seed: int, guidance: float, method: str
) -> tuple[int, int, int]:
    if len(shape) != 3 or shape[1] != model.cfg.latent_dim or min(shape) < 1:
        raise M2LError(f"shape must be (B, {model.cfg.latent_dim}, T), got {tuple(shape)}")
    if not isinstance(steps, int) or steps < 1:
        raise M2LError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise M2LError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    if not math.isfinite(guidance):
        raise M2LError(f"guidance must be a finite number, got {guidance!r}")
    if method not in SAMPLERS:
        raise M2LError(f"method must be one of {', '.join(SAMPLERS)}, got {method!r}")
    return shape[0], shape[1], shape[2]


def _check_context(
    context: torch.Tensor | None, mask: torch.Tensor | None, shape: tuple[int, int, int], like: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(context [B, D, T], mask [B, T]) broadcast to the batch and placed like `like`, or (None, None)."""
    if mask is None:
        return None, None
    b, d, frames = shape
    if context is None or mask.shape[-1] != frames or context.shape[-2:] != (d, frames):
        raise M2LError(
            f"context [B, {d}, {frames}] and mask [B, {frames}] go together, "
            f"got {_shape(context)} and {_shape(mask)}"
        )
    context = context.to(like.device, like.dtype).expand(b, d, frames)  # [B, D, T]
    return context, mask.to(like.device, torch.bool).expand(b, frames)  # [B, D, T], [B, T]


def _check_label(
    label: torch.Tensor | int | None, guidance: float, batch: int, device: torch.device
) -> torch.Tensor | None:
    """[B] long labels on `device` (or None); guidance other than 1 needs labels."""
    if label is None:
        if guidance != 1.0:
            raise M2LError(f"guidance {guidance:g} needs a class label (guidance 1 without one)")
        return None
    label = torch.as_tensor(label)
    if label.dtype.is_floating_point or label.dim() > 1 or label.numel() not in (1, batch):
        raise M2LError(f"label must be an integer or {batch} integers, got {_shape(label)}")
    return label.to(device, torch.long).expand(batch)  # [B]


def _shape(x: torch.Tensor | None) -> tuple[int, ...] | None:
    return None if x is None else tuple(x.shape)


def window_seeds(seed: int) -> Iterator[int]:
    """The seeds of the windows of `sample_long`: integers drawn from a generator seeded with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield int(torch.randint(0, 2**62, (1,), generator=generator))


def sample_long(
    model: Generator,
    frames: int,
    steps: int,
    seed: int,
    *,
    batch: int = 1,
    prompt: torch.Tensor | None = None,
    overlap: int | None = None,
    label: torch.Tensor | int | None = None,
    guidance: float = 1.0,
    method: str = "heun",
) -> torch.Tensor:
    """Latents of any length, window after window: each training-size window continues the last
    `overlap` frames made so far (given as a context prefix), and adds the rest.

    Args:
        model: the generator; its windows are `model.cfg.frames` long.
        frames: the length of the result, prompt included.
        steps, label, guidance, method: as `sample`, for every window.
        seed: window i samples with the i-th seed of `window_seeds(seed)`.
        batch: clips to make when there is no prompt.
        prompt: [B, D, P] or [D, P] normalised latents to continue (kept as the first P frames).
        overlap: context frames of each window (default: half a window).

    Returns:
        [B, D, frames] normalised latents.
    """
    window, d = model.cfg.frames, model.cfg.latent_dim
    overlap = window // 2 if overlap is None else overlap
    if not 1 <= overlap < window:
        raise M2LError(f"overlap must be in 1..{window - 1} frames, got {overlap}")
    clip = (
        torch.zeros(batch, d, 0) if prompt is None else prompt if prompt.dim() == 3 else prompt[None]
    )  # [B, D, P]
    if clip.dim() != 3 or clip.shape[1] != d:
        raise M2LError(f"the prompt must be [B, {d}, P] or [{d}, P], got {tuple(clip.shape)}")
    if clip.shape[-1] > frames:
        raise M2LError(f"the prompt ({clip.shape[-1]} frames) is longer than the clip ({frames})")
    seeds = window_seeds(seed)
    clip = clip.to(model.proj_in.weight)  # [B, D, P]
    b = clip.shape[0]
    while clip.shape[-1] < frames:
        given = min(overlap, clip.shape[-1])
        context = torch.zeros(b, d, window).to(clip)  # [B, D, window]
        context[..., :given] = clip[..., clip.shape[-1] - given :]  # the tail made so far
        mask = prefix_mask(b, window, given, clip.device) if given else None  # [B, window]
        out = sample(model, (b, d, window), steps, next(seeds), context, mask, label, guidance, method)
        clip = torch.cat((clip, out[..., given:]), dim=-1)  # [B, D, P + window - given]
    return clip[..., :frames]
