"""The latent generator: a 1-D transformer over latent frames, conditioned by adaLN-Zero (DiT-style).

Shapes (B batch, D = latent_dim = 64, T frames, W width, H heads):
    noisy latents x_t [B, D, T], clean context [B, D, T] and its frame mask [B, T] (True: given)
        -> context frames put in place of the noisy ones, the mask as one more channel [B, T, D + 1]
        -> linear -> tokens [B, T, W]
    flow time t [B] -> sinusoidal embedding -> MLP -> [B, W]  (+ class embedding [B, W])
        -> SiLU -> the conditioning vector c [B, W] of every block
    depth x Block: attention over all T frames (rotary positions, no mask: inpainting needs both
        sides), then an MLP; each pre-norm is scaled and shifted and each branch gated by c
        (adaLN-Zero: the gates start at zero, so every block starts as the identity)
    final LayerNorm modulated by c -> zero-initialised linear -> velocity [B, T, D] -> [B, D, T]

The output is zero at initialisation. Positions are rotary (relative): the attention sees frame
offsets, not absolute places, as fits a clip cut anywhere from a longer one; any window length
runs, though the model is trained on `frames`. Class labels are 0..num_classes - 1, and
`num_classes` itself is the null class (no label, and the unconditional branch of classifier-free
guidance); with num_classes = 0 the model has no class embedding.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from m2l.errors import M2LError
from m2l.models.layers import frame_attention, zero_


@dataclass(frozen=True)
class GeneratorConfig:
    """The generator's architecture (see the module docstring); presets in `GENERATOR_PRESETS`.

    A config read from a file is untrusted: every field is checked when it is made.
    """

    name: str = "gen-small"
    latent_dim: int = 64  # D: the codec's latent channels (one v1 row is [64, frames])
    frames: int = 128  # T: the training window (128 v1 frames: about 12 s)
    width: int = 256
    depth: int = 6
    heads: int = 4
    mlp_ratio: int = 4
    time_channels: int = 256  # sinusoidal embedding of the flow time
    num_classes: int = 0  # class labels 0..num_classes - 1 (0: unconditional only)
    objective: str = "flow"  # how it was trained and is sampled: "flow" or "edm" (`OBJECTIVES`)

    def __post_init__(self) -> None:
        owner = f"generator config {self.name!r}"
        if not (isinstance(self.name, str) and 0 < len(self.name) <= 200 and self.name.isprintable()):
            raise M2LError(f"generator config: name must be printable text, got {self.name!r}")
        if self.objective not in OBJECTIVES:
            raise M2LError(
                f"{owner}: objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}"
            )
        for field, (low, high) in _INT_BOUNDS.items():
            value = getattr(self, field)
            if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
                raise M2LError(f"{owner}: {field} must be an integer in {low}..{high}, got {value!r}")
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise M2LError(f"{owner}: width / heads must be an even integer (rotary pairs)")
        if self.time_channels % 2:
            raise M2LError(f"{owner}: time_channels must be even (sine and cosine halves)")

    @property
    def null_label(self) -> int:
        """The label of "no class" (the unconditional branch of classifier-free guidance)."""
        return self.num_classes


OBJECTIVES = ("flow", "edm")
"""Training objectives (and samplers): rectified flow (`m2l.generate.flow`) or EDM-preconditioned
denoising diffusion (`m2l.generate.edm`); the network is the same."""
ADDED_FIELDS = ("objective",)
"""Fields a stored config may lack (they came later): read as their defaults (a file without
`objective` is a flow generator)."""

_INT_BOUNDS = {
    "latent_dim": (1, 4096),
    "frames": (3, 1 << 16),  # a gap needs a context frame on each side
    "width": (2, 8192),
    "depth": (1, 128),
    "heads": (1, 256),
    "mlp_ratio": (1, 16),
    "time_channels": (2, 8192),
    "num_classes": (0, 1 << 20),
}

GENERATOR_PRESETS: dict[str, GeneratorConfig] = {
    "gen-tiny": GeneratorConfig(name="gen-tiny", frames=16, width=64, depth=2, heads=2, time_channels=64),
    "gen-small": GeneratorConfig(name="gen-small"),
}
"""Generator presets by name: `gen-tiny` (tests), `gen-small` (7.4 M parameters, trains on CPU;
its 128-frame window holds a 10 s clip whole and gives a continuation 6 s of context; a step
costs about what 64 frames at twice the batch cost); each config bears its name."""


def generator_config_from_dict(data: object, origin: str) -> GeneratorConfig:
    """The config stored as `data` (a generator file's, a run's or a training state's), every
    field checked; the fields of `ADDED_FIELDS` may be missing (their defaults).

    Raises:
        M2LError: not an object, unknown or missing fields, bad values (naming `origin`).
    """
    fields = {f.name for f in dataclasses.fields(GeneratorConfig)}
    if not isinstance(data, dict):
        raise M2LError(f"{origin}: malformed generator config (not an object)")
    data = {**{name: getattr(GeneratorConfig(), name) for name in ADDED_FIELDS}, **data}
    if set(data) != fields:
        raise M2LError(f"{origin}: malformed generator config (fields {sorted(set(data) ^ fields)} differ)")
    try:
        return GeneratorConfig(**data)
    except M2LError as err:
        raise M2LError(f"{origin}: malformed generator config ({err})") from None


def generator_preset(name: str, **changes: int | str) -> GeneratorConfig:
    """The preset `name`, with fields replaced by `changes` (e.g. num_classes=8, objective="edm").

    Raises:
        M2LError: an unknown name (naming the presets) or a bad field.
    """
    if name not in GENERATOR_PRESETS:
        raise M2LError(f"unknown generator preset {name!r}; known: {', '.join(sorted(GENERATOR_PRESETS))}")
    try:
        return dataclasses.replace(GENERATOR_PRESETS[name], **changes)
    except TypeError as err:
        raise M2LError(f"generator preset {name}: {err}") from None


def time_embedding(t: torch.Tensor, channels: int) -> torch.Tensor:
    """Sinusoidal embedding of flow times t in [0, 1]: [B] -> [B, channels] ([cos | sin] halves,
    float32), of 1000 t, so that the geometric frequencies (1 down to 1/10000) resolve steps of t
    from 0.001 to the whole range."""
    half = channels // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)  # [half]
    angle = 1000.0 * t.float()[:, None] * freqs[None]  # [B, half]
    return torch.cat((angle.cos(), angle.sin()), dim=1)  # [B, channels]


def rotary(frames: int, head_dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of the rotary angles of frame positions, each [T, head_dim / 2]."""
    half = head_dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=device) / half)  # [half]
    angle = torch.arange(frames, device=device)[:, None] * freqs[None]  # [T, half]
    return angle.cos(), angle.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the pairs (x[i], x[i + half]) of queries or keys [B, H, T, hd] by their frame's
    angles: a dot product of two rotated vectors depends only on their frames' offset."""
    first, second = x.chunk(2, dim=-1)  # [B, H, T, hd / 2] each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # [T, hd / 2]
    return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)  # [B, H, T, hd]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [B, T, W] scaled by 1 + scale and shifted by shift ([B, 1, W] each)."""
    return x * (1 + scale) + shift


class Block(nn.Module):
    """Pre-norm transformer block with adaLN-Zero: [B, T, W], c [B, W] -> [B, T, W]."""

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_ratio * width, width),
        )
        self.ada = zero_(nn.Linear(width, 6 * width))  # shift, scale, gate of each branch

    def attention(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, w = h.shape  # [B, T, W]
        qkv = self.qkv(h).view(b, t, 3, self.heads, w // self.heads)  # [B, T, 3, H, hd]
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # [B, H, T, hd] each
        out = frame_attention(rotate(q, cos, sin), rotate(k, cos, sin), v)  # [B, H, T, hd]
        return self.proj(out.transpose(1, 2).reshape(b, t, w))  # [B, T, W]

    def forward(self, x: torch.Tensor, c: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        mods = self.ada(c)[:, None].chunk(6, dim=-1)  # 6 x [B, 1, W]
        x = x + mods[2] * self.attention(modulate(self.norm1(x), mods[0], mods[1]), cos, sin)  # [B, T, W]
        return x + mods[5] * self.mlp(modulate(self.norm2(x), mods[3], mods[4]))  # [B, T, W]


class Generator(nn.Module):
    """Velocity network v(x_t, t | context, label) over latent frames (see the module docstring).

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.proj_in = nn.Linear(cfg.latent_dim + 1, w)  # latents and the context-mask channel
        self.time = nn.Sequential(nn.Linear(cfg.time_channels, w), nn.SiLU(), nn.Linear(w, w))
        self.label = nn.Embedding(cfg.num_classes + 1, w) if cfg.num_classes else None
        if self.label is not None:
            nn.init.normal_(self.label.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(w, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.ada_out = zero_(nn.Linear(w, 2 * w))  # shift, scale of the final norm
        self.proj_out = zero_(nn.Linear(w, cfg.latent_dim))

    def conditioning(self, t: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        """c = SiLU(time MLP + class embedding): t [B], label [B] or None -> [B, W]."""
        c = self.time(time_embedding(t, self.cfg.time_channels).to(self.proj_in.weight.dtype))  # [B, W]
        if label is not None and self.label is None:
            raise M2LError(f"generator {self.cfg.name} has no classes, but a label was given")
        if self.label is not None:
            if label is None:
                label = torch.full_like(t, self.cfg.null_label, dtype=torch.long)  # [B]
            elif label.min() < 0 or label.max() > self.cfg.null_label:
                raise M2LError(
                    f"labels must be in 0..{self.cfg.null_label} ({self.cfg.null_label}: no class)"
                )
            c = c + self.label(label)  # [B, W]
        return F.silu(c)  # [B, W]

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        label: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The velocity dx/dt at flow time t.

        Args:
            x: [B, D, T] latents at flow time t (normalised).
            t: [B] flow times in [0, 1] (0: data, 1: noise).
            mask: [B, T] bool, True where a frame is given as clean context (None: no context).
            context: [B, D, T] the clean latents read at the masked frames (needed with `mask`).
            label: [B] long class labels (`null_label`: none), or None (no class).

        Returns:
            [B, D, T] the predicted velocity (meaningful on the frames outside `mask`).
        """
        b, _, frames = x.shape  # [B, D, T]
        if mask is None:
            mask = torch.zeros(b, frames, dtype=torch.bool, device=x.device)  # [B, T]
        elif context is None:
            raise M2LError("a context mask needs the context latents")
        else:
            x = torch.where(mask[:, None], context, x)  # [B, D, T]
        h = torch.cat((x, mask[:, None].to(x.dtype)), dim=1)  # [B, D + 1, T]
        h = self.proj_in(h.transpose(1, 2))  # [B, T, W]
        c = self.conditioning(t, label)  # [B, W]
        cos, sin = rotary(frames, self.cfg.width // self.cfg.heads, x.device)  # [T, hd / 2] each
        for block in self.blocks:
            h = block(h, c, cos, sin)  # [B, T, W]
        shift, scale = self.ada_out(c)[:, None].chunk(2, dim=-1)  # [B, 1, W] each
        h = self.proj_out(modulate(self.norm_out(h), shift, scale))  # [B, T, D]
        return h.transpose(1, 2)  # [B, D, T]


def parameter_count(model: nn.Module) -> int:
    """The number of parameters of `model`."""
    return sum(p.numel() for p in model.parameters())
