"""The codec API for Music2Latent2: chunked parallel encoding, autoregressive two-step decoding.

Framing is v1's with a chunk (chunk_frames STFT frames, 32,768 samples at the paper size) in
place of a latent frame: the clip gets `left_pad` samples before it and zeros after it up to
m * chunk + n_fft - hop samples for m chunks, and decoding cuts exactly the original samples out.

Latents: [rows, chunks, K, latent_dim]; a row is one audio channel for a mono model, or a whole
stereo clip for a stereo model (which encodes both channels jointly: mono input is duplicated to
both channels and the latent file remembers that one channel came in, so decoding gives mono back).

Decoding follows the paper: decoder features per chunk, chunk 0 from sigma_max noise alone; then
for each chunk t > 0 the first estimate of chunk t - 1, re-noised to `sigma_cond`, is the left
chunk and chunk t starts from sigma_max noise; one evaluation refines chunk t - 1 (its second
step) and produces chunk t. The chunk-causal mask makes the refinement of a left chunk independent
of the right one, so the last chunk gets its second step from one extra single-chunk evaluation.
With `steps` > 1 the new chunk is sampled with that many evaluations (Karras levels) while the
left chunk stays fixed. Noise is a deterministic function of (seed, row, chunk, step).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from m2l.audio.spectral import overlap_add_into, spectrogram_to_frames
from m2l.codec import Codec, checked_latents, keyed_randn
from m2l.consistency.schedule import karras_sigmas
from m2l.errors import M2LError
from m2l.formats import LatentFile

COND_STEP = 10_000  # noise stream of the re-noised left chunk


class Codec2(Codec):
    """Encode / decode with a Music2Latent2 model (same API as `Codec`, plus `sigma_cond`).

    Memory is bounded by `chunk_batch` chunks per encoder pass (`window_seconds` sets it in
    seconds) and by two chunks per decoder step, whatever the length of the audio.

    Attributes:
        sample_rate: the model's audio rate.
        hop_length: audio samples per chunk (K latents each).
        latent_rate: latent vectors per second (K per chunk).
        latent_dim: channels of a latent vector.
    """

    unit_name = "chunks"

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        model_id: str,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        batch_size: int = 4,
        chunk_batch: int = 16,
        window_seconds: float | None = None,
    ) -> None:
        self._place(model, model_id, device, dtype)
        cfg = self.cfg
        if window_seconds is not None:  # the CLI's --window: audio per encoder pass
            chunk_batch = max(1, round(window_seconds * cfg.spectral.sample_rate / cfg.samples_per_chunk))
        self.hop_length = cfg.samples_per_chunk
        self.latent_rate = cfg.num_latents * self.sample_rate / self.hop_length
        self.latent_dim = cfg.latent_dim
        self.default_left_pad = cfg.spectral.n_fft - cfg.spectral.hop_length
        self.batch_size = batch_size
        self.chunk_batch = chunk_batch

    # ----------------------------------------------------------------------------- encoding
    def _rows_of(self, wave: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """[..., channels, samples] -> model rows [R, audio_channels, samples] + the lead shape."""
        if wave.shape[-2] > 2:
            raise M2LError(f"audio has {wave.shape[-2]} channels; m2l takes mono or stereo")
        if self.cfg.audio_channels == 1:
            return wave.reshape(-1, 1, wave.shape[-1]), tuple(wave.shape[:-1])
        wave = wave.expand(*wave.shape[:-2], 2, wave.shape[-1])  # mono -> both channels
        return wave.reshape(-1, 2, wave.shape[-1]), (*wave.shape[:-2], 1)

    @torch.inference_mode()
    def encode(
        self,
        audio: object,
        sample_rate: int | None = None,
        features: bool = False,
        *,
        downmix: bool = False,
        left_pad: int | None = None,
    ) -> torch.Tensor:
        """Encode audio (a path, or an array [samples], [channels, samples] or batched).

        Returns:
            latents [rows, chunks, K, latent_dim] (rows = channels, or 1 for a stereo model),
            batched [batch, rows, chunks, K, latent_dim]; with `features`, the paper's MIR
            features [rows, K * dim] (summary embeddings before the last linear layer, stacked,
            averaged over chunks).
        """
        wave = self.load(audio, sample_rate, downmix=downmix)
        rows, lead = self._rows_of(wave)
        out = self.encode_rows(rows, features=features, left_pad=left_pad)
        return out.reshape(*lead, *out.shape[1:])

    def encode_rows(
        self, rows: torch.Tensor, *, features: bool = False, left_pad: int | None = None
    ) -> torch.Tensor:
        """[R, audio_channels, samples] -> latents [R, chunks, K, d] (or features [R, K * dim])."""
        rows, m = self._pad_rows(rows, left_pad)
        tail, frames = self.cfg.spectral.n_fft - self.cfg.spectral.hop_length, self.cfg.chunk_frames
        parts = []
        for c0 in range(0, m, self.chunk_batch):
            c1 = min(c0 + self.chunk_batch, m)
            seg = rows[..., c0 * self.hop_length : c1 * self.hop_length + tail].to(self.device)
            spec = self.model.spectrogram(seg).unflatten(-1, (c1 - c0, frames))  # [R, C, F, n, T]
            spec = spec.permute(0, 3, 1, 2, 4).flatten(0, 1).to(self.dtype)
            z = self.model.encode(spec, features=features).float().cpu()
            parts.append(z.unflatten(0, (rows.shape[0], c1 - c0)))
        z = torch.cat(parts, dim=1)  # [R, chunks, ...]
        return z.mean(1) if features else z / self.cfg.latent_scale

    def encode_file(
        self, audio: object, sample_rate: int | None = None, *, downmix: bool = False
    ) -> LatentFile:
        """Encode to a `LatentFile` (latents + everything needed to decode them faithfully)."""
        wave = self.load(audio, sample_rate, downmix=downmix)
        if wave.dim() != 2:
            raise M2LError("encode_file takes one clip [channels, samples], not a batch")
        rows, _ = self._rows_of(wave)
        return LatentFile(
            latents=self.encode_rows(rows),
            sample_rate=self.sample_rate,
            length=wave.shape[-1],
            model_id=self.model_id,
            config_hash=self.config_hash,
            latent_scale=self.cfg.latent_scale,
            left_pad=self.default_left_pad,
            kind="v2",
            extra={"audio_channels": int(wave.shape[0])},
        )

    # ----------------------------------------------------------------------------- decoding
    @torch.inference_mode()
    def decode(
        self,
        z: torch.Tensor | np.ndarray | LatentFile,
        steps: int = 1,
        seed: int | None = None,
        length: int | None = None,
        *,
        left_pad: int | None = None,
        allow_model_mismatch: bool = False,
        sigma_cond: float | None = None,
    ) -> torch.Tensor:
        """Decode latents to audio, chunk by chunk.

        Args:
            z: latents [rows, chunks, K, latent_dim] or batched, as `encode` returns, or a
                `LatentFile`.
            steps: evaluations per new chunk (1 = the paper's decoding).
            seed: makes decoding reproducible; a random seed if None.
            length: samples to return (the original length); all covered samples if None.
            left_pad: padding used at encoding time (the codec default if None).
            allow_model_mismatch: decode latents made with other weights of this architecture.
            sigma_cond: noise level of the re-noised previous chunk (0.4 if None, the paper's).

        Returns:
            [channels, samples] (or [batch, channels, samples]) float32 waveform on the CPU;
            a stereo model gives 2 channels, or 1 for a latent file made from mono audio.
        """
        mono_file = False
        if isinstance(z, LatentFile):
            self.check_latent_file(z, allow_model_mismatch)
            length = z.length if length is None else length
            mono_file = self.cfg.audio_channels == 2 and z.extra.get("audio_channels") == 1
            left_pad, z = z.left_pad, z.latents
        z = self._check_latents(z)
        sigma_cond = 0.4 if sigma_cond is None else float(sigma_cond)
        if not 0.0 <= sigma_cond <= self.cfg.consistency.sigma_max:
            raise M2LError(f"sigma_cond must be in [0, {self.cfg.consistency.sigma_max}], got {sigma_cond}")
        pad, length, seed = self._decode_span(z.shape[-3], steps, length, left_pad, seed)
        lead = z.shape[:-3]
        rows = z.reshape(-1, *z.shape[-3:]) * self.cfg.latent_scale
        wave = torch.cat(
            [
                self.decode_rows(rows[sl], steps=steps, seed=seed, sigma_cond=sigma_cond, first_row=sl.start)
                for sl in self._rows(rows.shape[0])
            ]
        )
        wave = wave[..., pad : pad + length]  # [R, audio_channels, length]
        if self.cfg.audio_channels == 1:
            return wave.reshape(*lead, length)
        if mono_file:
            wave = wave.mean(1, keepdim=True)
        return wave.reshape(*lead[:-1], lead[-1] * wave.shape[1], length)

    def decode_rows(
        self, rows: torch.Tensor, *, steps: int, seed: int, sigma_cond: float, first_row: int = 0
    ) -> torch.Tensor:
        """Raw latents [R, chunks, K, d] -> padded waveforms [R, audio_channels, samples]."""
        cc = self.cfg.consistency
        r, m = rows.shape[:2]
        out = torch.zeros(r * self.cfg.audio_channels, self._padded_length(m))
        levels = karras_sigmas(steps, cc).tolist()
        s_cond = max(sigma_cond, cc.sigma_min)
        cond_scale = math.sqrt(max(s_cond**2 - cc.sigma_min**2, 0.0))
        prev = prev_feat = None
        for t in range(m):
            feat = self.model.decode_features(rows[:, t].to(self.device, self.dtype))
            if prev is None:
                est, _ = self._sample(None, feat, levels, s_cond, seed, first_row, t)
            else:
                left = prev + cond_scale * self._noise(seed, first_row, r, t - 1, COND_STEP)
                both = [torch.stack(pair, dim=1).flatten(0, 1) for pair in zip(prev_feat, feat, strict=True)]
                est, refined = self._sample(left, both, levels, s_cond, seed, first_row, t)
                self._emit(out, refined, t - 1)
            prev, prev_feat = est, feat
        left = prev + cond_scale * self._noise(seed, first_row, r, m - 1, COND_STEP)
        sigma = torch.full((r, 1), s_cond, device=self.device)
        self._emit(out, self.model.denoise(left[:, None], sigma, prev_feat)[:, 0], m - 1)
        return out.clamp_(-1.0, 1.0).view(r, self.cfg.audio_channels, -1)

    def _sample(
        self,
        left: torch.Tensor | None,
        feats: list[torch.Tensor],
        levels: list[float],
        s_cond: float,
        seed: int,
        first_row: int,
        t: int,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sample chunk t (with the fixed left chunk, if any) -> (chunk t, refined left chunk).

        `feats` are the decoder features of chunk t, or of chunks (t - 1, t) interleaved per row.
        """
        r = feats[0].shape[0] // (1 if left is None else 2)
        x = self._noise(seed, first_row, r, t, 0) * levels[0]
        refined = None
        for i, level in enumerate(levels):
            sig = torch.full((r, 1), level, device=self.device)
            if left is None:
                est = self.model.denoise(x[:, None], sig, feats)[:, 0]
            else:
                sig = torch.cat((torch.full_like(sig, s_cond), sig), dim=1)
                pair = self.model.denoise(torch.stack((left, x), dim=1), sig, feats)
                refined, est = pair[:, 0], pair[:, 1]
            if i + 1 < len(levels):
                scale = math.sqrt(max(levels[i + 1] ** 2 - self.cfg.consistency.sigma_min**2, 0.0))
                x = est + scale * self._noise(seed, first_row, r, t, i + 1)
        return est, refined

    def _noise(self, seed: int, first_row: int, r: int, chunk: int, step: int) -> torch.Tensor:
        """Unit noise [R, C_in, F, chunk_frames] of one chunk, a function of (seed, row, chunk, step)."""
        shape = (2 * self.cfg.audio_channels, self.cfg.spectral.freq_bins, self.cfg.chunk_frames)
        noise = [keyed_randn(shape, seed, first_row + i, chunk, step) for i in range(r)]
        return torch.stack(noise).to(self.device, self.dtype)

    def _emit(self, out: torch.Tensor, chunk: torch.Tensor, t: int) -> None:
        """Overlap-add the frames of chunk t ([R, C_in, F, T]) into the waveforms."""
        spc = self.cfg.spectral
        spec = chunk.float().unflatten(1, (self.cfg.audio_channels, 2)).flatten(0, 1)
        frames = spectrogram_to_frames(spec, spc).cpu()
        overlap_add_into(out, frames, t * self.cfg.chunk_frames, spc.hop_length)

    # ----------------------------------------------------------------------------- checks
    def _check_latents(self, z: object) -> torch.Tensor:
        k, d = self.cfg.num_latents, self.latent_dim
        return checked_latents(
            z,
            lambda t: t.dim() in (4, 5) and tuple(t.shape[-2:]) == (k, d) and t.shape[-3] >= 1,
            f"[channels, chunks, {k}, {d}] or [batch, channels, chunks, {k}, {d}]",
        )
