"""Model configurations: frozen dataclasses and named presets.

A config fully describes an architecture and its signal conventions; checkpoints carry it as JSON
so a file is self-describing. `config_hash` identifies a config in latent files.

A config from a file is untrusted: every dataclass checks each field's type and range when it is
made (`__post_init__`), before any model is sized from it, so absurd sizes, zeros that would
divide, NaN, negative or non-integer values are one-line `M2LError`s instead of huge allocations.
The ranges are generous bounds on what a model can sensibly have, not the presets' values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from m2l.errors import M2LError

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "default"
"""The name of the model shipped inside the package: the source `m2l.load()` and every command
without --model load."""
GENERATE_STEPS = 32
"""Sampler steps of `m2l generate`, `m2l gen eval` and `GeneratorFile.sample` (Heun, 63 network
evaluations per window): the shipped generator's test-split FAD is 116 at 8 steps, 84 at 32."""
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768_000
"""The audio rates m2l accepts from files and configs, in Hz (anything else is a damaged header)."""
STEREO_MODES = ("ms", "lr")
"""How a codec that codes channels apart carries a stereo pair (`m2l.codec`, recorded in latent
files): `ms`, mid/side (the default of per-channel codecs); `lr`, left/right, as the authors code it."""
_NAME_LIMIT = 200


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ints(obj: object, owner: str, bounds: dict[str, tuple[int, int]]) -> None:
    """Each field of `obj` named in `bounds` must be an int (not a bool) in [low, high]."""
    for name, (low, high) in bounds.items():
        value = getattr(obj, name)
        if not (_is_int(value) and low <= value <= high):
            raise M2LError(f"{owner}: {name} must be an integer in {low}..{high}, got {_shown(value)}")


def _check_reals(obj: object, owner: str, bounds: dict[str, tuple[float, float]]) -> None:
    """Each field of `obj` named in `bounds` must be a number in (low, high] (so finite); it is
    stored as a float, so that 1 and 1.0 make the same config."""
    for name, (low, high) in bounds.items():
        value = getattr(obj, name)
        if not ((_is_int(value) or isinstance(value, float)) and low < value <= high):
            raise M2LError(f"{owner}: {name} must be a number in ({low:g}, {high:g}], got {_shown(value)}")
        object.__setattr__(obj, name, float(value))


def _check_tuple(
    obj: object, owner: str, name: str, length: tuple[int, int], items: tuple[int, int] | None
) -> tuple:
    """Field `name` must be a tuple (a list becomes one) of `length[0]..length[1]` ints in
    `items`, or of bools when `items` is None."""
    value = getattr(obj, name)
    value = tuple(value) if isinstance(value, list) else value
    what = "true/false values" if items is None else f"integers in {items[0]}..{items[1]}"
    ok = isinstance(value, tuple) and length[0] <= len(value) <= length[1]
    if ok and items is None:
        ok = all(isinstance(v, bool) for v in value)
    elif ok and items is not None:
        ok = all(_is_int(v) and items[0] <= v <= items[1] for v in value)
    if not ok:
        raise M2LError(f"{owner}: {name} must be {length[0]}..{length[1]} {what}, got {_shown(value)}")
    object.__setattr__(obj, name, value)
    return value


def _check_identity(obj: Any, kind: str) -> str:
    """Check `kind`, `name` and the nested configs of a model config; returns its message prefix."""
    name = obj.name
    if not (isinstance(name, str) and 0 < len(name) <= _NAME_LIMIT and name.isprintable()):
        raise M2LError(
            f"config: name must be printable text of 1..{_NAME_LIMIT} characters, got {_shown(name)}"
        )
    owner = f"config {name}"
    if obj.kind != kind:
        raise M2LError(f"{owner}: kind must be {kind!r}, got {_shown(obj.kind)}")
    if not isinstance(obj.spectral, SpectralConfig) or not isinstance(obj.consistency, ConsistencyConfig):
        raise M2LError(f"{owner}: spectral and consistency must be SpectralConfig and ConsistencyConfig")
    return owner


@dataclass(frozen=True)
class SpectralConfig:
    """STFT and amplitude compression of the Music2Latent representation."""

    sample_rate: int = 44100
    hop_length: int = 512
    n_fft: int = 2048  # = 4 x hop; frames are not centred
    freq_bins: int = 1024  # rfft bins kept (Nyquist dropped)
    alpha: float = 0.65  # amplitude exponent
    beta: float = 0.34  # amplitude gain

    def __post_init__(self) -> None:
        owner = "spectral config"
        _check_ints(
            self, owner, {"sample_rate": (MIN_SAMPLE_RATE, MAX_SAMPLE_RATE), "hop_length": (1, 1 << 16)}
        )
        _check_ints(self, owner, {"n_fft": (self.hop_length, 1 << 18)})
        if self.n_fft % self.hop_length:
            raise M2LError(f"{owner}: n_fft {self.n_fft} is not a multiple of hop_length {self.hop_length}")
        _check_ints(self, owner, {"freq_bins": (1, self.n_fft // 2 + 1)})
        _check_reals(self, owner, {"alpha": (0.0, 10.0), "beta": (0.0, 1e3)})


@dataclass(frozen=True)
class ConsistencyConfig:
    """EDM-style noise parametrisation with the boundary condition at sigma_min."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    rho: float = 7.0

    def __post_init__(self) -> None:
        owner = "consistency config"
        _check_reals(self, owner, {"sigma_min": (0.0, 1e3), "sigma_data": (0.0, 1e3), "rho": (0.0, 1e3)})
        _check_reals(self, owner, {"sigma_max": (self.sigma_min, 1e6)})


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
        owner = _check_identity(self, "v1")
        _check_ints(self, owner, _V1_INTS)
        _check_reals(self, owner, {"latent_scale": (0.0, 1e6)})
        levels = len(_check_tuple(self, owner, "multipliers", (1, 8), (1, 64)))
        _check_tuple(self, owner, "attention", (levels, levels), None)
        _check_tuple(self, owner, "freq_only_down", (levels - 1, levels - 1), None)
        if self.cond_channels % 2:
            raise M2LError(
                f"{owner}: cond_channels must be even (sine and cosine halves), got {self.cond_channels}"
            )
        if self.spectral.freq_bins % self.freq_factor:
            raise M2LError(f"{owner}: freq_bins not divisible by {self.freq_factor}")
        for level, (channels, attends) in enumerate(zip(self.channels, self.attention, strict=True)):
            if attends and channels % self.heads:
                raise M2LError(
                    f"{owner}: level {level} has {channels} channels, not divisible by {self.heads} heads"
                )

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


_V1_INTS = {
    "base_channels": (1, 4096),
    "unet_blocks": (1, 16),
    "heads": (1, 64),
    "cond_channels": (2, 8192),
    "bottleneck_channels": (1, 8192),
    "bottleneck_blocks": (1, 32),
    "latent_dim": (1, 4096),
}


def _tiny() -> V1Config:
    return V1Config(
        name="m2l-v1-tiny",
        base_channels=8,
        multipliers=(1, 2, 2, 2, 2),
        unet_blocks=1,
        cond_channels=64,
        bottleneck_channels=64,
        bottleneck_blocks=1,
        heads=2,
    )


def _small() -> V1Config:
    return V1Config(
        name="m2l-v1-small",
        base_channels=16,
        multipliers=(1, 2, 4, 4, 4),
        unet_blocks=1,
        cond_channels=128,
        bottleneck_channels=256,
        bottleneck_blocks=2,
    )


@dataclass(frozen=True)
class V2Config:
    """Music2Latent2 architecture. Defaults are the paper's model (see `m2l.models.v2`).

    Choices the paper leaves open, and ours:
    - "5 resolution levels" with 6 entries of layers/channels: 6 stages of conv ResBlocks with 5
      downsamplings between them; the first is frequency-only x4 and the others x2 on both axes,
      so a chunk of 1024 x 64 bins/frames becomes 16 x 4 = 64 tokens (`token_grid`).
    - Tokens get learned positional embeddings (per position of the two-chunk sequence); the
      encoder/decoder transformers see one chunk, the consistency transformer two.
    - The conv blocks of the consistency model are conditioned with adaptive GroupNorm (scale and
      shift from the noise embedding) and its transformer with adaLN-zero (scale, shift, gate).
    - Ordered ablation: with a 16 x 4 token grid, each of the 4 token columns (time steps) maps
      through one linear layer to K / 4 latents of latent_dim, and back in the decoder.
    """

    kind: str = "v2"
    name: str = "m2l-v2"
    spectral: SpectralConfig = field(default_factory=SpectralConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    audio_channels: int = 1  # 2: the two channels' spectrograms concatenated (4 input channels)
    chunk_frames: int = 64  # STFT frames per chunk
    channels: tuple[int, ...] = (64, 128, 256, 256, 256, 256)
    layers: tuple[int, ...] = (3, 3, 3, 4, 5, 1)  # ResBlocks per stage (mirrored when upsampling)
    freq_only_down: tuple[bool, ...] = (True, False, False, False, False)
    dim: int = 256  # transformer width
    depth: int = 16  # transformer blocks per module
    heads: int = 4
    mlp_ratio: int = 4
    cond_channels: int = 256  # sinusoidal noise embedding width
    summary: bool = True  # False: the "ordered latents" ablation
    num_latents: int = 8  # K latents per chunk
    latent_dim: int = 64
    latent_scale: float = 1.0  # user latents = tanh(encoder) / latent_scale

    def __post_init__(self) -> None:
        owner = _check_identity(self, "v2")
        _check_ints(self, owner, _V2_INTS)
        _check_reals(self, owner, {"latent_scale": (0.0, 1e6)})
        if not isinstance(self.summary, bool):
            raise M2LError(f"{owner}: summary must be true or false, got {_shown(self.summary)}")
        stages = len(_check_tuple(self, owner, "channels", (1, 10), (1, 8192)))
        _check_tuple(self, owner, "layers", (stages, stages), (1, 32))
        _check_tuple(self, owner, "freq_only_down", (stages - 1, stages - 1), None)
        if self.cond_channels % 2:
            raise M2LError(
                f"{owner}: cond_channels must be even (sine and cosine halves), got {self.cond_channels}"
            )
        f, t = self.token_grid
        if f * self.freq_factor != self.spectral.freq_bins or t * self.time_factor != self.chunk_frames:
            raise M2LError(
                f"{owner}: a chunk of {self.spectral.freq_bins} x "
                f"{self.chunk_frames} does not divide into whole patches"
            )
        if self.dim % self.heads or (not self.summary and self.num_latents % t):
            raise M2LError(f"{owner}: dim must divide by heads and (ordered) K by the {t} token columns")

    @property
    def freq_factor(self) -> int:
        return 4 ** sum(self.freq_only_down) * 2 ** (len(self.freq_only_down) - sum(self.freq_only_down))

    @property
    def time_factor(self) -> int:
        return 2 ** (len(self.freq_only_down) - sum(self.freq_only_down))

    @property
    def token_grid(self) -> tuple[int, int]:
        """(frequency, time) positions of the patch grid of one chunk."""
        return self.spectral.freq_bins // self.freq_factor, self.chunk_frames // self.time_factor

    @property
    def tokens(self) -> int:
        """Audio tokens per chunk."""
        return self.token_grid[0] * self.token_grid[1]

    @property
    def samples_per_chunk(self) -> int:
        return self.chunk_frames * self.spectral.hop_length


_V2_INTS = {
    "audio_channels": (1, 2),
    "chunk_frames": (1, 4096),
    "dim": (1, 8192),
    "depth": (1, 128),
    "heads": (1, 256),
    "mlp_ratio": (1, 16),
    "cond_channels": (2, 8192),
    "num_latents": (1, 4096),
    "latent_dim": (1, 4096),
}


def _v2_small(**kw: Any) -> V2Config:
    base = {
        "name": "m2l-v2-small",
        "channels": (16, 32, 64, 64, 128, 128),
        "layers": (1, 1, 1, 2, 2, 1),
        "dim": 128,
        "depth": 4,
        "heads": 4,
        "cond_channels": 128,
    }
    return V2Config(**{**base, **kw})


def _v2_tiny(**kw: Any) -> V2Config:
    base = {
        "name": "m2l-v2-tiny",
        "channels": (8, 16, 32, 32, 64, 64),
        "layers": (1, 1, 1, 1, 1, 1),
        "dim": 64,
        "depth": 2,
        "heads": 2,
        "cond_channels": 64,
    }
    return V2Config(**{**base, **kw})


PRESETS: dict[str, Any] = {
    "m2l-v1": V1Config,
    "m2l-v1-small": _small,
    "m2l-v1-tiny": _tiny,
    "m2l-v2": V2Config,
    "m2l-v2-stereo": lambda: V2Config(name="m2l-v2-stereo", audio_channels=2),
    "m2l-v2-small": _v2_small,
    # `default-v2`'s architecture: joint stereo (both channels' spectrograms in one row)
    "m2l-v2-small-stereo": lambda: _v2_small(name="m2l-v2-small-stereo", audio_channels=2),
    "m2l-v2-tiny": _v2_tiny,
    # the paper's ablation pair: [2, 2, 2, 2, 2, 1] layers, summary vs ordered latents
    "m2l-v2-ordered": lambda: V2Config(name="m2l-v2-ordered", layers=(2, 2, 2, 2, 2, 1), summary=False),
    "m2l-v2-ordered-tiny": lambda: _v2_tiny(name="m2l-v2-ordered-tiny", summary=False),
}
"""The model presets by name: `m2l-<version>[-<variant>]`; each preset's config bears its name."""

PRESET_ALIASES: dict[str, str] = {
    "m2l2": "m2l-v2",
    "m2l2-stereo": "m2l-v2-stereo",
    "m2l2-small": "m2l-v2-small",
    "m2l2-tiny": "m2l-v2-tiny",
    "m2l2-ordered": "m2l-v2-ordered",
    "m2l2-ordered-tiny": "m2l-v2-ordered-tiny",
}
"""Former preset names -> current ones. A former name is accepted wherever a preset name is, and
files that record one (configs in checkpoints and training runs, model ids and sources in latent
files) read as if they recorded the current name."""

ModelConfig = V1Config | V2Config


def preset_name(name: str) -> str:
    """The current name of a preset named by its current or a former name (`PRESET_ALIASES`);
    any other text (a path, an unknown name) is returned unchanged."""
    return PRESET_ALIASES.get(name, name)


def current_model_id(model_id: str) -> str:
    """`model_id` ("NAME@WEIGHTS") with a former preset name before the "@" replaced by the
    current one, so that the id an older m2l recorded equals the one its model has now."""
    name, at, weights = model_id.partition("@")
    return preset_name(name) + at + weights if at else model_id


def preset(name: str) -> ModelConfig:
    """The config of the preset `name` (see `PRESETS`; a former name is accepted, see
    `PRESET_ALIASES`).

    Raises:
        M2LError: an unknown name, naming the presets.
    """
    current = preset_name(name)
    if current not in PRESETS:
        raise M2LError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[current]()


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild a config from `config_to_dict` output (e.g. JSON from a checkpoint); a former
    preset name (`PRESET_ALIASES`) becomes the current one.

    Raises:
        M2LError: `data` is not a dict, has missing or unknown fields, or a field of the wrong
            type or out of range (one line naming the field).
    """
    if not isinstance(data, dict):
        raise M2LError(f"model config must be a JSON object, got {type(data).__name__}")
    data = dict(data)
    if isinstance(data.get("name"), str):  # a preset's config recorded under its former name
        data["name"] = preset_name(data["name"])
    kind = data.get("kind")
    cls = {"v1": V1Config, "v2": V2Config}.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise M2LError(f"unsupported model kind {kind!r} in config")
    try:
        data["spectral"] = SpectralConfig(**data["spectral"])
        data["consistency"] = ConsistencyConfig(**data["consistency"])
        for key, value in data.items():
            if isinstance(value, list):
                data[key] = tuple(value)
        return cls(**data)
    except (KeyError, TypeError) as err:
        raise M2LError(f"malformed model config: {err}") from None


def config_hash(config: ModelConfig) -> str:
    """Short stable hash of everything that shapes the latents (the name is left out)."""
    data = config_to_dict(config)
    data.pop("name")
    blob = json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# ----------------------------------------------------------------------------- precision
# The codec commands' --precision and the training config's `precision` take the same choices;
# `resolve_precision` turns one into the dtype the networks autocast to, importing torch only
# then (the command line offers the choices without it). What "auto" means depends on the use:
# - inference (training=False): bf16 on a CUDA GPU that supports it, else no autocast; it never
#   picks fp16 by itself, whose narrow range is a risk a user opts into with "fp16";
# - training (training=True): on a CUDA GPU, bf16 where supported, else fp16 (trained with a
#   gradient scaler); on any other device no autocast.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""The precision choices, in the order help texts and errors list them."""


def check_precision(choice: object) -> None:
    """Refuse a choice that is not one of `PRECISIONS`.

    Raises:
        M2LError: naming the choices.
    """
    if choice not in PRECISIONS:
        raise M2LError(f"precision must be {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}, got {choice!r}")


def resolve_precision(choice: str, device: torch.device, *, training: bool = False) -> torch.dtype | None:
    """The autocast dtype of a precision choice on `device` (see the module docstring).

    Args:
        choice: one of `PRECISIONS`.
        device: the device the networks run on.
        training: resolve for training (what "auto" picks on a CUDA GPU without bf16, and
            whether fp16 needs CUDA) instead of for inference.

    Returns:
        torch.bfloat16 or torch.float16 for autocast, or None for none (float32). A training run
        that gets torch.float16 needs a gradient scaler.

    Raises:
        M2LError: an unknown choice, or fp16 for training on a device other than CUDA.
    """
    import torch

    check_precision(choice)
    on_cuda = device.type == "cuda"
    if choice == "auto":
        if not on_cuda:
            return None
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if training else None
    if choice == "fp16" and training and not on_cuda:
        raise M2LError("precision=fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]
