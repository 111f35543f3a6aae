"""Flow matching for the latent generator: the training loss, context masks and the ODE steps
(`flow_sample` integrates; `m2l.generate.sampling.sample` is the entry point for any objective).

Rectified flow: a straight path from a clean (normalised) latent clip x0 at t = 0 to unit
Gaussian noise at t = 1,

    x_t = (1 - t) x0 + t * noise,        velocity v = dx_t/dt = noise - x0,

and the network regresses v with a plain MSE at a t drawn uniformly. We use it, rather than a
score/denoising diffusion with a noise schedule, for two reasons: the loss is one line with no
weighting or preconditioning to tune (the target has unit scale at every t for normalised
latents), and the learned ODE dx/dt = v(x, t), integrated from t = 1 to 0, has nearly straight
trajectories, so a few Euler or Heun steps (4-16 network evaluations) already give good samples.

Context (continuation and inpainting, one model): a per-frame mask marks frames given clean; the
network sees them in place of the noisy ones plus the mask as an input channel
(`m2l.generate.model`), and the loss counts only the frames to generate. Training draws masks
with `context_masks`: none (unconditional), a prefix (continuation) or a middle gap with context
on both sides (inpainting). The samplers return the context frames exactly as given.
`m2l.generate.edm` is the alternative objective (EDM-preconditioned diffusion) on the same network.

Classes: with a labelled model, training replaces a share of the labels with the null class
(`label_dropout`), and sampling mixes the two predictions with classifier-free guidance:
v = v_null + guidance * (v_label - v_null) (guidance 1: the conditional prediction alone).

Randomness comes only from explicit `torch.Generator`s (`sample` makes its own from `seed`), so
results never depend on the global RNG state; noise is drawn on the generator's device and moved.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from m2l.errors import M2LError
from m2l.generate.model import Generator

CONTEXT_KINDS = ("none", "prefix", "gap")
CONTEXT_MIX = (0.5, 0.25, 0.25)
"""The default shares of `CONTEXT_KINDS` among training examples."""

VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]
"""f(x [B, D, T], t) -> the velocity [B, D, T] at flow time t."""


def draw(
    shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor, normal: bool = True
) -> torch.Tensor:
    """Normal (or uniform [0, 1)) numbers drawn on the generator's device, placed and typed like `like`."""
    make = torch.randn if normal else torch.rand
    return make(shape, generator=generator, device=generator.device).to(like.device, like.dtype)


def prefix_mask(batch: int, frames: int, given: int, device: torch.device | None = None) -> torch.Tensor:
    """[B, T] bool: the first `given` frames are context (continuation)."""
    return (torch.arange(frames, device=device) < given).expand(batch, frames)


def gap_mask(
    batch: int, frames: int, start: int, stop: int, device: torch.device | None = None
) -> torch.Tensor:
    """[B, T] bool: every frame but those in [start, stop) is context (inpainting of the gap)."""
    positions = torch.arange(frames, device=device)  # [T]
    return ((positions < start) | (positions >= stop)).expand(batch, frames)


def context_masks(
    batch: int, frames: int, generator: torch.Generator, mix: tuple[float, float, float] = CONTEXT_MIX
) -> torch.Tensor:
    """Random training context masks: no context, a prefix, or all but a middle gap.

    A prefix has 1..T-1 frames, a gap 1..T-2 frames with at least one context frame on each side
    (lengths and places uniform); the kind of each row is drawn with the weights `mix` (for
    `CONTEXT_KINDS`).

    Args:
        batch: B.
        frames: T, at least 3.
        generator: the source of every draw (the masks are on its device).
        mix: non-negative weights of none / prefix / gap (not all zero).

    Returns:
        [B, T] bool, True on context frames.
    """
    if frames < 3 or len(mix) != 3 or min(mix) < 0 or sum(mix) <= 0:
        raise M2LError(f"context masks need frames >= 3 and 3 non-negative weights, got {frames}, {mix}")
    device = generator.device
    weights = torch.tensor(mix, dtype=torch.float64, device=device)
    kinds = torch.multinomial(weights, batch, replacement=True, generator=generator)  # [B]
    u = torch.rand(batch, 2, generator=generator, device=device, dtype=torch.float64)  # [B, 2]
    prefix = 1 + (u[:, 0] * (frames - 1)).long()  # [B] in 1..T-1
    gap = 1 + (u[:, 0] * (frames - 2)).long()  # [B] in 1..T-2
    start = 1 + (u[:, 1] * (frames - 1 - gap)).long()  # [B] in 1..T-1-gap
    positions = torch.arange(frames, device=device)[None]  # [1, T]
    in_prefix = positions < prefix[:, None]  # [B, T]
    outside_gap = (positions < start[:, None]) | (positions >= (start + gap)[:, None])  # [B, T]
    none = torch.zeros_like(in_prefix)  # [B, T]
    return torch.where(
        (kinds == 1)[:, None], in_prefix, torch.where((kinds == 2)[:, None], outside_gap, none)
    )


def flow_loss(
    model: Generator,
    x0: torch.Tensor,
    generator: torch.Generator,
    mask: torch.Tensor | None = None,
    label: torch.Tensor | None = None,
    label_dropout: float = 0.0,
) -> torch.Tensor:
    """The rectified-flow loss of a batch: MSE of the predicted velocity on generated frames.

    Args:
        model: the generator.
        x0: [B, D, T] clean normalised latents.
        generator: the source of t (uniform in [0, 1)), the noise and the label dropout.
        mask: [B, T] bool context frames (given clean, left out of the loss), or None.
        label: [B] long class labels, or None.
        label_dropout: the share of labels replaced by the null class (classifier-free guidance).

    Returns:
        The scalar loss: the mean squared error over the generated frames' values.
    """
    b = x0.shape[0]
    t = draw((b,), generator, x0, normal=False)  # [B]
    noise = draw(tuple(x0.shape), generator, x0)  # [B, D, T]
    x_t = (1 - t[:, None, None]) * x0 + t[:, None, None] * noise  # [B, D, T]
    label = drop_labels(model, label, label_dropout, generator, x0)
    velocity = model(x_t, t, mask, None if mask is None else x0, label)  # [B, D, T]
    return masked_mean((velocity - (noise - x0)) ** 2, mask)


def drop_labels(
    model: Generator,
    label: torch.Tensor | None,
    dropout: float,
    generator: torch.Generator,
    like: torch.Tensor,
) -> torch.Tensor | None:
    """[B] labels with a share `dropout` replaced by the null class (one uniform draw per label
    from `generator`, none when there are no labels or no dropout)."""
    if label is None or dropout <= 0:
        return label
    dropped = draw(tuple(label.shape), generator, like, normal=False) < dropout  # [B]
    return torch.where(dropped, torch.full_like(label, model.cfg.null_label), label)  # [B]


def masked_mean(error: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of `error` [B, D, T] over the frames outside `mask` [B, T] (all without one)."""
    if mask is None:
        return error.mean()
    generated = (~mask)[:, None].to(error.dtype)  # [B, 1, T]
    return (error * generated).sum() / (generated.sum() * error.shape[1]).clamp_min(1)


def guided_velocity(
    model: Generator,
    x: torch.Tensor,
    t: torch.Tensor,
    mask: torch.Tensor | None = None,
    context: torch.Tensor | None = None,
    label: torch.Tensor | None = None,
    guidance: float = 1.0,
) -> torch.Tensor:
    """The velocity with classifier-free guidance: v_null + guidance * (v_label - v_null).

    With no label or guidance 1 this is one plain evaluation (exactly the conditional
    prediction); otherwise the two branches run as one batch of 2B.

    Args:
        model: the generator.
        x: [B, D, T] latents at flow time t.
        t: [B] flow times.
        mask: [B, T] bool context frames, or None.
        context: [B, D, T] clean context latents (with `mask`).
        label: [B] long class labels, or None.
        guidance: the guidance scale.

    Returns:
        [B, D, T] velocity.
    """
    if label is None or guidance == 1.0:
        return model(x, t, mask, context, label)
    null = torch.full_like(label, model.cfg.null_label)  # [B]
    both = model(_twice(x), _twice(t), _twice(mask), _twice(context), torch.cat((label, null)))  # [2B, D, T]
    conditional, unconditional = both.chunk(2)  # [B, D, T] each
    return unconditional + guidance * (conditional - unconditional)


def _twice(x: torch.Tensor | None) -> torch.Tensor | None:
    """x [B, ...] repeated as [2B, ...] (None stays None)."""
    return None if x is None else torch.cat((x, x))


def euler_step(velocity: VelocityFn, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """One Euler step of dx/dt = v from t to t_next (one evaluation)."""
    return x + (t_next - t) * velocity(x, t)


def heun_step(velocity: VelocityFn, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """One Heun step (the trapezoid rule on an Euler prediction; two evaluations)."""
    v = velocity(x, t)
    v_next = velocity(x + (t_next - t) * v, t_next)
    return x + (t_next - t) * (v + v_next) / 2


SAMPLERS: dict[str, Callable[[VelocityFn, torch.Tensor, float, float], torch.Tensor]] = {
    "euler": euler_step,
    "heun": heun_step,
}
"""ODE steps by name (`sample`'s `method`)."""


def time_grid(steps: int) -> list[float]:
    """The flow times a sampler visits: `steps` equal steps from 1 (noise) to 0 (data)."""
    return [1.0 - i / steps for i in range(steps + 1)]


def flow_sample(
    model: Generator,
    noise: torch.Tensor,
    steps: int,
    mask: torch.Tensor | None = None,
    context: torch.Tensor | None = None,
    label: torch.Tensor | None = None,
    guidance: float = 1.0,
    method: str = "heun",
) -> torch.Tensor:
    """Integrate the flow ODE from `noise` [B, D, T] at t = 1 to t = 0 in `steps` equal steps of
    `method` (`SAMPLERS`). Arguments checked by the caller (`m2l.generate.sampling.sample`).

    Returns:
        [B, D, T] latents (the context frames not yet put back).
    """
    b = noise.shape[0]

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        times = torch.full((b,), t, device=x.device, dtype=x.dtype)  # [B]
        return guided_velocity(model, x, times, mask, context, label, guidance)  # [B, D, T]

    grid, x = time_grid(steps), noise
    for t, t_next in zip(grid[:-1], grid[1:], strict=True):
        x = SAMPLERS[method](velocity, x, t, t_next)  # [B, D, T]
    return x
