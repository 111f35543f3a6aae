"""Music2Latent (v1): spectrogram encoder, latent decoder and cross-connected consistency UNet.

Shapes for the released size (B batch, T frames, T % 8 == 0):
    spectrogram [B, 2, 1024, T] -> encoder -> latents [B, 64, T/8] in (-1, 1)
    latents -> decoder -> pyramid [B, 64, 1024, T], [B, 128, 256, T], [B, 256, 128, T/2],
                                  [B, 256, 64, T/4], [B, 256, 32, T/8]   (finest first)
    noisy spectrogram + noise conditioning + pyramid -> UNet -> [B, 2, 1024, T]
The UNet is the raw network F; `m2l.consistency.precond.Denoiser` adds c_skip / c_out / c_in and
the noise conditioning.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from m2l.audio.spectral import from_spectrogram, to_spectrogram
from m2l.config import V1Config
from m2l.consistency.precond import Denoiser
from m2l.models.layers import Downsample, ResBlock, Upsample, add, group_norm, mlp, mul, silu, zero_


class Encoder(nn.Module):
    """[B, 2, F, T] spectrogram -> [B, latent_dim, T / frames_per_latent] in (-1, 1)."""

    def __init__(self, cfg: V1Config) -> None:
        super().__init__()
        ch, last = cfg.channels, len(cfg.channels) - 1
        self.conv_in = nn.Conv2d(2, ch[0], 3, padding=1)
        self.freq_gain = nn.Parameter(torch.ones(1, 1, cfg.spectral.freq_bins, 1))
        self.blocks = nn.ModuleList(
            ResBlock(ch[max(i - 1, 0)], ch[i], attention=cfg.attention[i], heads=cfg.heads)
            for i in range(len(ch))
        )
        self.downs = nn.ModuleList(
            Downsample(ch[i], ch[i], freq_only=cfg.freq_only_down[i], norm=True) for i in range(last)
        )
        self.norm_2d = group_norm(ch[last])
        self.proj_in = nn.Conv1d(ch[last] * cfg.bottom_freq, cfg.bottleneck_channels, 1)
        self.blocks_1d = nn.ModuleList(
            ResBlock(cfg.bottleneck_channels, cfg.bottleneck_channels, dims=1)
            for _ in range(cfg.bottleneck_blocks)
        )
        self.norm_out = group_norm(cfg.bottleneck_channels)
        self.proj_out = nn.Conv1d(cfg.bottleneck_channels, cfg.latent_dim, 1)

    def forward(self, spec: torch.Tensor, features: bool = False) -> torch.Tensor:
        """Encode; with `features` return the pre-bottleneck [B, C * F', T'] 2-D features instead."""
        h = mul(self.conv_in(spec), self.freq_gain)
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        h = self.norm_2d(h).flatten(1, 2)  # [B, C, F', T'] -> [B, C*F', T'] (channel-major)
        if features:
            return h
        h = self.proj_in(h)
        for block in self.blocks_1d:
            h = block(h)
        return torch.tanh(self.proj_out(F.silu(self.norm_out(h))))


class Decoder(nn.Module):
    """[B, latent_dim, T'] -> feature pyramid for the UNet's cross connections (finest first)."""

    def __init__(self, cfg: V1Config) -> None:
        super().__init__()
        ch, cb = cfg.channels, cfg.bottleneck_channels
        self.bottom = (ch[-1], cfg.bottom_freq)
        self.proj_in = nn.Conv1d(cfg.latent_dim, cb, 1)
        self.blocks_1d = nn.ModuleList(ResBlock(cb, cb, dims=1) for _ in range(cfg.bottleneck_blocks))
        self.proj_out = nn.Conv1d(cb, ch[-1] * cfg.bottom_freq, 1)
        # coarsest level first
        self.blocks = nn.ModuleList(
            ResBlock(ch[i], ch[i], attention=cfg.attention[i], heads=cfg.heads)
            for i in reversed(range(len(ch)))
        )
        self.ups = nn.ModuleList(
            Upsample(ch[i + 1], ch[i], freq_only=cfg.freq_only_down[i]) for i in reversed(range(len(ch) - 1))
        )

    def forward(self, latents: torch.Tensor) -> list[torch.Tensor]:
        h = self.proj_in(latents)
        for block in self.blocks_1d:
            h = block(h)
        h = self.proj_out(h)  # [B, F' * C, T'] unfolds frequency-major
        b, _, t = h.shape
        c, f = self.bottom
        h = h.view(b, f, c, t).transpose(1, 2)  # [B, C, F', T']
        pyramid = []
        for i, block in enumerate(self.blocks):
            h = block(h)
            pyramid.append(h)
            if i < len(self.ups):
                h = self.ups[i](h)
        return pyramid[::-1]


class UNet(nn.Module):
    """Raw consistency network F(c_in x, c_noise, pyramid) -> [B, 2, F, T]."""

    def __init__(self, cfg: V1Config) -> None:
        super().__init__()
        ch, n, emb = cfg.channels, cfg.unet_blocks, cfg.cond_channels
        bins = cfg.spectral.freq_bins
        self.noise_mlp = mlp([emb, emb, emb], final_act=True)
        self.scale_in = mlp([emb, emb, emb, bins], zero_last=True)
        self.scale_out = mlp([emb, emb, emb, bins], zero_last=True)
        self.conv_in = nn.Conv2d(2, ch[0], 3, padding=1)

        def blocks(i: int) -> nn.ModuleList:
            return nn.ModuleList(
                ResBlock(ch[i], ch[i], emb_ch=emb, attention=cfg.attention[i], heads=cfg.heads)
                for _ in range(n)
            )

        def crosses(i: int) -> nn.ModuleList:
            return nn.ModuleList(nn.Conv2d(ch[i], ch[i], 1) for _ in range(n))

        levels = range(len(ch))
        self.down_cross = nn.ModuleList(crosses(i) for i in levels)
        self.down_blocks = nn.ModuleList(blocks(i) for i in levels)
        self.downs = nn.ModuleList(
            Downsample(ch[i], ch[i + 1], freq_only=cfg.freq_only_down[i]) for i in levels[:-1]
        )
        self.up_cross = nn.ModuleList(crosses(i) for i in levels)
        self.up_blocks = nn.ModuleList(blocks(i) for i in levels)
        self.ups = nn.ModuleList(
            Upsample(ch[i + 1], ch[i], freq_only=cfg.freq_only_down[i]) for i in levels[:-1]
        )
        self.out_cross = nn.Conv2d(ch[0], ch[0], 1)
        self.norm_out = group_norm(ch[0])
        self.conv_out = zero_(nn.Conv2d(ch[0], 2, 3, padding=1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor, pyramid: list[torch.Tensor]) -> torch.Tensor:
        """Scaled noisy spectrogram x [B, 2, F, T], the noise conditioning [B, cond_channels]
        (`m2l.consistency.precond.noise_conditioning`) and the decoder's pyramid -> [B, 2, F, T]."""
        emb = self.noise_mlp(noise)
        s_in = self.scale_in(noise)[:, None, :, None]  # [B, 1, F, 1]
        s_out = self.scale_out(noise)[:, None, :, None]
        h = mul(self.conv_in(x), 1 + s_in)
        skips = []
        for i, (crosses, blocks) in enumerate(zip(self.down_cross, self.down_blocks, strict=True)):
            for cross, block in zip(crosses, blocks, strict=True):
                h = block(mix(cross(pyramid[i]), [h]), emb)
                skips.append(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        for i in reversed(range(len(self.up_blocks))):
            for cross, block in zip(self.up_cross[i], self.up_blocks[i], strict=True):
                h = block(mix(cross(pyramid[i]), [h, skips.pop()]), emb)
            if i > 0:
                h = self.ups[i - 1](h)
        h = mix(self.out_cross(pyramid[0]), [h])
        h = silu(self.norm_out(h))
        return self.conv_out(mul(h, 1 + s_out))


def mix(fresh: torch.Tensor, others: list[torch.Tensor]) -> torch.Tensor:
    """Variance-preserving sum (fresh + sum(others)) / sqrt(1 + len(others)), written into
    `fresh` at inference."""
    for other in others:
        fresh = add(fresh, other)
    return mul(fresh, 1 / math.sqrt(1 + len(others)))


class Music2Latent(nn.Module):
    """The whole v1 autoencoder: `encode` spectrogram -> latents, `denoise` with decoder features."""

    def __init__(self, cfg: V1Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.denoiser = Denoiser(UNet(cfg), cfg.consistency, cfg.cond_channels)

    @property
    def unet(self) -> UNet:
        return self.denoiser.net

    def encode(self, spec: torch.Tensor, features: bool = False) -> torch.Tensor:
        """[B, 2, F, T] -> raw latents [B, latent_dim, T / frames_per_latent] in (-1, 1)."""
        return self.encoder(spec, features=features)

    def decode_features(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Raw latents [B, latent_dim, T'] -> the decoder's pyramid (finest first)."""
        return self.decoder(latents)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, pyramid: list[torch.Tensor]) -> torch.Tensor:
        """Consistency function f(x, sigma | pyramid): [B, 2, F, T] -> [B, 2, F, T].

        `sigma` is [B] (or [B, 1], the trainer's one noise group per sample).
        """
        return self.denoiser(x, sigma.reshape(x.shape[0]), pyramid)

    # ------------------------------------------------------- the interface the trainer uses
    sigma_groups = 1  # noise levels per training sample
    audio_channels = 1  # v1 is mono: stereo is handled as two rows
    required_crop_frames: int | None = None  # any crop of whole latent frames

    def prepare(self, audio: torch.Tensor) -> torch.Tensor:
        """Training audio [B, 1, samples] -> clean spectrogram x0 [B, 2, F, T]."""
        return to_spectrogram(audio[:, 0], self.cfg.spectral)

    def conditioning(self, x0: torch.Tensor) -> list[torch.Tensor]:
        """Encoder + decoder features of the clean input (shared by student and teacher)."""
        return self.decoder(self.encoder(x0))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x0 + sigma * noise with sigma [B, 1]."""
        return x0 + sigma.reshape(-1, *(1,) * (x0.dim() - 1)).to(x0.dtype) * noise

    def group_view(self, x: torch.Tensor) -> torch.Tensor:
        """[B, ...] -> [B, sigma_groups, d] for the per-group loss."""
        return x.reshape(x.shape[0], 1, -1)

    def to_waveform(self, x: torch.Tensor) -> torch.Tensor:
        """Training spectrograms [B, 2, F, T] -> unclamped waveforms [B, samples] (for losses)."""
        return from_spectrogram(x, self.cfg.spectral, clamp=False)
