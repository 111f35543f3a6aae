"""Parity with the authors' `music2latent` package, used as a black-box oracle.

Skipped when the package is not installed (`pip install -e '.[oracle]'`). Their network gets
random non-zero weights, is saved in their checkpoint format and loaded through `m2l.load`.
"""

import math

import numpy as np
import pytest
import torch

torch_load = torch.load
music2latent = pytest.importorskip("music2latent.inference")

import m2l  # noqa: E402
from m2l.codec_v1 import tile_noise  # noqa: E402


def _rel(a, b) -> float:
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from music2latent.models import UNet

    torch.manual_seed(0)
    net = UNet()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 1 / math.sqrt(p[0].numel()))
            elif "norm" in name and name.endswith("weight"):
                p.uniform_(0.8, 1.2)
            else:
                p.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("ck") / "music2latent.pt"
    torch.save({"gen_state_dict": net.state_dict()}, path)
    music2latent.download_model = lambda: None  # never touch the network
    theirs = music2latent.EncoderDecoder(str(path), device="cpu")
    ours = m2l.load(path, device="cpu", stereo="lr")  # the authors code a pair as left/right
    return theirs, ours


@pytest.mark.parametrize("channels", [1, 2])
def test_latents_match(pair, channels):
    theirs, ours = pair
    n = 4096 * 32 + 1536  # 3 s, a whole number of latent frames in their framing
    x = (np.random.RandomState(channels).randn(channels, n) * 0.1).astype(np.float32)
    ref = theirs.encode(x if channels == 2 else x[0])
    z = ours.encode(x, left_pad=0)
    assert z.shape == tuple(ref.shape)
    assert _rel(z, ref) < 1e-4
    ref_f = theirs.encode(x if channels == 2 else x[0], extract_features=True)
    assert _rel(ours.encode(x, left_pad=0, features=True), ref_f) < 1e-4


def test_decode_matches_for_the_same_initial_noise(pair, monkeypatch):
    theirs, ours = pair
    n = 4096 * 16 + 1536
    x = (np.random.RandomState(5).randn(2, n) * 0.1).astype(np.float32)
    z = ours.encode(x, left_pad=0)
    seed = 1234
    y = ours.decode(z, seed=seed, left_pad=0)
    frames = z.shape[-1] * 8
    noise = torch.stack([tile_noise(seed, r, 0, frames, 0, (2, 1024)) for r in range(2)])
    real_randn = torch.randn
    rows = list(noise)  # they decode one channel at a time: hand out our rows in order

    def same_noise(*shape, **kwargs):
        size = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        if tuple(size) == (1, *noise.shape[1:]) and rows:
            return rows.pop(0)[None].clone()
        return real_randn(*shape, **kwargs)

    monkeypatch.setattr(torch, "randn", same_noise)
    ref = theirs.decode(z.numpy())
    monkeypatch.undo()
    assert not rows, "the oracle did not draw its initial noise as expected"
    assert y.shape == tuple(ref.shape)
    assert _rel(y, ref) < 1e-4
