"""Model configurations: frozen dataclasses and named presets.

A config fully describes an architecture and its signal conventions; checkpoints carry it as JSON
so a file is self-describing. `config_hash` identifies a config in latent files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from m2l.errors import M2LError


@dataclass(frozen=True)
class SpectralConfig:
    """STFT and amplitude compression of the Music2Latent representation."""

    sample_rate: int = 44100
    hop_length: int = 512
    n_fft: int = 2048  # = 4 x hop; frames are not centred
    freq_bins: int = 1024  # rfft bins kept (Nyquist dropped)
    alpha: float = 0.65  # amplitude exponent
    beta: float = 0.34  # amplitude gain


@dataclass(frozen=True)
class ConsistencyConfig:
    """EDM-style noise parametrisation with the boundary condition at sigma_min."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    rho: float = 7.0


@dataclass(frozen=True)
class V1Config:
    """Music2Latent (v1) architecture. Defaults are the released 58.2 M-parameter model."""

    kind: str = "v1"
    name: str = "m2l-v1"
    spectral: SpectralConfig = field(default_factory=SpectralConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    base_channels: int = 64
    multipliers: tuple[int, ...] = (1, 2, 4, 4, 4)
    attention: tuple[bool, ...] = (False, False, True, True, True)
    # per level change: True = frequency-only x4, False = x2 in frequency and time
    freq_only_down: tuple[bool, ...] = (True, False, False, False)
    unet_blocks: int = 2  # conditioned ResBlocks per level and direction
    heads: int = 4
    cond_channels: int = 256  # sinusoidal noise embedding width
    bottleneck_channels: int = 512
    bottleneck_blocks: int = 4
    latent_dim: int = 64
    latent_scale: float = 0.06  # user latents = tanh(encoder) / latent_scale

    def __post_init__(self) -> None:
        levels = len(self.multipliers)
        if len(self.attention) != levels or len(self.freq_only_down) != levels - 1:
            raise M2LError(f"config {self.name}: attention needs {levels} and "
                           f"freq_only_down {levels - 1} entries")
        if self.spectral.freq_bins % self.freq_factor:
            raise M2LError(f"config {self.name}: freq_bins not divisible by {self.freq_factor}")

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of each resolution level, finest first."""
        return tuple(self.base_channels * m for m in self.multipliers)

    @property
    def freq_factor(self) -> int:
        """Total frequency downsampling of the 2-D pyramid."""
        return 4 ** sum(self.freq_only_down) * 2 ** (len(self.freq_only_down) - sum(self.freq_only_down))

    @property
    def frames_per_latent(self) -> int:
        """STFT frames per latent vector (the time downsampling of the pyramid)."""
        return 2 ** (len(self.freq_only_down) - sum(self.freq_only_down))

    @property
    def samples_per_latent(self) -> int:
        return self.frames_per_latent * self.spectral.hop_length

    @property
    def bottom_freq(self) -> int:
        """Frequency rows at the coarsest level."""
        return self.spectral.freq_bins // self.freq_factor


def _tiny() -> V1Config:
    return V1Config(name="m2l-v1-tiny", base_channels=8, multipliers=(1, 2, 2, 2, 2),
                    unet_blocks=1, cond_channels=64, bottleneck_channels=64,
                    bottleneck_blocks=1, heads=2)


def _small() -> V1Config:
    return V1Config(name="m2l-v1-small", base_channels=16, multipliers=(1, 2, 4, 4, 4),
                    unet_blocks=1, cond_channels=128, bottleneck_channels=256,
                    bottleneck_blocks=2)


PRESETS: dict[str, Any] = {
    "m2l-v1": V1Config,
    "m2l-v1-small": _small,
    "m2l-v1-tiny": _tiny,
}


def preset(name: str) -> V1Config:
    """Return the named preset config (see `PRESETS`)."""
    if name not in PRESETS:
        raise M2LError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()


def config_to_dict(config: V1Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(data: dict[str, Any]) -> V1Config:
    """Rebuild a config from `config_to_dict` output (e.g. JSON from a checkpoint)."""
    data = dict(data)
    kind = data.get("kind")
    if kind != "v1":
        raise M2LError(f"unsupported model kind {kind!r} in config")
    try:
        data["spectral"] = SpectralConfig(**data["spectral"])
        data["consistency"] = ConsistencyConfig(**data["consistency"])
        for key in ("multipliers", "attention", "freq_only_down"):
            data[key] = tuple(data[key])
        return V1Config(**data)
    except (KeyError, TypeError) as err:
        raise M2LError(f"malformed model config: {err}") from None


def config_hash(config: V1Config) -> str:
    """Short stable hash of everything that shapes the latents (the name is left out)."""
    data = config_to_dict(config)
    data.pop("name")
    blob = json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
