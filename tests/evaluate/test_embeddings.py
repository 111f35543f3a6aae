"""Tests for m2l.evaluate.embeddings: the mel-stats default, the registry and the CLAP guard."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from m2l_testing import assert_one_line_error, sine_tensor

from m2l.errors import M2LError
from m2l.evaluate.embeddings import (
    Embedder,
    MelStatsEmbedder,
    available_embedders,
    load_embedder,
    register_embedder,
)
from m2l.evaluate.metrics import hz_to_mel, mel_to_hz

RATE = 16000
N_MELS = 64


def noise(samples: int, seed: int, scale: float = 0.1) -> torch.Tensor:
    """White noise [samples]."""
    return scale * torch.randn(samples, generator=torch.Generator().manual_seed(seed))


def test_default_is_mel_stats_and_fits_the_protocol() -> None:
    emb = load_embedder()
    assert isinstance(emb, MelStatsEmbedder) and isinstance(emb, Embedder)
    assert emb.name == "mel-stats" and emb.sample_rate == RATE
    assert {"mel-stats", "vggish", "clap"} <= set(available_embedders())


@pytest.mark.parametrize(
    ("samples", "windows"),
    [(RATE, 1), (4800, 1), (2 * RATE, 3), (35200, 4), (RATE + 8000, 2), (RATE + 1, 2)],
)
def test_mel_stats_shapes(samples: int, windows: int) -> None:
    out = load_embedder("mel-stats")(noise(samples, seed=0))
    assert out.shape == (windows, 3 * N_MELS)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_windows_cover_the_end_of_the_clip() -> None:
    x = torch.arange(35200, dtype=torch.float64)
    wins = MelStatsEmbedder().windows(x)
    assert [int(w[0]) for w in wins] == [0, 8000, 16000, 19200]
    torch.testing.assert_close(wins[-1], x[-RATE:])
    short = MelStatsEmbedder().windows(torch.ones(100))
    assert short.shape == (1, RATE) and short[0, :100].eq(1).all() and short[0, 100:].eq(0).all()


def test_mel_stats_is_deterministic() -> None:
    x = noise(40000, seed=1)
    a = load_embedder("mel-stats")(x)
    b = load_embedder("mel-stats")(x.clone())
    assert torch.equal(a, b)


def test_silence_gives_the_log_floor() -> None:
    out = load_embedder("mel-stats")(torch.zeros(RATE))
    torch.testing.assert_close(out[0, :N_MELS], torch.full((N_MELS,), math.log(1e-5)))
    assert out[0, N_MELS:].abs().max() == 0


def test_louder_shifts_the_means_by_log_gain() -> None:
    # Noise at 0.1 sits far above the 1e-5 floor in every band, so doubling it adds ln 2 to each
    # band's mean log-mel and leaves the spread (std, delta) as it was.
    emb = load_embedder("mel-stats")
    x = noise(2 * RATE, seed=2)
    quiet, loud = emb(x), emb(2 * x)
    torch.testing.assert_close(
        loud[:, :N_MELS] - quiet[:, :N_MELS], torch.full((3, N_MELS), math.log(2.0)), atol=1e-3, rtol=0
    )
    torch.testing.assert_close(loud[:, N_MELS:], quiet[:, N_MELS:], atol=1e-3, rtol=0)


@pytest.mark.parametrize("band", [40, 50])
def test_a_tone_peaks_in_its_band(band: int) -> None:
    # Slaney edges are evenly spaced in mels from 0 to 8 kHz; band m peaks at edge m + 1.
    edges = torch.linspace(
        0.0, float(hz_to_mel(torch.tensor(8000.0, dtype=torch.float64))), N_MELS + 2, dtype=torch.float64
    )
    centre = float(mel_to_hz(edges[band + 1]))
    out = load_embedder("mel-stats")(sine_tensor(centre, samples=RATE, rate=RATE))
    assert int(out[0, :N_MELS].argmax()) == band


def test_different_signals_differ() -> None:
    emb = load_embedder("mel-stats")
    a, b, c = (
        emb(sine_tensor(440.0, samples=RATE, rate=RATE)),
        emb(sine_tensor(3000.0, samples=RATE, rate=RATE)),
        emb(noise(RATE, seed=3)),
    )
    assert (a - b).abs().max() > 1.0 and (a - c).abs().max() > 1.0


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (torch.zeros(2, 100), r"mono waveform \[samples\]"),
        (torch.zeros(0), r"mono waveform \[samples\]"),
        (torch.tensor([0.0, float("nan")]), "NaN"),
        ([0.0, 1.0], "got list"),
    ],
)
def test_mel_stats_bad_input(audio, message: str) -> None:
    with pytest.raises(M2LError, match=message):
        load_embedder("mel-stats")(audio)


def test_registry_errors_and_extension() -> None:
    with pytest.raises(M2LError, match="unknown embedding model 'nope'; choose one of"):
        load_embedder("nope")
    with pytest.raises(M2LError, match="take no weights"):
        load_embedder("mel-stats", weights="x.pt")
    with pytest.raises(M2LError, match="vggish embeddings need local weights"):
        load_embedder("vggish")

    class Constant:
        name = "constant-test"
        sample_rate = 8000

        def __call__(self, audio: torch.Tensor) -> torch.Tensor:
            return torch.zeros(1, 3)

    register_embedder("constant-test", lambda weights: Constant())
    try:
        got = load_embedder("constant-test")
        assert isinstance(got, Constant) and "constant-test" in available_embedders()
    finally:
        from m2l.evaluate import embeddings

        embeddings._REGISTRY.pop("constant-test")


def test_clap_without_package_or_checkpoint(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "laion_clap", None)  # make `import laion_clap` fail
    with pytest.raises(M2LError) as err:
        load_embedder("clap")
    assert_one_line_error(err, "pip install laion-clap", "weights=PATH")
    with pytest.raises(M2LError, match="does not exist"):
        load_embedder("clap", weights=str(tmp_path / "missing.pt"))
