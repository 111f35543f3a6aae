"""Fréchet distance between embedding sets, and the Fréchet Audio Distance (FAD) built on it.

Each set of embeddings [N, D] is summarised by a Gaussian with its mean mu [D] and its unbiased
covariance S [D, D]; the Fréchet (2-Wasserstein) distance between two Gaussians is

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

We report d^2 (as published FAD numbers do), computed in float64. The trace of the matrix square
root is taken as sum_i sqrt(l_i), where l_i are the eigenvalues of the symmetric positive
semi-definite matrix R S2 R with R = S1^(1/2) (S1 S2 is similar to it, so both have the same
eigenvalues). Working with symmetric matrices only, and zeroing the eigenvalues that are rounding
noise (below D * eps * the largest one, negative ones included), keeps the result finite and
accurate when a covariance is singular, e.g. with fewer rows than dimensions (N <= D). Rounding
can leave d^2 a hair below zero for identical sets; it is clipped at 0.

`fad` embeds every clip with an `Embedder` (see `m2l.evaluate.embeddings`), pools the frame
embeddings of each side and returns the distance between the two pools. Its value depends on the
embedder: numbers are comparable only between runs that used the same one.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

from m2l.audio.io import resample
from m2l.errors import M2LError
from m2l.evaluate.embeddings import Embedder
from m2l.evaluate.vggish import check_waveform


def _check_embeddings(emb: torch.Tensor, what: str) -> torch.Tensor:
    """Validate an embedding set and return it as float64 [N, D] on the CPU."""
    if not isinstance(emb, torch.Tensor):
        raise M2LError(f"{what}: expected a tensor [N, D], got {type(emb).__name__}")
    if emb.dim() != 2:
        raise M2LError(f"{what}: expected embeddings [N, D], got shape {list(emb.shape)}")
    if emb.is_complex() or emb.dtype == torch.bool:
        raise M2LError(f"{what}: expected real-valued embeddings, got dtype {emb.dtype}")
    if emb.shape[0] < 2:
        raise M2LError(f"{what}: need at least 2 embedding rows to fit a covariance, got {emb.shape[0]}")
    if emb.shape[1] < 1:
        raise M2LError(f"{what}: embeddings have no dimensions (shape {list(emb.shape)})")
    x = emb.detach().to("cpu", torch.float64)
    if not torch.isfinite(x).all():
        raise M2LError(f"{what}: embeddings contain NaN or Inf")
    return x


def gaussian_stats(emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of a set of embeddings.

    Args:
        emb: [N, D] embeddings (N >= 2), one row per frame.

    Returns:
        (mu [D], cov [D, D]), float64 on the CPU; cov = (x - mu)^T (x - mu) / (N - 1).

    Raises:
        M2LError: When `emb` is not 2-D, has fewer than 2 rows, or holds NaN/Inf.
    """
    x = _check_embeddings(emb, "gaussian_stats")
    mu = x.mean(dim=0)
    centred = x - mu
    cov = centred.T @ centred / (x.shape[0] - 1)
    return mu, cov


def _psd_eigvals(vals: torch.Tensor) -> torch.Tensor:
    """Zero the eigenvalues [D] of a PSD matrix that are rounding noise.

    Eigenvalues below D * eps * max|eigenvalue| cannot be told from zero in float64 (and may be
    slightly negative); their square roots would add noise of order sqrt(eps), so they are zeroed.
    """
    tol = vals.shape[0] * torch.finfo(vals.dtype).eps * vals.abs().max()
    return torch.where(vals > tol, vals, torch.zeros_like(vals))


def _sqrt_psd(mat: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix [D, D] (noise eigenvalues zeroed)."""
    vals, vecs = torch.linalg.eigh(mat)
    return (vecs * _psd_eigvals(vals).sqrt()) @ vecs.T


def _check_stats(mu: torch.Tensor, cov: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate (mu [D], cov [D, D]) and return them as float64 CPU tensors, cov symmetrised."""
    if not isinstance(mu, torch.Tensor) or not isinstance(cov, torch.Tensor):
        raise M2LError(f"{what}: mean and covariance must be tensors")
    if mu.dim() != 1 or mu.shape[0] < 1 or cov.shape != (mu.shape[0], mu.shape[0]):
        raise M2LError(
            f"{what}: expected mean [D] and covariance [D, D], got shapes {list(mu.shape)} "
            f"and {list(cov.shape)}"
        )
    if mu.is_complex() or cov.is_complex():
        raise M2LError(f"{what}: expected real statistics, got a complex tensor")
    mu = mu.detach().to("cpu", torch.float64)
    cov = cov.detach().to("cpu", torch.float64)
    if not (torch.isfinite(mu).all() and torch.isfinite(cov).all()):
        raise M2LError(f"{what}: statistics contain NaN or Inf")
    return mu, (cov + cov.T) / 2


def frechet_from_stats(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Squared Fréchet distance between N(mu1, cov1) and N(mu2, cov2).

    Args:
        mu1: [D] mean of the first Gaussian.
        cov1: [D, D] covariance of the first Gaussian (symmetric PSD; symmetrised here).
        mu2: [D] mean of the second Gaussian.
        cov2: [D, D] covariance of the second Gaussian.

    Returns:
        |mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^(1/2)) as a float >= 0.

    Raises:
        M2LError: On shapes that are not [D] / [D, D], different D, or NaN/Inf.
    """
    mu1, cov1 = _check_stats(mu1, cov1, "frechet_from_stats (first)")
    mu2, cov2 = _check_stats(mu2, cov2, "frechet_from_stats (second)")
    if mu1.shape != mu2.shape:
        raise M2LError(f"frechet_from_stats: dimensions differ ({mu1.shape[0]} vs {mu2.shape[0]})")
    root1 = _sqrt_psd(cov1)
    inner = root1 @ cov2 @ root1
    eig = torch.linalg.eigvalsh((inner + inner.T) / 2)
    trace_sqrt = _psd_eigvals(eig).sqrt().sum()
    diff = mu1 - mu2
    dist = diff @ diff + torch.trace(cov1) + torch.trace(cov2) - 2.0 * trace_sqrt
    return max(float(dist), 0.0)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Squared Fréchet distance between Gaussians fitted to two embedding sets.

    Args:
        a: [N, D] embeddings (N >= 2).
        b: [M, D] embeddings (M >= 2), same D.

    Returns:
        The distance as a float >= 0 (0 for identical sets, up to rounding); symmetric in a, b.

    Raises:
        M2LError: When a set is not 2-D, has fewer than 2 rows or holds NaN/Inf, or the dims differ.
    """
    x = _check_embeddings(a, "frechet_distance (first set)")
    y = _check_embeddings(b, "frechet_distance (second set)")
    if x.shape[1] != y.shape[1]:
        raise M2LError(f"frechet_distance: embedding dims differ ({x.shape[1]} vs {y.shape[1]})")
    return frechet_from_stats(*gaussian_stats(x), *gaussian_stats(y))


def _embed_clips(
    clips: Sequence[torch.Tensor], sample_rate: int, embedder: Embedder, what: str
) -> torch.Tensor:
    """Embed each clip (mono, resampled to the embedder's rate) and stack the frames [frames, D]."""
    if isinstance(clips, torch.Tensor) or not isinstance(clips, Sequence) or len(clips) == 0:
        raise M2LError(f"fad: {what} must be a non-empty list of waveforms [samples] or [channels, samples]")
    frames = []
    for i, clip in enumerate(clips):
        name = f"fad: {what} clip {i}"
        wave = check_waveform(clip, name, channels=True)
        if wave.dim() == 2:
            wave = wave.mean(dim=0)
        wave = resample(wave, sample_rate, embedder.sample_rate)
        with torch.no_grad():
            emb = embedder(wave)
        if not isinstance(emb, torch.Tensor) or emb.dim() != 2:
            raise M2LError(f"{name}: embedder {embedder.name!r} did not return [frames, dim]")
        frames.append(emb.detach().to("cpu", torch.float64))
    dims = {f.shape[1] for f in frames}
    if len(dims) != 1:
        raise M2LError(f"fad: embedder {embedder.name!r} returned different dims {sorted(dims)}")
    return torch.cat(frames, dim=0)


def fad(
    reference: list[torch.Tensor], estimate: list[torch.Tensor], sample_rate: int, embedder: Embedder
) -> float:
    """Fréchet Audio Distance between two collections of clips.

    Every clip is averaged to mono, resampled to `embedder.sample_rate` and embedded into
    [frames, dim]; the frames of all reference clips form one set, those of all estimate clips
    the other, and the result is `frechet_distance` between the two sets. The two lists need not
    have the same length. Values from different embedders are not comparable, and with the
    offline default ("mel-stats") they are not comparable with published (VGGish) FAD numbers.

    Args:
        reference: clips, each [samples] or [channels, samples], at `sample_rate`.
        estimate: clips, each [samples] or [channels, samples], at `sample_rate`.
        sample_rate: sample rate of every clip in Hz.
        embedder: an `Embedder`, e.g. `load_embedder("mel-stats")`.

    Returns:
        The distance (a float >= 0).

    Raises:
        M2LError: On an empty list, a clip that is not a finite real waveform, a bad sample rate,
            or when a side yields fewer than 2 embedding frames in total (use more or longer clips).
    """
    ok = isinstance(sample_rate, numbers.Integral) and not isinstance(sample_rate, bool)
    if not ok or int(sample_rate) <= 0:
        raise M2LError(f"fad: sample rate must be a positive integer, got {sample_rate!r}")
    ref = _embed_clips(reference, int(sample_rate), embedder, "reference")
    est = _embed_clips(estimate, int(sample_rate), embedder, "estimate")
    for what, emb in (("reference", ref), ("estimate", est)):
        if emb.shape[0] < 2:
            raise M2LError(
                f"fad: the {what} clips gave {emb.shape[0]} embedding frame(s) with "
                f"{embedder.name!r}; need at least 2 (use more or longer clips)"
            )
    if ref.shape[1] != est.shape[1]:
        raise M2LError(f"fad: embedding dims differ between sides ({ref.shape[1]} vs {est.shape[1]})")
    return frechet_distance(ref, est)
