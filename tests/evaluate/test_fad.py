"""Tests for m2l.evaluate.fad: Fréchet distance against closed forms, and FAD's pooling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from m2l_testing import assert_one_line_error, sine_tensor

from m2l.errors import M2LError
from m2l.evaluate.embeddings import load_embedder
from m2l.evaluate.fad import fad, frechet_distance, frechet_from_stats, gaussian_stats


def white(n: int, d: int, seed: int) -> torch.Tensor:
    """[n, d] float64 rows whose sample mean is exactly 0 and sample covariance exactly I (n > d)."""
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x - x.mean(dim=0)
    chol = torch.linalg.cholesky(x.T @ x / (n - 1))
    return torch.linalg.solve_triangular(chol, x.T, upper=False).T


def with_stats(mu: torch.Tensor, var: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """[n, D] rows with sample mean `mu` and diagonal sample covariance diag(`var`)."""
    return mu + white(n, mu.shape[0], seed) * var.sqrt()


def diagonal_closed_form(mu1, var1, mu2, var2) -> float:
    """sum (mu1 - mu2)^2 + sum (s1 + s2 - 2 sqrt(s1 s2)) for diagonal covariances."""
    return float(((mu1 - mu2) ** 2).sum() + (var1 + var2 - 2 * (var1 * var2).sqrt()).sum())


def random_rotation(d: int, seed: int) -> torch.Tensor:
    """A [d, d] orthogonal matrix."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q


DIM = 6
MU1 = torch.tensor([0.0, 1.0, -2.0, 0.5, 3.0, 0.0], dtype=torch.float64)
MU2 = torch.tensor([1.0, 1.0, 0.0, -0.5, 2.5, 0.25], dtype=torch.float64)
VAR1 = torch.tensor([1.0, 4.0, 0.25, 2.0, 9.0, 0.5], dtype=torch.float64)
VAR2 = torch.tensor([2.0, 1.0, 0.25, 8.0, 1.0, 3.0], dtype=torch.float64)


def test_identical_sets_give_zero() -> None:
    a = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, a.clone()) >= 0.0


def test_gaussian_stats_are_sample_mean_and_unbiased_covariance() -> None:
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mu, cov = gaussian_stats(x)
    assert mu.dtype == torch.float64 and cov.shape == (4, 4)
    torch.testing.assert_close(mu, x.mean(dim=0))
    torch.testing.assert_close(cov, torch.cov(x.T, correction=1))


def test_diagonal_closed_form_from_stats() -> None:
    got = frechet_from_stats(MU1, torch.diag(VAR1), MU2, torch.diag(VAR2))
    assert got == pytest.approx(diagonal_closed_form(MU1, VAR1, MU2, VAR2), rel=1e-12)


def test_diagonal_closed_form_from_embeddings() -> None:
    a = with_stats(MU1, VAR1, 400, seed=2)
    b = with_stats(MU2, VAR2, 250, seed=3)
    expected = diagonal_closed_form(MU1, VAR1, MU2, VAR2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    # float32 input goes through float64 compute as well
    assert frechet_distance(a.float(), b.float()) == pytest.approx(expected, rel=1e-4)


def test_common_rotation_leaves_the_distance_unchanged() -> None:
    # Rotated, the covariances are full (non-diagonal) matrices; the closed form still holds.
    q = random_rotation(DIM, seed=4)
    a = with_stats(MU1, VAR1, 400, seed=5) @ q.T
    b = with_stats(MU2, VAR2, 300, seed=6) @ q.T
    assert frechet_distance(a, b) == pytest.approx(diagonal_closed_form(MU1, VAR1, MU2, VAR2), rel=1e-9)


@pytest.mark.parametrize("c", [0.5, -2.0, 3.0])
def test_mean_shift_gives_d_c_squared(c: float) -> None:
    a = torch.randn(200, 10, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert frechet_distance(a, a + c) == pytest.approx(10 * c * c, rel=1e-9)


def test_symmetric() -> None:
    g = torch.Generator().manual_seed(8)
    a = torch.randn(120, 8, generator=g) @ torch.randn(8, 8, generator=g)
    b = torch.randn(90, 8, generator=g) @ torch.randn(8, 8, generator=g) + 0.3
    ab, ba = frechet_distance(a, b), frechet_distance(b, a)
    assert ab > 0.1
    assert ab == pytest.approx(ba, rel=1e-9)


def test_fewer_rows_than_dims_stays_finite() -> None:
    g = torch.Generator().manual_seed(9)
    a = torch.randn(5, 32, generator=g, dtype=torch.float64)
    b = torch.randn(7, 32, generator=g, dtype=torch.float64)
    d = frechet_distance(a, b)
    assert math.isfinite(d) and d > 0
    # Equal singular covariances: only the mean shift remains.
    assert frechet_distance(a, a + 0.5) == pytest.approx(32 * 0.25, rel=1e-9)


def test_rank_one_covariances_closed_form() -> None:
    # Both sets vary along axis 0 only (rank-1 covariances, 3 rows in 4 dims).
    col = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)  # sample variance 1
    a = torch.zeros(3, 4, dtype=torch.float64)
    b = torch.zeros(3, 4, dtype=torch.float64)
    a[:, 0] = 2.0 * col  # variance 4
    b[:, 0] = 3.0 * col + 1.0  # variance 9, mean 1
    b[:, 2] = 2.0  # mean shift 2 in dim 2
    expected = 1.0 + 4.0 + (4.0 + 9.0 - 2 * 6.0)  # (sqrt 4 - sqrt 9)^2 = 1
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (torch.zeros(1, 3), torch.zeros(5, 3), "at least 2"),
        (torch.zeros(5), torch.zeros(5, 3), "[N, D]"),
        (torch.zeros(5, 3), torch.zeros(5, 4), "dims differ"),
        (torch.full((5, 3), float("nan")), torch.zeros(5, 3), "NaN"),
        (torch.zeros(5, 3), torch.tensor([[0.0, 1.0, float("inf")]] * 4), "NaN or Inf"),
        ([[0.0, 1.0]] * 3, torch.zeros(3, 2), "tensor"),
    ],
)
def test_bad_embeddings_raise(a, b, message: str) -> None:
    with pytest.raises(M2LError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        frechet_distance(a, b)
    assert_one_line_error(err)


def test_bad_stats_raise() -> None:
    with pytest.raises(M2LError, match="covariance"):
        frechet_from_stats(MU1, torch.eye(5), MU2, torch.eye(6))
    with pytest.raises(M2LError, match="dimensions differ"):
        frechet_from_stats(MU1, torch.eye(6), MU2[:5], torch.eye(5))
    with pytest.raises(M2LError, match="NaN"):
        frechet_from_stats(MU1, torch.full((6, 6), float("nan")), MU2, torch.eye(6))


class FramesOfFour:
    """Test embedder at 8 kHz: records its inputs and returns them as rows of 4 samples."""

    name = "frames-of-four"
    sample_rate = 8000

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        self.seen.append(audio)
        usable = audio.shape[0] // 4 * 4
        return audio[:usable].reshape(-1, 4)


def test_fad_pools_the_frames_of_every_clip() -> None:
    g = torch.Generator().manual_seed(10)
    ref = [torch.randn(400, generator=g), torch.randn(200, generator=g)]
    est = [torch.randn(320, generator=g) * 2 + 1]
    emb = FramesOfFour()
    got = fad(ref, est, 8000, emb)
    expected = frechet_distance(torch.cat([r.reshape(-1, 4) for r in ref]), est[0].reshape(-1, 4))
    assert got == pytest.approx(expected, rel=1e-9)
    assert [s.shape[0] for s in emb.seen] == [400, 200, 320]


def test_fad_resamples_and_downmixes() -> None:
    x = sine_tensor(200, samples=16000, rate=16000, amplitude=1.0, dtype=np.float32)
    emb = FramesOfFour()
    fad([torch.stack([x, -x]), x], [x, 0.5 * x], 16000, emb)
    assert all(s.dim() == 1 for s in emb.seen)
    assert [s.shape[0] for s in emb.seen] == [8000] * 4  # 1 s at 8 kHz
    assert emb.seen[0].abs().max() < 1e-6  # [x, -x] averages to silence
    assert emb.seen[1].abs().max() > 0.9


def test_fad_with_mel_stats() -> None:
    g = torch.Generator().manual_seed(11)
    tones = [sine_tensor(f, 2.0, rate=16000, amplitude=0.3, dtype=np.float32) for f in (220.0, 440.0, 880.0)]
    noise = [0.3 * torch.randn(32000, generator=g) for _ in range(3)]
    emb = load_embedder("mel-stats")
    assert fad(tones, tones, 16000, emb) == pytest.approx(0.0, abs=1e-6)
    assert fad(tones, noise, 16000, emb) > 1.0


def test_fad_errors() -> None:
    emb = load_embedder("mel-stats")
    clip = torch.zeros(32000)
    with pytest.raises(M2LError, match="non-empty list"):
        fad([], [clip], 16000, emb)
    with pytest.raises(M2LError, match="sample rate"):
        fad([clip], [clip], 0, emb)
    with pytest.raises(M2LError, match="need at least 2"):
        fad([torch.zeros(8000)], [clip], 16000, emb)  # one window only
    with pytest.raises(M2LError, match="estimate clip 0"):
        fad([clip], [torch.zeros(2, 2, 100)], 16000, emb)
    with pytest.raises(M2LError, match="reference clip 1 must be a waveform"):
        fad([clip, torch.zeros(0, 32000)], [clip], 16000, emb)  # no channels
    with pytest.raises(M2LError, match="NaN"):
        fad([clip], [torch.full((100,), float("nan"))], 16000, emb)
