"""The Music2Latent (v1) codec: `Codec1`, the v1 sibling of the `m2l.codec.Codec` interface.

Framing (see `m2l.codec`): the unit is one latent frame of `samples_per_unit` samples.

Windows. Long signals are processed in windows of `window` latents with `context` latents of
extra audio on each side; neighbouring windows are cross-faded linearly over `context` latents
around their boundary (latents when encoding, time frames when decoding), so memory is bounded by
the window size and seams are smooth.

Noise. Decoding noise is a deterministic function of (seed, row, absolute frame position, step),
drawn on the CPU in tiles of 64 frames: the same seed gives the same audio whatever the window
size, device or batch layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import torch

from m2l.audio.spectral import overlap_add_into, spectrogram_to_frames, to_spectrogram
from m2l.codec import Codec
from m2l.consistency.sampling import karras_sigmas, keyed_randn, sample_multistep
from m2l.framing import checked_int, checked_latents
from m2l.models.v1 import Music2Latent
from m2l.passes import EncodePass, EncodePlan

NOISE_TILE = 64  # frames per noise tile


@dataclass(frozen=True)
class Window:
    """Latents [start, stop) are produced by a pass over latents [lo, hi)."""

    start: int
    stop: int
    lo: int
    hi: int


def plan_windows(total: int, window: int, context: int) -> list[Window]:
    """Split `total` latents into windows of `window` latents with `context` on each side."""
    if total <= window + context:
        return [Window(0, total, 0, total)]
    out, start = [], 0
    while start < total:
        stop = min(start + window, total)
        if total - stop <= context:  # fold a short tail into this window
            stop = total
        out.append(Window(start, stop, max(start - context, 0), min(stop + context, total)))
        start = stop
    return out


def crossfade_weights(win: Window, total: int, ramp: int, scale: int = 1) -> torch.Tensor:
    """Weights over positions [lo, hi) * scale: 1 inside, linear ramps of 2 * ramp * scale
    centred on interior boundaries; the weights of neighbouring windows sum to 1."""
    pos = torch.arange(win.lo * scale, win.hi * scale, dtype=torch.float64) + 0.5
    w = torch.ones_like(pos)
    half = ramp * scale
    if win.start > 0:
        w = w * ((pos - (win.start * scale - half)) / (2 * half)).clamp(0, 1)
    if win.stop < total:
        w = w * (((win.stop * scale + half) - pos) / (2 * half)).clamp(0, 1)
    return w.float()


def tile_noise(seed: int, row: int, first: int, last: int, step: int, shape: tuple[int, int]) -> torch.Tensor:
    """Unit noise [shape..., last - first] for frames [first, last) of one row."""
    tiles = [
        keyed_randn((*shape, NOISE_TILE), seed, row, k, step)
        for k in range(first // NOISE_TILE, (last - 1) // NOISE_TILE + 1)
    ]
    noise = torch.cat(tiles, dim=-1)
    offset = (first // NOISE_TILE) * NOISE_TILE
    return noise[..., first - offset : last - offset]


@dataclass(frozen=True)
class WindowPiece:
    """The rows `rows` of window `index` (`window`): what one pass of the encoder or the decoder
    stacks, side by side with neighbouring pieces of its width on a GPU."""

    window: Window
    index: int
    rows: slice

    @property
    def key(self) -> tuple[int]:
        """Pieces of one width may share a pass."""
        return (self.window.hi - self.window.lo,)

    @property
    def items(self) -> int:
        """Rows of this piece (network inputs)."""
        return self.rows.stop - self.rows.start

    @property
    def units(self) -> int:
        """Latent frames of this piece over all its rows."""
        return self.items * (self.window.hi - self.window.lo)


class Codec1(Codec):
    """Encode / decode with a Music2Latent (v1) model (the `Codec` interface).

    Long signals are processed in windows of `window` latents with `context` latents of extra
    audio on each side, so memory is bounded by the window size whatever the length.

    Attributes:
        window: latents per window (at least 2 * context + 1).
        context: latents of context on each side of a window.
    """

    version = "v1"
    unit_name = "latent frames"
    progress_unit = "windows"
    latent_time_axis = -1
    latent_channel_axis = -2

    def __init__(
        self,
        model: Music2Latent,
        *,
        model_id: str,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        window_seconds: float = 10.0,
        context: int = 4,
        batch_size: int = 4,
        stereo: str | None = None,
    ) -> None:
        super().__init__(
            model, model_id=model_id, device=device, dtype=dtype, batch_size=batch_size, stereo=stereo
        )
        self.samples_per_unit = self.cfg.samples_per_latent
        self.latent_rate = self.sample_rate / self.samples_per_unit
        self.context = context
        self.window = max(int(round(window_seconds * self.latent_rate)), 2 * context + 1)

    @property
    def pass_units(self) -> int:
        """Latents one model pass covers at most (a full window with its context), whatever
        the number of rows (channels, clips) it is shared by."""
        return self.window + 2 * self.context

    def windows(self, total: int) -> list[Window]:
        """The windows that cover `total` latents."""
        return plan_windows(total, self.window, self.context)

    # ----------------------------------------------------------------------------- hooks
    def model_rows(self, wave: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """[..., channels, samples] -> one mono row per channel [R, samples] + the lead shape."""
        return wave.reshape(-1, wave.shape[-1]), tuple(wave.shape[:-1])

    def encode_rows(
        self, rows: torch.Tensor, *, features: bool = False, left_pad: int | None = None
    ) -> torch.Tensor:
        """[rows, samples] waveforms at the model rate -> latents [rows, dim, frames] (features
        [rows, feature_dim, frames]) on the CPU, window by window: the spectrogram of each window
        (with its context) through the encoder, cross-faded into place. On a GPU neighbouring
        windows of one width share a pass (up to `batch_units` latents and `batch_size` rows)."""
        rows, m = self.pad_rows(rows, left_pad)
        windows = self.windows(m)
        out = torch.zeros(rows.shape[0], self.output_dim(features), m)
        advance = self.progress_counter("encoding", len(windows))
        for batch in self.batches(self.pieces(rows.shape[0], windows)):
            encode = partial(
                self.encode_side_by_side,
                make_input=partial(self.window_input, rows),
                place=partial(self.place, out),
                features=features,
            )
            self.run_pieces(batch, encode)
            advance(sum(p.rows.stop == rows.shape[0] for p in batch))  # windows whose every row is done
        return out if features else out / self.cfg.latent_scale

    def encode_plan(
        self, rows: torch.Tensor, *, features: bool = False, left_pad: int | None = None
    ) -> EncodePlan:
        """`encode_rows` as encoder passes (one per piece) for `m2l.packing.encode_many`; the plan
        finishes to latents [rows, dim, frames] (features [rows, feature_dim, frames])."""
        rows, m = self.pad_rows(rows, left_pad)
        out = torch.zeros(rows.shape[0], self.output_dim(features), m)
        passes = [
            EncodePass(
                p.key,
                p.items,
                p.units,
                partial(self.window_input, rows, p),
                partial(self.place, out, p),
                int(p.rows.stop == rows.shape[0]),  # a window is done with its last rows
            )
            for p in self.pieces(rows.shape[0], self.windows(m))
        ]
        return EncodePlan(passes, lambda: out if features else out / self.cfg.latent_scale)

    def pieces(self, count: int, windows: list[Window]) -> list[WindowPiece]:
        """The pieces of `count` rows over `windows`: each window's rows in slices of about one
        window's worth of latents (`row_slices`)."""
        return [
            WindowPiece(win, k, sl)
            for k, win in enumerate(windows)
            for sl in self.row_slices(count, win.hi - win.lo, self.pass_units)
        ]

    def window_input(self, rows: torch.Tensor, piece: WindowPiece) -> torch.Tensor:
        """The encoder input of a piece: the spectrogram [items, 2, F, T] of its rows' padded
        audio over its window, on the codec's device and dtype."""
        win, tail = piece.window, self.cfg.spectral.n_fft - self.cfg.spectral.hop_length
        seg = rows[piece.rows, win.lo * self.samples_per_unit : win.hi * self.samples_per_unit + tail]
        return to_spectrogram(seg.to(self.device), self.cfg.spectral).to(self.dtype)

    def place(self, out: torch.Tensor, piece: WindowPiece, z: torch.Tensor) -> None:
        """Add the encoder's output for a piece [items, dim, width], cross-faded, into `out`
        [rows, dim, frames]."""
        weight = crossfade_weights(piece.window, out.shape[-1], self.context // 2 or 1)
        out[piece.rows, :, piece.window.lo : piece.window.hi] += z * weight

    def output_dim(self, features: bool) -> int:
        """Channels of the encoder's output: the latent dimension, or the pre-bottleneck features'."""
        return self.cfg.channels[-1] * self.cfg.bottom_freq if features else self.latent_dim

    @property
    def batch_units(self) -> int:
        """`batch_size` full windows (with their context) of one row each on a GPU; one on the
        CPU, where a batch of several windows is no faster than one after the other and holds
        more memory (BENCHMARKS.md, corpus encoding)."""
        return self.pass_units * (1 if self.device.type == "cpu" else self.batch_size)

    def decode_steps(
        self, rows: torch.Tensor, *, steps: int, seed: int, sigma_cond: float | None = None
    ) -> Iterator[tuple[torch.Tensor, int]]:
        """Raw latents [rows, dim, frames] -> full padded waveforms [rows, samples] on the CPU,
        window by window (on a GPU, neighbouring windows of one width side by side, up to
        `batch_units` latents and `batch_size` rows per pass): after each pass, the samples
        before the next pass's first window are final.

        Noise is a deterministic function of (seed, row, absolute frame position, step), drawn
        on the CPU in tiles of `NOISE_TILE` frames: the same seed gives the same audio whatever
        the window size, device or batch layout. `sigma_cond` must be None.
        """
        m, fpl, hop = rows.shape[-1], self.cfg.frames_per_latent, self.cfg.spectral.hop_length
        out = torch.zeros(rows.shape[0], self.padded_length(m))
        sigmas = karras_sigmas(steps, self.cfg.consistency).tolist()
        windows = self.windows(m)
        advance = self.progress_counter("decoding", len(windows))
        batches = self.batches(self.pieces(rows.shape[0], windows))  # each follows a lowered batch_size
        batch, done = next(batches, None), 0  # done: windows whose every row is decoded
        while batch is not None:
            self.run_pieces(batch, partial(self._decode_pass, rows, out, seed, sigmas))
            batch = next(batches, None)
            following = batch[0].index if batch is not None else len(windows)
            if following > done:
                advance(following - done)
                done = following
            later = windows[following].lo * fpl * hop if following < len(windows) else out.shape[-1]
            yield out, later

    def _decode_pass(
        self, rows: torch.Tensor, out: torch.Tensor, seed: int, sigmas: list[float], batch: list[WindowPiece]
    ) -> None:
        """Decode the pieces of one pass side by side and add their frames into `out`."""
        spc, fpl, m = self.cfg.spectral, self.cfg.frames_per_latent, rows.shape[-1]
        z = torch.cat([rows[p.rows, :, p.window.lo : p.window.hi] for p in batch])  # [items, dim, width]

        def noise(step: int) -> torch.Tensor:  # [items, 2, freq_bins, width * fpl]
            return torch.stack(
                [
                    tile_noise(seed, r, p.window.lo * fpl, p.window.hi * fpl, step, (2, spc.freq_bins))
                    for p in batch
                    for r in range(p.rows.start, p.rows.stop)
                ]
            ).to(self.device, self.dtype)

        with self.autocast():
            pyramid = self.model.decode_features(z.to(self.device, self.dtype))
            spec = sample_multistep(
                lambda x, s: self.model.denoise(x, s.to(self.dtype), pyramid),
                noise(0),
                self.cfg.consistency,
                sigmas=sigmas,
                noise_source=lambda i: noise(i + 1),
            )
        frames = spectrogram_to_frames(spec.float(), spc).cpu()
        start = 0
        for p in batch:
            weight = crossfade_weights(p.window, m, self.context // 2 or 1, scale=fpl)
            items = frames[start : start + p.items] * weight[None, :, None]
            overlap_add_into(out[p.rows], items, p.window.lo * fpl, spc.hop_length)
            start += p.items

    def output_waveform(
        self, wave: torch.Tensor, lead: tuple[int, ...], source_channels: int | None
    ) -> torch.Tensor:
        """[rows, length] -> [*lead, length] (one row per channel)."""
        return wave.reshape(*lead, wave.shape[-1])

    def check_latents(self, z: object) -> torch.Tensor:
        """Latents [channels, latent_dim, frames] or batched, checked (see `checked_latents`)."""
        d = self.latent_dim
        return checked_latents(
            z,
            lambda t: t.dim() in (3, 4) and t.shape[-2] == d and t.shape[-1] >= 1,
            f"[channels, {d}, frames] or [batch, channels, {d}, frames]",
        )

    def seam_units(self, units: int) -> list[int]:
        """Window starts after the first (none for audio shorter than one window)."""
        return [w.start for w in self.windows(units)[1:]]

    @property
    def seam_spacing(self) -> int:
        """Samples per window."""
        return int(self.window * self.samples_per_unit)

    def set_window_samples(self, samples: int) -> None:
        """Windows of `samples` // samples_per_unit latents (at least 2 * context + 1)."""
        per_unit = self.samples_per_unit
        self.window = max(checked_int(samples, "window samples", 1) // per_unit, 2 * self.context + 1)

    @staticmethod
    def clip_vector(out: torch.Tensor, *, features: bool) -> torch.Tensor:
        """[channels, dim, frames] -> [dim]: the mean over channels and frames."""
        return out.mean(dim=(0, 2))
