"""The Music2Latent2 (v2) codec: `Codec2`, the v2 sibling of the `m2l.codec.Codec` interface.

Chunked parallel encoding, autoregressive two-step decoding. Framing (see `m2l.codec`) has a
chunk (chunk_frames STFT frames, 32,768 samples at the paper size) as its unit: the clip gets
`left_pad` samples before it and zeros after it up to m * chunk + n_fft - hop samples for m
chunks, and decoding cuts exactly the original samples out.

Latents: [rows, chunks, K, latent_dim]; a row is one audio channel for a mono model, or a whole
stereo clip for a stereo model (which encodes both channels jointly: mono input is duplicated to
both channels and the latent file remembers that one channel came in, so decoding gives mono back).

Decoding follows the paper: decoder features per chunk, chunk 0 from sigma_max noise alone; then
for each chunk t > 0 the first estimate of chunk t - 1, re-noised to `sigma_cond`, is the left
chunk and chunk t starts from sigma_max noise; one evaluation refines chunk t - 1 (its second
step) and produces chunk t. The chunk-causal mask makes the refinement of a left chunk independent
of the right one, so the last chunk gets its second step from one extra single-chunk evaluation.
With `steps` > 1 the new chunk is sampled with that many evaluations (Karras levels) while the
left chunk stays fixed (`m2l.consistency.sampling.sample_with_context`). Noise is a
deterministic function of (seed, row, chunk, step).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from m2l.audio.spectral import overlap_add_into, spectrogram_to_frames
from m2l.codec import Codec, finished
from m2l.consistency.sampling import karras_sigmas, keyed_randn, renoise, sample_with_context
from m2l.errors import M2LError
from m2l.framing import checked_int, checked_latents
from m2l.passes import EncodePass, EncodePlan

COND_STEP = 10_000  # noise stream of the re-noised left chunk


@dataclass(frozen=True)
class ChunkGroup:
    """Chunks [first, stop) of all `rows` rows: what one encoder pass takes."""

    first: int
    stop: int
    rows: int

    @property
    def chunks(self) -> int:
        """Chunks of each row."""
        return self.stop - self.first

    @property
    def key(self) -> tuple[()]:
        """Chunks have one shape: every group may share a pass."""
        return ()

    @property
    def items(self) -> int:
        """Encoder inputs (one per chunk and row)."""
        return self.rows * self.chunks

    @property
    def units(self) -> int:
        """Chunks over all rows."""
        return self.items


class Codec2(Codec):
    """Encode / decode with a Music2Latent2 model (the `Codec` interface, plus `sigma_cond`).

    Memory is bounded by `chunk_batch` chunks per encoder pass (`window_seconds` sets it in
    seconds) and by two chunks per decoder step, whatever the length of the audio.

    Attributes:
        samples_per_unit: audio samples per chunk (K latents each).
        latent_rate: latent vectors per second (K per chunk).
        chunk_batch: chunks per encoder pass.
    """

    version = "v2"
    unit_name = "chunks"
    progress_unit = "chunks"
    latent_time_axis = -3
    latent_channel_axis = -1
    default_sigma_cond = 0.4  # the paper's

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
        stereo: str | None = None,
    ) -> None:
        super().__init__(
            model, model_id=model_id, device=device, dtype=dtype, batch_size=batch_size, stereo=stereo
        )
        cfg = self.cfg
        if window_seconds is not None:  # the CLI's --window: audio per encoder pass
            chunk_batch = max(1, round(window_seconds * cfg.spectral.sample_rate / cfg.samples_per_chunk))
        self.samples_per_unit = cfg.samples_per_chunk
        self.latent_rate = cfg.num_latents * self.sample_rate / self.samples_per_unit
        self.chunk_batch = chunk_batch

    # ----------------------------------------------------------------------------- encoding
    def model_rows(self, wave: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """[..., channels, samples] -> model rows [R, audio_channels, samples] + the lead shape."""
        if wave.shape[-2] > 2:
            raise M2LError(f"audio has {wave.shape[-2]} channels; m2l takes mono or stereo")
        if self.cfg.audio_channels == 1:
            return wave.reshape(-1, 1, wave.shape[-1]), tuple(wave.shape[:-1])
        wave = wave.expand(*wave.shape[:-2], 2, wave.shape[-1])  # mono -> both channels
        return wave.reshape(-1, 2, wave.shape[-1]), (*wave.shape[:-2], 1)

    def encode_rows(
        self, rows: torch.Tensor, *, features: bool = False, left_pad: int | None = None
    ) -> torch.Tensor:
        """[R, audio_channels, samples] at the model rate -> latents [R, chunks, K, d] (features
        [R, K * dim], averaged over chunks) on the CPU: the chunks, a group of about `chunk_batch`
        at a time (of all rows), through the encoder."""
        rows, m = self.pad_rows(rows, left_pad)
        parts: dict[int, torch.Tensor] = {}  # first chunk of a group -> its outputs [R, n, ...]
        advance = self.progress_counter("encoding", m)
        for batch in self.batches(self.chunk_groups(rows.shape[0], m)):
            encode = partial(
                self.encode_side_by_side,
                make_input=partial(self.chunk_input, rows),
                place=partial(self.place, parts),
                features=features,
            )
            self.run_pieces(batch, encode)
            advance(sum(group.chunks for group in batch))
        return self.joined(parts, features)

    def encode_plan(
        self, rows: torch.Tensor, *, features: bool = False, left_pad: int | None = None
    ) -> EncodePlan:
        """`encode_rows` as encoder passes (one per group of chunks) for
        `m2l.packing.encode_many`; the plan finishes to latents [R, chunks, K, d] (or features
        [R, K * dim])."""
        rows, m = self.pad_rows(rows, left_pad)
        parts: dict[int, torch.Tensor] = {}
        passes = [
            EncodePass(
                g.key,
                g.items,
                g.units,
                partial(self.chunk_input, rows, g),
                partial(self.place, parts, g),
                g.chunks,
            )
            for g in self.chunk_groups(rows.shape[0], m)
        ]
        return EncodePlan(passes, partial(self.joined, parts, features))

    def chunk_groups(self, count: int, chunks: int) -> list[ChunkGroup]:
        """The groups of chunks one encoder pass takes: `chunk_batch` chunks' worth of inputs over
        all `count` rows (a stereo file's two rows take half as many chunks each)."""
        per_pass = max(1, self.chunk_batch // count)
        return [ChunkGroup(c0, min(c0 + per_pass, chunks), count) for c0 in range(0, chunks, per_pass)]

    def chunk_input(self, rows: torch.Tensor, group: ChunkGroup) -> torch.Tensor:
        """The encoder input of a group: the spectrogram of each row's chunks, chunk by chunk
        [rows * n, C_in, F, chunk_frames], on the codec's device and dtype."""
        tail = self.cfg.spectral.n_fft - self.cfg.spectral.hop_length
        seg = rows[..., group.first * self.samples_per_unit : group.stop * self.samples_per_unit + tail]
        spec = self.model.spectrogram(seg.to(self.device)).unflatten(
            -1, (group.chunks, self.cfg.chunk_frames)
        )
        return spec.permute(0, 3, 1, 2, 4).flatten(0, 1).to(self.dtype)  # [R, C, F, n, T] -> [R * n, ...]

    @staticmethod
    def place(parts: dict[int, torch.Tensor], group: ChunkGroup, z: torch.Tensor) -> None:
        """Keep the encoder's output for a group [rows * n, ...] as [rows, n, ...]."""
        parts[group.first] = z.unflatten(0, (group.rows, group.chunks))

    def joined(self, parts: dict[int, torch.Tensor], features: bool) -> torch.Tensor:
        """The groups' outputs in chunk order: latents [R, chunks, K, d] (divided by
        latent_scale), or features averaged over chunks [R, K * dim]."""
        z = torch.cat([parts[c] for c in sorted(parts)], dim=1)
        return z.mean(1) if features else z / self.cfg.latent_scale

    @property
    def batch_units(self) -> int:
        """`chunk_batch` chunks (what one pass of a mono clip holds)."""
        return self.chunk_batch

    def file_extra(self, wave: torch.Tensor) -> dict[str, Any]:
        """The channel count of the audio (a stereo model decodes mono audio back to mono)."""
        return {"audio_channels": int(wave.shape[0])}

    # ----------------------------------------------------------------------------- decoding
    def check_sigma_cond(self, sigma_cond: float | None) -> float:
        """The context noise level: `default_sigma_cond` if None, else within [0, sigma_max]."""
        sigma_cond = self.default_sigma_cond if sigma_cond is None else float(sigma_cond)
        if not 0.0 <= sigma_cond <= self.cfg.consistency.sigma_max:
            raise M2LError(f"sigma_cond must be in [0, {self.cfg.consistency.sigma_max}], got {sigma_cond}")
        return sigma_cond

    def decode_steps(
        self, rows: torch.Tensor, *, steps: int, seed: int, sigma_cond: float | None = None
    ) -> Iterator[tuple[torch.Tensor, int]]:
        """Raw latents [R, chunks, K, d] -> padded waveforms [R, audio_channels, samples]. Rows
        that fit one batch (`batch_size`) are decoded side by side and reported chunk by chunk;
        more rows are decoded batch after batch and reported once, at the end (progress counts
        chunks times rows). Rows that run out of device memory are decoded in halves (the same
        audio: noise is keyed by row), with `batch_size` lowered (`halving_on_oom`)."""
        sigma = self.check_sigma_cond(sigma_cond)
        advance = self.progress_counter("decoding", rows.shape[0] * rows.shape[1])
        options = {"steps": steps, "seed": seed, "sigma_cond": sigma, "on_chunk": advance}
        limit = self.batch_size
        if rows.shape[0] <= self.batch_size:  # one batch: streamed, once its first chunk is done
            stream = self._started(rows, options)
            if stream is not None:
                yield from stream
                return
            if rows.shape[0] == 1:
                raise self.one_row_error()
            limit = self.lower_batch_size(rows.shape[0], rows.shape[0] // 2)
        whole = self._rows_in_parts(rows, options, limit)
        yield whole, whole.shape[-1]

    def _started(
        self, rows: torch.Tensor, options: dict[str, Any]
    ) -> Iterator[tuple[torch.Tensor, int]] | None:
        """`batch_steps` of these rows with its first chunk done, or None when that ran out of
        device memory (a decoder step's memory does not grow after the first pair of chunks)."""
        stream = self.batch_steps(rows, **options)
        try:
            first = next(stream)
        except torch.OutOfMemoryError:
            return None
        return itertools.chain([first], stream)

    def _rows_in_parts(self, rows: torch.Tensor, options: dict[str, Any], limit: int) -> torch.Tensor:
        """Rows decoded to the end, at most `limit` side by side, in halves while they run out of
        device memory (`halving_on_oom`)."""
        parts: list[torch.Tensor] = []

        def run(part: slice) -> None:
            parts.append(finished(self.batch_steps(rows[part], first_row=part.start, **options)))

        self.halving_on_oom([1] * rows.shape[0], run, lambda _: self.one_row_error(), limit)
        return torch.cat(parts)

    def one_row_error(self) -> M2LError:
        """The one-line error for one row whose decoding does not fit in device memory."""
        return M2LError(
            f"out of {self.device} memory for one row of decoding (two chunks per step); "
            "decode on a device with more memory, or on the CPU (--device cpu)"
        )

    def batch_steps(
        self,
        rows: torch.Tensor,
        *,
        steps: int,
        seed: int,
        sigma_cond: float,
        first_row: int = 0,
        on_chunk: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[torch.Tensor, int]]:
        """Raw latents [R, chunks, K, d] of rows first_row.. -> waveforms [R, audio_channels,
        samples], chunk after chunk: yields (the waveforms, how many leading samples are final)
        as each chunk is finished, when `on_chunk(R)` is also called (R chunks more are done)."""
        cc = self.cfg.consistency
        r, m = rows.shape[:2]
        out = torch.zeros(r * self.cfg.audio_channels, self.padded_length(m))
        view = out.view(r, self.cfg.audio_channels, -1)
        levels = karras_sigmas(steps, cc).tolist()
        s_cond = max(sigma_cond, cc.sigma_min)
        prev = prev_feat = None
        for t in range(m):
            with self.autocast():
                feat = self.model.decode_features(rows[:, t].to(self.device, self.dtype))
            if prev is None:
                est, _ = self._sample(None, feat, levels, s_cond, seed, first_row, t)
            else:
                left = renoise(prev, self._noise(seed, first_row, r, t - 1, COND_STEP), s_cond, cc.sigma_min)
                both = [torch.stack(pair, dim=1).flatten(0, 1) for pair in zip(prev_feat, feat, strict=True)]
                est, refined = self._sample(left, both, levels, s_cond, seed, first_row, t)
                self._emit(out, refined, t - 1)
                if on_chunk is not None:
                    on_chunk(r)
                yield view, t * self.cfg.chunk_frames * self.cfg.spectral.hop_length  # chunk t starts there
            prev, prev_feat = est, feat
        left = renoise(prev, self._noise(seed, first_row, r, m - 1, COND_STEP), s_cond, cc.sigma_min)
        sigma = torch.full((r, 1), s_cond, device=self.device)
        with self.autocast():
            last = self.model.denoise(left[:, None], sigma, prev_feat)[:, 0]
        self._emit(out, last, m - 1)
        if on_chunk is not None:
            on_chunk(r)
        yield view, out.shape[-1]

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
        with self.autocast():
            return sample_with_context(
                lambda x, s: self.model.denoise(x, s, feats),
                self._noise(seed, first_row, r, t, 0),
                self.cfg.consistency,
                sigmas=levels,
                noise_source=lambda i: self._noise(seed, first_row, r, t, i + 1),
                context=left,
                context_sigma=s_cond,
            )

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

    def output_waveform(
        self, wave: torch.Tensor, lead: tuple[int, ...], source_channels: int | None
    ) -> torch.Tensor:
        """[R, audio_channels, length] -> [*lead, length] for a mono model; a stereo model gives
        [*lead[:-1], 2, length], or 1 channel for audio that came in mono."""
        length = wave.shape[-1]
        if self.cfg.audio_channels == 1:
            return wave.reshape(*lead, length)
        if source_channels == 1:
            wave = wave.mean(1, keepdim=True)
        return wave.reshape(*lead[:-1], lead[-1] * wave.shape[1], length)

    # ----------------------------------------------------------------------------- layout
    def check_latents(self, z: object) -> torch.Tensor:
        """Latents [rows, chunks, K, latent_dim] or batched, checked (see `checked_latents`)."""
        k, d = self.cfg.num_latents, self.latent_dim
        return checked_latents(
            z,
            lambda t: t.dim() in (4, 5) and tuple(t.shape[-2:]) == (k, d) and t.shape[-3] >= 1,
            f"[channels, chunks, {k}, {d}] or [batch, channels, chunks, {k}, {d}]",
        )

    def seam_units(self, units: int) -> list[int]:
        """Every chunk start after the first (chunks are encoded apart, decoded one by one)."""
        return list(range(1, units))

    @property
    def seam_spacing(self) -> int:
        """Samples per chunk."""
        return int(self.samples_per_unit)

    def set_window_samples(self, samples: int) -> None:
        """Encoder passes of `samples` // samples_per_unit chunks (at least 1); decoding always
        works on two chunks at a time."""
        self.chunk_batch = max(checked_int(samples, "window samples", 1) // self.samples_per_unit, 1)

    @staticmethod
    def clip_vector(out: torch.Tensor, *, features: bool) -> torch.Tensor:
        """Features [rows, K * dim] -> their mean over rows; latents [rows, chunks, K, dim] ->
        the mean over rows and chunks, flattened to [K * dim]."""
        return out.mean(0) if features else out.mean(dim=(0, 1)).flatten()
