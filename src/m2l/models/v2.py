"""Music2Latent2 (v2): summary-embedding encoder, mask-token decoder, chunk-causal consistency model.

Shapes for the paper size (B batch, a chunk = 64 STFT frames, K = 8, C_in = 2 per audio channel):
    chunk spectrogram [B, C_in, 1024, 64] -> patchifier -> [B, 256, 16, 4] -> tokens [B, 64, 256]
    encoder: 64 audio tokens + K learned tokens -> transformer -> K outputs (features)
             -> linear -> tanh -> latents [B, K, 64]
    decoder: latents -> linear -> K tokens + 64 mask tokens -> transformer -> 64 audio outputs
             -> de-patchifier emitting every stage: [B, 64, 1024, 64] ... [B, 256, 16, 4]
    consistency net on G consecutive chunks (G = 2 in training, 1 or 2 when decoding):
             noisy chunks [B * G, C_in, 1024, 64] + noise conditioning [B * G, E] + decoder features
             -> patchifier (+ features) -> transformer over [B, G * 64, 256], chunk-causal
             -> de-patchifier (+ skips) -> [B * G, C_in, 1024, 64]
The consistency net is the raw network F; `m2l.consistency.precond.Denoiser` adds the EDM
scalings and the noise conditioning per chunk, so each chunk has its own sigma. Open choices are
listed on `V2Config`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from m2l.audio.spectral import from_spectrogram, to_spectrogram
from m2l.config import V2Config
from m2l.consistency.precond import Denoiser
from m2l.errors import M2LError
from m2l.models.layers import Downsample, ResBlock, Upsample, add, group_norm, mlp, mul, silu, zero_


def chunk_causal_mask(chunks: int, tokens: int, device: torch.device | None = None) -> torch.Tensor:
    """[chunks * tokens] ** 2 boolean mask: a token sees its own chunk and the previous one."""
    chunk = torch.arange(chunks * tokens, device=device) // tokens
    delta = chunk[:, None] - chunk[None, :]
    return (delta == 0) | (delta == 1)


class Block(nn.Module):
    """Pre-LN transformer block; with `cond_dim`, adaLN-zero modulation (scale, shift, gate)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, cond_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=cond_dim is None)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=cond_dim is None)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))
        self.ada = zero_(nn.Linear(cond_dim, 6 * dim)) if cond_dim else None

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [B, L, D], mask [L, L] (True = may attend), cond [B, L, E] -> [B, L, D]."""
        b, n, d = x.shape
        mods = self.ada(cond).chunk(6, dim=-1) if self.ada is not None else None
        h = self.norm1(x)
        if mods is not None:
            h = h * (1 + mods[1]) + mods[0]
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, heads, L, D / heads]
        h = self.proj(h.transpose(1, 2).reshape(b, n, d))
        x = x + (h if mods is None else mods[2] * h)
        h = self.norm2(x)
        if mods is not None:
            h = h * (1 + mods[4]) + mods[3]
        h = self.mlp(h)
        return x + (h if mods is None else mods[5] * h)


class Transformer(nn.Module):
    """A stack of `depth` blocks and a final LayerNorm: [B, L, D] -> [B, L, D]."""

    def __init__(self, cfg: V2Config, cond_dim: int | None = None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cond_dim) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask, cond)
        return self.norm(x)


class ConditionedResBlock(nn.Module):
    """Conv ResBlock with adaptive GroupNorm: the second norm is scaled and shifted by the
    noise embedding. [B, C, F, T], emb [B, E] -> [B, C, F, T]."""

    def __init__(self, channels: int, emb_ch: int) -> None:
        super().__init__()
        self.norm1 = group_norm(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = group_norm(channels)
        self.ada = zero_(nn.Linear(emb_ch, 2 * channels))
        self.conv2 = zero_(nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(silu(self.norm1(x)))
        scale, shift = self.ada(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h)
        h = add(mul(h, 1 + scale), shift)
        h = self.conv2(silu(h))
        return add(h, x)


def to_tokens(h: torch.Tensor) -> torch.Tensor:
    """Patch grid [B, C, f, t] -> tokens [B, f * t, C] (frequency-major)."""
    return h.permute(0, 2, 3, 1).flatten(1, 2)


def from_tokens(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Tokens [B, f * t, C] -> patch grid [B, C, f, t]."""
    return x.unflatten(1, grid).permute(0, 3, 1, 2)


def conv_stages(cfg: V2Config, emb_ch: int | None) -> nn.ModuleList:
    """`layers[i]` ResBlocks of `channels[i]` per stage, noise-conditioned when `emb_ch` is set."""
    return nn.ModuleList(
        nn.ModuleList(ConditionedResBlock(c, emb_ch) if emb_ch else ResBlock(c, c) for _ in range(n))
        for c, n in zip(cfg.channels, cfg.layers, strict=True)
    )


class Patchifier(nn.Module):
    """Stages of ResBlocks with downsampling: [B, C_in, F, T] -> tokens [B, L, dim].

    With `emb_ch` the blocks are noise-conditioned and `forward` adds the decoder's feature of
    each stage before its blocks (cross connections) and returns the stage outputs (skips).
    """

    def __init__(self, cfg: V2Config, emb_ch: int | None = None) -> None:
        super().__init__()
        ch = cfg.channels
        self.conv_in = nn.Conv2d(2 * cfg.audio_channels, ch[0], 3, padding=1)
        self.stages = conv_stages(cfg, emb_ch)
        self.downs = nn.ModuleList(
            Downsample(ch[i], ch[i + 1], freq_only=cfg.freq_only_down[i], norm=True)
            for i in range(len(ch) - 1)
        )
        self.norm = nn.LayerNorm(ch[-1])
        self.proj = nn.Linear(ch[-1], cfg.dim)

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor | None = None, cross: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, skips = self.conv_in(x), []
        for i, blocks in enumerate(self.stages):
            if cross is not None:
                h = add(h, cross[i])
            for block in blocks:
                h = block(h) if emb is None else block(h, emb)
            skips.append(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        return self.proj(self.norm(to_tokens(h))), skips


class DePatchifier(nn.Module):
    """Tokens [B, L, dim] -> stages of ResBlocks with upsampling, coarsest first.

    Returns every stage's output finest first (the decoder's cross connections); with `skips`
    (consistency net) each stage first adds the patchifier's output of the same stage.
    """

    def __init__(self, cfg: V2Config, emb_ch: int | None = None) -> None:
        super().__init__()
        ch = cfg.channels
        self.grid = cfg.token_grid
        self.proj = nn.Linear(cfg.dim, ch[-1])
        self.stages = conv_stages(cfg, emb_ch)
        self.ups = nn.ModuleList(
            Upsample(ch[i + 1], ch[i], freq_only=cfg.freq_only_down[i]) for i in range(len(ch) - 1)
        )

    def forward(
        self, tokens: torch.Tensor, emb: torch.Tensor | None = None, skips: list[torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        h = from_tokens(self.proj(tokens), self.grid).contiguous()
        outs = []
        for i in reversed(range(len(self.stages))):
            if skips is not None:
                h = add(h, skips[i])
            for block in self.stages[i]:
                h = block(h) if emb is None else block(h, emb)
            outs.append(h)
            if i > 0:
                h = self.ups[i - 1](h)
        return outs[::-1]


class Encoder(nn.Module):
    """Chunk spectrogram [B, C_in, F, T] -> latents [B, K, latent_dim] in (-1, 1)."""

    def __init__(self, cfg: V2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.patchify = Patchifier(cfg)
        self.pos = nn.Parameter(torch.randn(cfg.tokens, cfg.dim) * 0.02)
        if cfg.summary:
            self.summary = nn.Parameter(torch.randn(cfg.num_latents, cfg.dim) * 0.02)
            self.out = nn.Linear(cfg.dim, cfg.latent_dim)
        else:  # ordered ablation: one linear per token column (time step)
            f, t = cfg.token_grid
            self.out = nn.Linear(f * cfg.dim, cfg.num_latents // t * cfg.latent_dim)
        self.transformer = Transformer(cfg)

    def forward(self, spec: torch.Tensor, features: bool = False) -> torch.Tensor:
        """Encode; with `features`, the transformer outputs before the last linear layer,
        stacked: [B, K * dim] (summary) or [B, L * dim] (ordered)."""
        tokens, _ = self.patchify(spec)
        tokens = tokens + self.pos
        b, n = tokens.shape[:2]
        if self.cfg.summary:
            tokens = torch.cat((tokens, self.summary.expand(b, -1, -1)), dim=1)
            h = self.transformer(tokens)[:, n:]  # [B, K, dim]: the audio tokens are dropped
        else:
            f, t = self.cfg.token_grid
            h = self.transformer(tokens).unflatten(1, (f, t)).transpose(1, 2).flatten(2)  # [B, t, f*dim]
        if features:
            return h.flatten(1)
        return torch.tanh(self.out(h).reshape(b, self.cfg.num_latents, self.cfg.latent_dim))


class Decoder(nn.Module):
    """Latents [B, K, latent_dim] -> features of every stage for the consistency net."""

    def __init__(self, cfg: V2Config) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.summary:
            self.inp = nn.Linear(cfg.latent_dim, cfg.dim)
            self.mask = nn.Parameter(torch.randn(cfg.tokens, cfg.dim) * 0.02)  # one per position
        else:
            f, t = cfg.token_grid
            self.inp = nn.Linear(cfg.num_latents // t * cfg.latent_dim, f * cfg.dim)
            self.pos = nn.Parameter(torch.randn(cfg.tokens, cfg.dim) * 0.02)
        self.transformer = Transformer(cfg)
        self.depatchify = DePatchifier(cfg)

    def forward(self, latents: torch.Tensor) -> list[torch.Tensor]:
        cfg, b = self.cfg, latents.shape[0]
        if cfg.summary:
            z = self.inp(latents)  # [B, K, dim], a set: no order is given to the latents
            h = self.transformer(torch.cat((self.mask.expand(b, -1, -1), z), dim=1))[:, : cfg.tokens]
        else:
            f, t = cfg.token_grid
            cols = self.inp(latents.reshape(b, t, -1)).view(b, t, f, cfg.dim)
            h = self.transformer(cols.transpose(1, 2).flatten(1, 2) + self.pos)
        return self.depatchify(h)


@dataclass
class ChunkConditioning:
    """Decoder features of B * G chunks (finest stage first) and G, the chunks per sequence."""

    features: list[torch.Tensor]
    chunks: int


class ConsistencyNet(nn.Module):
    """Raw network F(c_in x, c_noise, cond): [B * G, C_in, F, T] with the noise conditioning of
    each chunk [B * G, cond_channels] (`m2l.consistency.precond.noise_conditioning`) -> same shape."""

    def __init__(self, cfg: V2Config) -> None:
        super().__init__()
        self.cfg = cfg
        emb = cfg.cond_channels
        self.noise_mlp = mlp([emb, emb, emb], final_act=True)
        self.patchify = Patchifier(cfg, emb_ch=emb)
        self.pos = nn.Parameter(torch.randn(2 * cfg.tokens, cfg.dim) * 0.02)
        self.transformer = Transformer(cfg, cond_dim=emb)
        self.depatchify = DePatchifier(cfg, emb_ch=emb)
        self.norm_out = group_norm(cfg.channels[0])
        self.conv_out = zero_(nn.Conv2d(cfg.channels[0], 2 * cfg.audio_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor, cond: ChunkConditioning) -> torch.Tensor:
        g, n = cond.chunks, self.cfg.tokens
        if g > self.pos.shape[0] // n:
            raise M2LError(f"the consistency model sees at most 2 chunks at once, got {g}")
        emb = self.noise_mlp(noise)  # [B*G, E]
        tokens, skips = self.patchify(x, emb, cond.features)  # [B*G, L, dim]
        b = tokens.shape[0] // g
        seq = tokens.reshape(b, g * n, -1) + self.pos[: g * n]
        token_emb = emb.view(b, g, 1, -1).expand(b, g, n, emb.shape[-1]).reshape(b, g * n, -1)
        seq = self.transformer(seq, chunk_causal_mask(g, n, x.device), token_emb)
        h = self.depatchify(seq.reshape(b * g, n, -1), emb, skips)[0]
        return self.conv_out(silu(self.norm_out(h)))


class Music2Latent2(nn.Module):
    """The whole v2 autoencoder and the trainer interface (one noise level per chunk)."""

    sigma_groups = 2  # training sees pairs of consecutive chunks

    def __init__(self, cfg: V2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.denoiser = Denoiser(ConsistencyNet(cfg), cfg.consistency, cfg.cond_channels)

    @property
    def audio_channels(self) -> int:
        return self.cfg.audio_channels

    @property
    def required_crop_frames(self) -> int:
        """Training crops are exactly `sigma_groups` chunks."""
        return self.sigma_groups * self.cfg.chunk_frames

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, audio_channels, samples] -> [B, 2 * audio_channels, F, frames]."""
        b, c, n = audio.shape
        spec = to_spectrogram(audio.reshape(b * c, n), self.cfg.spectral)
        return spec.reshape(b, 2 * c, *spec.shape[-2:])

    def encode(self, spec: torch.Tensor, features: bool = False) -> torch.Tensor:
        """Chunks [B, C_in, F, chunk_frames] -> raw latents [B, K, latent_dim] (or features)."""
        return self.encoder(spec, features=features)

    def decode_features(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Raw latents [B, K, latent_dim] -> decoder features of each chunk (finest first)."""
        return self.decoder(latents)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """Consistency function on G consecutive chunks.

        Args:
            x: [B, G, C_in, F, chunk_frames] noisy chunks, oldest first.
            sigma: [B, G] noise level of each chunk.
            features: decoder features of the B * G chunks (batch-major).

        Returns:
            [B, G, C_in, F, chunk_frames] denoised chunks.
        """
        b, g = x.shape[:2]
        out = self.denoiser(x.flatten(0, 1), sigma.reshape(b * g), ChunkConditioning(features, g))
        return out.view(x.shape)

    # ------------------------------------------------------- the interface the trainer uses
    def prepare(self, audio: torch.Tensor) -> torch.Tensor:
        """Training audio [B, audio_channels, samples] -> x0 [B, 2, C_in, F, chunk_frames]."""
        spec = self.spectrogram(audio)
        frames, need = spec.shape[-1], self.sigma_groups * self.cfg.chunk_frames
        if frames != need:
            raise M2LError(
                f"{self.cfg.name} trains on {self.sigma_groups} chunks of "
                f"{self.cfg.chunk_frames} frames: crop_frames must be {need}, got {frames}"
            )
        return spec.unflatten(-1, (self.sigma_groups, self.cfg.chunk_frames)).permute(0, 3, 1, 2, 4)

    def conditioning(self, x0: torch.Tensor) -> list[torch.Tensor]:
        """Encoder + decoder features of each clean chunk (shared by student and teacher)."""
        return self.decoder(self.encoder(x0.flatten(0, 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x0 + sigma * noise with sigma [B, G] (one level per chunk)."""
        return x0 + sigma.reshape(*sigma.shape, 1, 1, 1).to(x0.dtype) * noise

    def group_view(self, x: torch.Tensor) -> torch.Tensor:
        """[B, G, ...] -> [B, G, d] for the per-chunk loss."""
        return x.flatten(2)

    def to_waveform(self, x: torch.Tensor) -> torch.Tensor:
        """Training chunks [B, G, 2C, F, Tc] -> unclamped waveforms [B * C, samples] (for losses)."""
        b, g, c2, f, t = x.shape
        spec = x.permute(0, 2, 3, 1, 4).reshape(b * c2 // 2, 2, f, g * t)  # chunks joined in time
        return from_spectrogram(spec, self.cfg.spectral, clamp=False)
