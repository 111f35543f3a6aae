"""Flow matching for the latent generator: the training loss, context masks and ODE samplers.

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

Classes: with a labelled model, training replaces a share of the labels with the null class
(`label_dropout`), and sampling mixes the two predictions with classifier-free guidance:
v = v_null + guidance * (v_label - v_null) (guidance 1: the conditional prediction alone).

Randomness comes only from explicit `torch.Generator`s (`sample` makes its own from `seed`), so
results never depend on the global RNG state; noise is drawn on the generator's device and moved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

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
    if label is not None and label_dropout > 0:
        dropped = draw((b,), generator, x0, normal=False) < label_dropout  # [B]
        label = torch.where(dropped, torch.full_like(label, model.cfg.null_label), label)  # [B]
    velocity = model(x_t, t, mask, None if mask is None else x0, label)  # [B, D, T]
    error = (velocity - (noise - x0)) ** 2  # [B, D, T]
    if mask is None:
        return error.mean()
    generated = (~mask)[:, None].to(error.dtype)  # [B, 1, T]
    return (error * generated).sum() / (generated.sum() * x0.shape[1]).clamp_min(1)


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
    """Generate normalised latents by integrating the flow ODE from noise (t = 1) to data (t = 0).

    Deterministic for a seed: the initial noise comes from a CPU generator seeded with `seed`
    (the same noise on every device), and no other randomness is used. Runs without autograd on
    the model's device and dtype; the model has no dropout, so its train/eval mode does not matter.

    Args:
        model: the generator.
        shape: (B, D, T) of the latents to make; T may differ from the training window.
        steps: ODE steps (Heun: 2 evaluations each, Euler: 1).
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
    x = torch.randn(shape, generator=generator).to(like.device, like.dtype)  # [B, D, T]

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        times = torch.full((b,), t, device=x.device, dtype=x.dtype)  # [B]
        return guided_velocity(model, x, times, mask, context, label, guidance)  # [B, D, T]

    grid = time_grid(steps)
    with torch.no_grad():
        for t, t_next in zip(grid[:-1], grid[1:], strict=True):
            x = SAMPLERS[method](velocity, x, t, t_next)  # [B, D, T]
    return x if mask is None else torch.where(mask[:, None], context, x)


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
