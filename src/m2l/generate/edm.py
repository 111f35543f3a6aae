"""EDM-style diffusion for the latent generator (Karras et al. 2022, "Elucidating the Design Space
of Diffusion-Based Generative Models"): preconditioning, the training loss and a Heun sampler.

A clean normalised clip x0 is noised as x = x0 + sigma * noise. The same network as rectified flow
(`m2l.generate.model`) is wrapped into a denoiser

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, t(sigma)),
    c_skip = s_d^2 / (sigma^2 + s_d^2),  c_out = sigma s_d / sqrt(sigma^2 + s_d^2),
    c_in = 1 / sqrt(sigma^2 + s_d^2),

with s_d = `SIGMA_DATA` = 1 (the latents have unit variance per dimension), so that the raw
network F always sees unit-scale inputs and regresses a unit-scale target; F itself never sees
c_skip or c_out. Training draws ln(sigma) ~ N(P_mean = -1.2, P_std = 1.2) and minimises
lambda(sigma) |D - x0|^2 with lambda = (sigma^2 + s_d^2) / (sigma s_d)^2, which equals the plain
MSE of F against its target (x0 - c_skip x) / c_out (what `edm_loss` computes).

Time input: EDM feeds c_noise = ln(sigma) / 4 to the network. Our network embeds its time t with
sinusoids of 1000 t made for t in [0, 1] (`m2l.generate.model.time_embedding`), so we pass the
same quantity affinely rescaled onto that range: t = (ln sigma - ln sigma_min) / (ln sigma_max -
ln sigma_min) = (4 c_noise - ln sigma_min) / (ln sigma_max - ln sigma_min), 0 at sigma_min = 0.002
and 1 at sigma_max = 80 (training sigmas fall in about [0.006, 30]: t in [0.1, 0.9]). Feeding
c_noise itself (range about -1.6..1.1) would also work, but would use the embedding's frequencies
on a range of another size than the flow's times: one embedding, one range.

Context frames (continuation, inpainting) reach the network clean, in place of the scaled noisy
ones: at sigma -> 0 the network input c_in x is x itself, so clean frames are what the network
sees in the limit anyway (s_d = 1), and they are left out of the loss. Classifier-free guidance
mixes the raw outputs F, which mixes the denoisers D the same way (D is affine in F).

Sampling integrates the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma from sigma_max
to 0 over the Karras schedule (sigma_min 0.002, sigma_max 80, rho 7): Heun steps (Algorithm 1 of
the paper without churn) and an Euler last step to sigma = 0 (which is D(x; sigma_min), computed
as such rather than as x + (0 - sigma) (x - D) / sigma, which would cancel in float32), so
`steps` steps cost 2 steps - 1 network evaluations (Heun) or `steps` (Euler). Few steps suit it
less than the flow: on the ODE of unit Gaussian data, Heun over 4 Karras steps overshoots (the
step from sigma ~ 10 to ~ 0.5 is too long), 16 come within 6%; the paper uses 18.
"""

from __future__ import annotations

import math

import torch

from m2l.consistency.sampling import rho_warp
from m2l.generate.flow import SAMPLERS, draw, drop_labels, guided_velocity, masked_mean
from m2l.generate.model import Generator

SIGMA_DATA = 1.0
"""The standard deviation of the data: normalised latents have unit variance."""
P_MEAN, P_STD = -1.2, 1.2
"""ln(sigma) of training is drawn from N(P_MEAN, P_STD^2)."""
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0
"""The sampler's noise levels (Karras schedule) and the range mapped onto network times [0, 1]."""


def preconditioning(
    sigma: torch.Tensor, sigma_data: float = SIGMA_DATA
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """EDM's (c_skip, c_out, c_in, c_noise) of noise levels `sigma` (any shape, > 0), each
    shaped like `sigma`."""
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / total.sqrt()
    c_in = 1 / total.sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def loss_weight(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """EDM's lambda(sigma) = (sigma^2 + s_d^2) / (sigma s_d)^2 (1 / c_out^2), shaped like `sigma`."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def network_time(sigma: torch.Tensor) -> torch.Tensor:
    """The network's time input of noise levels `sigma`: ln(sigma) mapped affinely so that
    [SIGMA_MIN, SIGMA_MAX] -> [0, 1] (see the module docstring); shaped like `sigma`."""
    low, high = math.log(SIGMA_MIN), math.log(SIGMA_MAX)
    return (sigma.log() - low) / (high - low)


def karras_sigmas(steps: int) -> list[float]:
    """The `steps` + 1 noise levels a sampler visits: `steps` levels from SIGMA_MAX down to
    SIGMA_MIN, spaced evenly in sigma^(1 / rho), then 0."""
    if steps == 1:
        return [SIGMA_MAX, 0.0]
    return [rho_warp(1 - i / (steps - 1), SIGMA_MIN, SIGMA_MAX, RHO) for i in range(steps)] + [0.0]


def denoise(
    model: Generator,
    x: torch.Tensor,
    sigma: torch.Tensor,
    mask: torch.Tensor | None = None,
    context: torch.Tensor | None = None,
    label: torch.Tensor | None = None,
    guidance: float = 1.0,
) -> torch.Tensor:
    """The preconditioned denoiser D(x; sigma), with classifier-free guidance.

    Args:
        model: the generator (the raw network F).
        x: [B, D, T] noisy latents.
        sigma: [B] noise levels (> 0).
        mask: [B, T] bool context frames, or None.
        context: [B, D, T] clean context latents (with `mask`).
        label: [B] long class labels, or None.
        guidance: the guidance scale (as `m2l.generate.flow.guided_velocity`).

    Returns:
        [B, D, T] the estimate of the clean latents.
    """
    c_skip, c_out, c_in, _ = preconditioning(sigma[:, None, None])  # [B, 1, 1] each
    out = guided_velocity(model, c_in * x, network_time(sigma), mask, context, label, guidance)
    return c_skip * x + c_out * out  # [B, D, T]


def edm_loss(
    model: Generator,
    x0: torch.Tensor,
    generator: torch.Generator,
    mask: torch.Tensor | None = None,
    label: torch.Tensor | None = None,
    label_dropout: float = 0.0,
) -> torch.Tensor:
    """The EDM denoising loss of a batch, on the generated frames.

    Draws, in order: ln(sigma) ~ N(P_MEAN, P_STD^2) [B], the noise [B, D, T], then (with a
    dropout) the dropped labels; all from `generator`.

    Args:
        model: the generator.
        x0: [B, D, T] clean normalised latents.
        generator: the source of every draw.
        mask: [B, T] bool context frames (given clean, left out of the loss), or None.
        label: [B] long class labels, or None.
        label_dropout: the share of labels replaced by the null class.

    Returns:
        The scalar loss: mean over generated values of lambda(sigma) (D - x0)^2, computed as
        the MSE of the raw output against (x0 - c_skip x) / c_out.
    """
    b = x0.shape[0]
    sigma = (P_MEAN + P_STD * draw((b,), generator, x0)).exp()  # [B]
    noise = draw(tuple(x0.shape), generator, x0)  # [B, D, T]
    x = x0 + sigma[:, None, None] * noise  # [B, D, T]
    label = drop_labels(model, label, label_dropout, generator, x0)
    c_skip, c_out, c_in, _ = preconditioning(sigma[:, None, None])  # [B, 1, 1] each
    out = model(c_in * x, network_time(sigma), mask, None if mask is None else x0, label)  # [B, D, T]
    target = (x0 - c_skip * x) / c_out  # [B, D, T]: unit scale at every sigma
    return masked_mean((out - target) ** 2, mask)


def edm_sample(
    model: Generator,
    noise: torch.Tensor,
    steps: int,
    mask: torch.Tensor | None = None,
    context: torch.Tensor | None = None,
    label: torch.Tensor | None = None,
    guidance: float = 1.0,
    method: str = "heun",
) -> torch.Tensor:
    """Integrate the probability-flow ODE from unit `noise` [B, D, T] (scaled to SIGMA_MAX) to
    sigma = 0 over `karras_sigmas(steps)`; `method` ("heun" or "euler") for every step but the
    last, an Euler step (the denoiser's estimate). Arguments checked by the caller
    (`m2l.generate.sampling.sample`).

    Returns:
        [B, D, T] latents (the context frames not yet put back).
    """
    b = noise.shape[0]

    def denoised(x: torch.Tensor, sigma: float) -> torch.Tensor:
        level = torch.full((b,), sigma, device=x.device, dtype=x.dtype)  # [B]
        return denoise(model, x, level, mask, context, label, guidance)  # [B, D, T]

    def slope(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return (x - denoised(x, sigma)) / sigma  # [B, D, T]

    sigmas = karras_sigmas(steps)
    x = noise * sigmas[0]  # [B, D, T]
    for sigma, sigma_next in zip(sigmas[:-2], sigmas[1:-1], strict=True):
        x = SAMPLERS[method](slope, x, sigma, sigma_next)  # [B, D, T]
    return denoised(x, sigmas[-2])  # the Euler step to sigma = 0 lands on D itself
