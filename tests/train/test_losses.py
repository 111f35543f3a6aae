import numpy as np
import torch
from m2l_testing import sine_tensor

from m2l.train.losses import multires_spectral_loss


def _tone(freq: float) -> torch.Tensor:
    """A 0.3-amplitude float32 sine [8192] at 44.1 kHz."""
    return sine_tensor(freq, samples=8192, amplitude=0.3, dtype=np.float32)


def test_zero_for_the_same_magnitudes_whatever_the_phase():
    x = torch.stack([_tone(440.0), _tone(1000.0)])
    assert multires_spectral_loss(x, x).abs().max() < 1e-6
    assert multires_spectral_loss(-x, x).abs().max() < 1e-6  # sign flip: same magnitudes


def test_grows_with_spectral_difference_and_is_per_item():
    ref = torch.stack([_tone(440.0), _tone(440.0)])
    est = torch.stack([_tone(440.0) * 0.9, _tone(3000.0)])
    out = multires_spectral_loss(est, ref)
    assert out.shape == (2,)
    assert 0 < out[0] < out[1]


def test_gradients_reach_the_estimate_and_descend():
    gen = torch.Generator().manual_seed(0)
    ref = (_tone(660.0) + 0.05 * torch.randn(8192, generator=gen))[None]
    est = (0.01 * torch.randn(1, 8192, generator=gen)).requires_grad_()
    opt = torch.optim.Adam([est], lr=1e-2)
    first = float(multires_spectral_loss(est, ref).detach())
    for _ in range(80):
        opt.zero_grad()
        multires_spectral_loss(est, ref).sum().backward()
        opt.step()
    assert float(multires_spectral_loss(est, ref).detach()) < 0.5 * first


def test_complex_loss_sees_phase_that_the_magnitude_loss_ignores():
    from m2l.train.losses import multires_complex_loss, multires_spectral_loss

    ref = _tone(440.0)[None]
    flipped = -ref  # the same magnitudes, every phase turned by pi
    assert float(multires_spectral_loss(flipped, ref)[0]) < 1e-6
    assert float(multires_complex_loss(flipped, ref)[0]) > 2.0
    assert float(multires_complex_loss(ref, ref)[0]) == 0.0
    half = multires_complex_loss(0.5 * ref, ref)  # relative: the level of the reference cancels
    torch.testing.assert_close(half, multires_complex_loss(0.05 * ref, 0.1 * ref))


def test_level_loss_is_ten_per_decade_of_energy_and_sees_quieter_decodes():
    from m2l.train.losses import band_level_loss

    ref = torch.stack([_tone(440.0), _tone(3000.0)]) + 0.01 * torch.randn(2, 8192)
    assert band_level_loss(ref, ref).abs().max() < 1e-6
    quieter = band_level_loss(ref / 10**0.5, ref)  # 10 dB down: one decade of energy everywhere
    torch.testing.assert_close(quieter, torch.ones(2), rtol=1e-3, atol=1e-3)
    assert (band_level_loss(-ref, ref) < 1e-6).all()  # phase-blind
    grad_in = (0.5 * ref).requires_grad_()
    band_level_loss(grad_in, ref).sum().backward()
    assert float((grad_in.grad * ref).sum()) < 0  # louder is the way down


def test_coherence_loss_scores_phase_and_not_level():
    from m2l.train.losses import multires_coherence_loss

    gen = torch.Generator().manual_seed(0)
    ref = torch.stack([_tone(440.0), _tone(3000.0)]) + 0.01 * torch.randn(2, 8192, generator=gen)
    assert multires_coherence_loss(ref, ref).abs().max() < 1e-5
    torch.testing.assert_close(multires_coherence_loss(-ref, ref), torch.full((2,), 2.0))  # opposite
    for gain in (0.1, 3.0):  # playing back quieter or louder changes nothing
        assert multires_coherence_loss(gain * ref, ref).abs().max() < 1e-5
    unrelated = multires_coherence_loss(0.3 * torch.randn(2, 8192, generator=gen), ref)
    assert ((unrelated > 0.8) & (unrelated < 1.2)).all(), unrelated
    shifted = multires_coherence_loss(torch.roll(ref, 3, -1), ref)  # a 3-sample delay: high bins turn
    assert ((shifted > 0.0) & (shifted < unrelated)).all(), shifted


def test_coherence_loss_pulls_phase_without_shrinking_the_estimate():
    from m2l.train.losses import multires_coherence_loss

    gen = torch.Generator().manual_seed(1)
    ref = (_tone(660.0) + 0.05 * torch.randn(8192, generator=gen))[None]
    est = (0.3 * torch.randn(1, 8192, generator=gen)).requires_grad_()
    opt = torch.optim.Adam([est], lr=1e-2)
    first, level = float(multires_coherence_loss(est, ref).detach()), float(est.detach().norm())
    for _ in range(80):
        opt.zero_grad()
        multires_coherence_loss(est, ref).sum().backward()
        opt.step()
    assert float(multires_coherence_loss(est, ref).detach()) < 0.5 * first
    assert float(est.detach().norm()) > 0.5 * level  # no pull toward silence
