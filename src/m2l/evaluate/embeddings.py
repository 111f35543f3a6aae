"""Pluggable audio embedding models for the Fréchet Audio Distance.

An `Embedder` has a `name`, the `sample_rate` it wants, and maps a mono waveform [samples] at
that rate to frame embeddings [frames, dim]. `load_embedder(name, weights)` builds one from the
registry (`available_embedders()`; add your own with `register_embedder`):

- "mel-stats" (the default; no weights, fully offline, deterministic): log-mel statistics of
  1 s windows with a 0.5 s hop. FAD computed with it is NOT comparable with published FAD
  numbers (which use VGGish); use it to compare codecs or checkpoints with each other only.
- "vggish": the VGGish network of `m2l.evaluate.vggish`, with weights read from a local state
  dict that the user passes (`weights=`); nothing is downloaded.
- "clap": LAION-CLAP audio embeddings, only when the `laion_clap` package is installed and a
  local checkpoint file is passed (`weights=`).

"mel-stats" in detail: the clip (16 kHz) is cut into 1 s windows starting every 0.5 s; when the
last such window stops short of the clip's end, one more window ending exactly at the end is
added, and a clip shorter than 1 s is zero-padded to one window. Each window gets a magnitude
STFT (`metrics.stft_magnitude`, 512-point Hann, 160-sample hop), 64 Slaney mel bands
(`metrics.mel_filterbank`) and L = ln(mel + 1e-5), [64, frames]. Its embedding is the
concatenation of the per-band mean of L over frames, the per-band standard deviation (population,
dividing by the frame count) and the per-band mean absolute frame-to-frame difference of L (the
"delta"), so dim = 3 * 64 = 192.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from m2l.errors import M2LError
from m2l.evaluate.metrics import mel_filterbank, stft_magnitude
from m2l.evaluate.vggish import check_waveform, load_vggish


@runtime_checkable
class Embedder(Protocol):
    """An audio embedding model.

    Attributes:
        name: registry name, e.g. "mel-stats".
        sample_rate: the rate in Hz that `__call__` expects.
    """

    name: str
    sample_rate: int

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        """Embed a mono waveform [samples] at `sample_rate` into [frames, dim] (frames >= 1)."""
        ...


class MelStatsEmbedder:
    """The offline default embedder: log-mel statistics of 1 s windows (see the module docstring).

    Attributes:
        name: "mel-stats".
        sample_rate: 16000.
        dim: 192 (= 3 * n_mels).
    """

    name = "mel-stats"
    sample_rate = 16000
    n_fft = 512
    hop = 160
    n_mels = 64
    window = 16000  # 1 s
    window_hop = 8000  # 0.5 s
    floor = 1e-5
    dim = 3 * n_mels

    def __init__(self) -> None:
        self._bank = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, dtype=torch.float64)

    def windows(self, audio: torch.Tensor) -> torch.Tensor:
        """Cut a waveform into analysis windows.

        Args:
            audio: [samples] mono waveform at 16 kHz.

        Returns:
            [windows, 16000] float64 windows (see the module docstring for their placement).
        """
        wave = check_waveform(audio, f"{self.name}: audio")
        n = wave.shape[0]
        if n <= self.window:
            return F.pad(wave, (0, self.window - n))[None]
        starts = list(range(0, n - self.window + 1, self.window_hop))
        if starts[-1] + self.window < n:
            starts.append(n - self.window)
        return torch.stack([wave[s : s + self.window] for s in starts])

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        """Embed a waveform.

        Args:
            audio: [samples] mono waveform at 16 kHz.

        Returns:
            [windows, 192] float32: [mean (64), std (64), mean |delta| (64)] of the log-mel bands.
        """
        chunks = self.windows(audio)
        mag = stft_magnitude(chunks, self.n_fft, self.hop)  # [windows, 257, frames]
        log_mel = torch.log(self._bank @ mag + self.floor)  # [windows, 64, frames]
        mean = log_mel.mean(dim=-1)
        std = log_mel.std(dim=-1, correction=0)
        delta = log_mel.diff(dim=-1).abs().mean(dim=-1)
        return torch.cat([mean, std, delta], dim=-1).float()


class ClapEmbedder:
    """LAION-CLAP audio embeddings of 10 s windows at 48 kHz (needs the `laion_clap` package).

    The clip is cut into consecutive, non-overlapping 10 s windows (the last one may be shorter;
    CLAP repeats it to fill 10 s), and each window gives one embedding.

    Attributes:
        name: "clap".
        sample_rate: 48000.
        model: the `laion_clap.CLAP_Module`.
    """

    name = "clap"
    sample_rate = 48000
    window = 480000  # the 10 s that CLAP takes at a time

    def __init__(self, model: object) -> None:
        self.model = model

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        """Embed a waveform.

        Args:
            audio: [samples] mono waveform at 48 kHz.

        Returns:
            [ceil(samples / 480000), dim] float32 embeddings (dim 512 for the released models).
        """
        wave = check_waveform(audio, f"{self.name}: audio").to(torch.float32).numpy()
        pieces = [
            np.ascontiguousarray(wave[s : s + self.window]) for s in range(0, wave.shape[0], self.window)
        ]
        with torch.no_grad():
            emb = self.model.get_audio_embedding_from_data(x=pieces, use_tensor=False)
        return torch.as_tensor(np.asarray(emb), dtype=torch.float32).reshape(len(pieces), -1)


def load_clap(weights: str | Path | None, audio_model: str = "HTSAT-tiny") -> ClapEmbedder:
    """Build a CLAP embedder from a local LAION-CLAP checkpoint.

    Args:
        weights: path to a LAION-CLAP checkpoint (.pt) on this machine.
        audio_model: the checkpoint's audio tower, "HTSAT-tiny" (the general checkpoints) or
            "HTSAT-base" (the music checkpoints).

    Returns:
        A `ClapEmbedder`.

    Raises:
        M2LError: When `laion_clap` is not installed, no checkpoint path is given, the file is
            missing, or loading it fails.
    """
    try:
        import laion_clap
    except ImportError:
        laion_clap = None
    problems = []
    if laion_clap is None:
        problems.append("install the optional package laion_clap (pip install laion-clap; it needs numpy<2)")
    if weights is None:
        problems.append("pass a local checkpoint with weights=PATH (m2l never downloads one)")
    elif not Path(weights).expanduser().is_file():
        problems.append(f"checkpoint {Path(weights).expanduser()} does not exist")
    if problems:
        raise M2LError("clap embeddings: " + "; ".join(problems))
    try:
        model = laion_clap.CLAP_Module(enable_fusion=False, amodel=audio_model)
        model.load_ckpt(ckpt=str(Path(weights).expanduser()), verbose=False)
    except Exception as err:  # third-party failure: report it in one line
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise M2LError(f"clap embeddings: cannot load checkpoint {weights} ({reason})") from None
    return ClapEmbedder(model)


def _load_mel_stats(weights: str | Path | None) -> Embedder:
    """Factory of "mel-stats" (takes no weights)."""
    if weights is not None:
        raise M2LError("mel-stats embeddings take no weights; leave weights unset")
    return MelStatsEmbedder()


def _load_vggish(weights: str | Path | None) -> Embedder:
    """Factory of "vggish" (needs a local state dict)."""
    if weights is None:
        raise M2LError(
            "vggish embeddings need local weights: pass weights=PATH to a .safetensors or .pt "
            "state dict (m2l never downloads them)"
        )
    return load_vggish(weights)


_REGISTRY: dict[str, Callable[[str | Path | None], Embedder]] = {
    "mel-stats": _load_mel_stats,
    "vggish": _load_vggish,
    "clap": load_clap,
}


def register_embedder(name: str, factory: Callable[[str | Path | None], Embedder]) -> None:
    """Add (or replace) an embedder in the registry.

    Args:
        name: the name that `load_embedder` will accept.
        factory: called with the `weights` argument of `load_embedder`; returns an `Embedder`.
    """
    if not isinstance(name, str) or not name:
        raise M2LError(f"register_embedder: name must be a non-empty string, got {name!r}")
    _REGISTRY[name] = factory


def available_embedders() -> tuple[str, ...]:
    """Names that `load_embedder` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def load_embedder(name: str = "mel-stats", weights: str | Path | None = None) -> Embedder:
    """Build an embedding model by name.

    Args:
        name: a registry name (`available_embedders()`): "mel-stats" (offline, no weights),
            "vggish" or "clap".
        weights: local weights file for the models that need one; nothing is ever downloaded.

    Returns:
        An `Embedder`.

    Raises:
        M2LError: On an unknown name, or when the model's weights are missing or do not fit.
    """
    if name not in _REGISTRY:
        raise M2LError(f"unknown embedding model {name!r}; choose one of {', '.join(available_embedders())}")
    return _REGISTRY[name](weights)
