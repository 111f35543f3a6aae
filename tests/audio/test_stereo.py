"""Mid/side coding of a stereo pair (`m2l.audio.stereo`)."""

import pytest
import torch

from m2l.audio.stereo import checked_stereo_mode, from_mid_side, to_mid_side
from m2l.errors import M2LError


def test_mid_side_is_exactly_invertible_and_puts_what_the_channels_share_in_mid():
    wave = torch.randn(3, 2, 1000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(from_mid_side(to_mid_side(wave)), wave)
    dual_mono = wave[:, :1].expand(3, 2, 1000)
    ms = to_mid_side(dual_mono)
    torch.testing.assert_close(ms[:, 0], wave[:, 0])
    assert ms[:, 1].abs().max() == 0  # no side at all


def test_a_mode_must_be_one_of_the_named_ones():
    assert checked_stereo_mode("ms") == "ms" and checked_stereo_mode("lr") == "lr"
    with pytest.raises(M2LError, match=r"^stereo must be one of ms, lr, got 'xy'$"):
        checked_stereo_mode("xy")
