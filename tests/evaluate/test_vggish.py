"""Tests for m2l.evaluate.vggish: the log-mel front end, the network's shapes, and weight loading.

No real VGGish weights are used (none are downloaded): the network is randomly initialised and
saved to a temporary state-dict file.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from m2l_testing import assert_one_line_error, sine_tensor
from safetensors.torch import save_file

from m2l.errors import M2LError
from m2l.evaluate.embeddings import load_embedder
from m2l.evaluate.vggish import VGGish, VGGishEmbedder, vggish_log_mel, vggish_mel_filters

RATE = 16000


def htk_mel(hz: float) -> float:
    """HTK mel scale, 1127 ln(1 + f / 700)."""
    return 1127.0 * math.log(1.0 + hz / 700.0)


def band_centres_mel() -> torch.Tensor:
    """Centres (in HTK mels) of the 64 bands spanning 125 .. 7500 Hz."""
    return torch.linspace(htk_mel(125.0), htk_mel(7500.0), 66, dtype=torch.float64)[1:-1]


@pytest.fixture(scope="module")
def random_vggish(tmp_path_factory: pytest.TempPathFactory) -> tuple[VGGish, Path]:
    """A seeded, randomly initialised VGGish and the .pt file its state dict was saved to."""
    torch.manual_seed(0)
    model = VGGish().eval()
    path = tmp_path_factory.mktemp("vggish") / "vggish-random.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_mel_filters_follow_the_htk_layout() -> None:
    bank = vggish_mel_filters()
    assert bank.shape == (64, 257)
    freqs = torch.arange(257, dtype=torch.float64) * RATE / 512
    outside = (freqs < 125.0) | (freqs > 7500.0)
    assert bank[:, outside].abs().max() == 0  # nothing below 125 Hz or above 7.5 kHz, DC included
    assert bank.max() <= 1.0 and bank.min() >= 0.0
    bin_mels = torch.tensor([htk_mel(float(f)) for f in freqs], dtype=torch.float64)
    nearest = (bin_mels[None, :] - band_centres_mel()[:, None]).abs().argmin(dim=1)
    assert torch.equal(bank.argmax(dim=1), nearest)  # triangles are symmetric in mels


@pytest.mark.parametrize(("samples", "examples"), [(RATE, 1), (8000, 1), (40000, 2), (15600 + 96 * 160, 2)])
def test_log_mel_example_count(samples: int, examples: int) -> None:
    # frames = 1 + (max(samples, 15600) - 400) // 160; examples = frames // 96
    out = vggish_log_mel(torch.zeros(samples))
    assert out.shape == (examples, 96, 64) and out.dtype == torch.float32


def test_log_mel_of_silence_is_log_offset() -> None:
    out = vggish_log_mel(torch.zeros(RATE))
    torch.testing.assert_close(out, torch.full_like(out, math.log(0.01)))


@pytest.mark.parametrize("band", [20, 45])
def test_log_mel_tone_peaks_in_its_band(band: int) -> None:
    mel = float(band_centres_mel()[band])
    freq = 700.0 * (math.exp(mel / 1127.0) - 1.0)
    out = vggish_log_mel(sine_tensor(freq, samples=RATE, rate=RATE))
    assert int(out.mean(dim=(0, 1)).argmax()) == band


def test_random_vggish_shapes_and_loading(random_vggish: tuple[VGGish, Path]) -> None:
    model, path = random_vggish
    x = 0.1 * torch.randn(RATE, generator=torch.Generator().manual_seed(1))
    emb = load_embedder("vggish", weights=str(path))
    assert isinstance(emb, VGGishEmbedder) and emb.name == "vggish" and emb.sample_rate == RATE
    out = emb(x)
    assert out.shape == (1, 128) and out.dtype == torch.float32 and torch.isfinite(out).all()
    with torch.no_grad():
        expected = model(vggish_log_mel(x))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)  # the file's weights were loaded
    assert emb(0.1 * torch.randn(3 * RATE)).shape == (3, 128)


def test_network_shapes(random_vggish: tuple[VGGish, Path]) -> None:
    with torch.no_grad():
        out = random_vggish[0](torch.zeros(5, 96, 64))
    assert out.shape == (5, 128)
    with torch.device("meta"):
        model = VGGish()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["conv1.weight"] == (64, 1, 3, 3)
    assert shapes["conv4_2.weight"] == (512, 512, 3, 3)
    assert shapes["fc1_1.weight"] == (4096, 512 * 6 * 4)
    assert shapes["fc2.weight"] == (128, 4096)
    assert len(shapes) == 18  # 6 convolutions and 3 linear layers, weight and bias each


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(M2LError, match="no such file"):
        load_embedder("vggish", weights=str(tmp_path / "absent.pt"))


def test_wrong_keys(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"features.0.weight": torch.zeros(64, 1, 3, 3)}, str(path))
    with pytest.raises(M2LError, match="keys do not fit") as err:
        load_embedder("vggish", weights=str(path))
    assert_one_line_error(err, "missing conv1.bias", "unexpected features.0.weight")


def test_wrong_shapes(tmp_path: Path) -> None:
    with torch.device("meta"):
        names = list(VGGish().state_dict())
    path = tmp_path / "tiny.pt"
    torch.save({k: torch.zeros(2) for k in names}, path)
    with pytest.raises(M2LError, match=r"wrong shapes: conv1.weight \[2\] \(want \[64, 1, 3, 3\]\)"):
        load_embedder("vggish", weights=str(path))


def test_unreadable_or_not_a_state_dict(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(M2LError, match="cannot read them"):
        load_embedder("vggish", weights=str(garbage))
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(M2LError, match="flat state dict"):
        load_embedder("vggish", weights=str(listed))
