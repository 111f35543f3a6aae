"""The codec API: audio of any length <-> latents, in bounded memory.

Framing. A clip of N samples is padded with `left_pad` samples before it (default n_fft - hop, so
that every sample of the clip is covered by a full set of overlapping STFT frames) and zeros after
it up to m * hop_length + n_fft - hop samples, m = number of latents (at least 1). Decoding
overlap-adds the frames and cuts [left_pad, left_pad + N) back out. `left_pad=0` reproduces the
alignment of the authors' package (which crops instead of padding).

Windows. Long signals are processed in windows of `window` latents with `context` latents of
extra audio on each side; neighbouring windows are cross-faded linearly over `context` latents
around their boundary (latents when encoding, time frames when decoding), so memory is bounded by
the window size and seams are smooth.

Noise. Decoding noise is a deterministic function of (seed, row, absolute frame position, step),
drawn on the CPU in tiles of 64 frames: the same seed gives the same audio whatever the window
size, device or batch layout.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from m2l.audio.io import load_audio, to_waveform
from m2l.audio.spectral import overlap_add_into, spectrogram_to_frames, to_spectrogram
from m2l.config import config_hash
from m2l.consistency.sampling import sample_multistep
from m2l.consistency.schedule import karras_sigmas
from m2l.errors import M2LError
from m2l.formats import LatentFile
from m2l.models.v1 import Music2Latent

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


def keyed_randn(shape: tuple[int, ...], *key: int) -> torch.Tensor:
    """Unit Gaussian noise of `shape` that is a pure function of the integer `key`."""
    state = np.random.SeedSequence(list(key)).generate_state(2, dtype=np.uint32)
    gen = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return torch.randn(*shape, generator=gen)


def tile_noise(seed: int, row: int, first: int, last: int, step: int, shape: tuple[int, int]) -> torch.Tensor:
    """Unit noise [shape..., last - first] for frames [first, last) of one row."""
    tiles = [
        keyed_randn((*shape, NOISE_TILE), seed, row, k, step)
        for k in range(first // NOISE_TILE, (last - 1) // NOISE_TILE + 1)
    ]
    noise = torch.cat(tiles, dim=-1)
    offset = (first // NOISE_TILE) * NOISE_TILE
    return noise[..., first - offset : last - offset]


class Codec:
    """Encode audio to latents and decode latents to audio with a Music2Latent model.

    Attributes:
        sample_rate: the model's audio rate (inputs at other rates are resampled).
        hop_length: audio samples per latent vector.
        latent_rate: latent vectors per second.
        latent_dim: channels of a latent vector.
        model_id: identifies the weights (name@digest); stored in latent files.
    """

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
    ) -> None:
        cfg = model.cfg
        self._place(model, model_id, device, dtype)
        self.hop_length = cfg.samples_per_latent
        self.latent_rate = self.sample_rate / self.hop_length
        self.latent_dim = cfg.latent_dim
        self.default_left_pad = cfg.spectral.n_fft - cfg.spectral.hop_length
        self.context = context
        self.window = max(int(round(window_seconds * self.latent_rate)), 2 * context + 1)
        self.batch_size = batch_size

    unit_name = "latent frames"  # what one unit of `num_latents` is, for messages

    def _place(
        self,
        model: torch.nn.Module,
        model_id: str,
        device: str | torch.device | None,
        dtype: torch.dtype | None,
    ) -> None:
        """Move the model to its device/dtype for inference and record its identity."""
        self.cfg = model.cfg
        self.device = torch.device(device or _auto_device())
        self.dtype = dtype or torch.float32
        self.model = model.to(self.device, self.dtype).eval().requires_grad_(False)
        if self.device.type in ("cpu", "cuda"):
            # convolutions run without layout reorders (2x faster on CPU, see BENCHMARKS.md)
            self.model.to(memory_format=torch.channels_last)
        self.model_id = model_id
        self.config_hash = config_hash(model.cfg)
        self.sample_rate = model.cfg.spectral.sample_rate

    # ----------------------------------------------------------------------------- framing
    def num_latents(self, samples: int, left_pad: int | None = None) -> int:
        """Latent frames for a clip of `samples` samples."""
        pad = self.default_left_pad if left_pad is None else left_pad
        tail = self.cfg.spectral.n_fft - self.cfg.spectral.hop_length
        return max(1, -(-(samples + pad - tail) // self.hop_length))

    def _padded_length(self, latents: int) -> int:
        return latents * self.hop_length + self.cfg.spectral.n_fft - self.cfg.spectral.hop_length

    def _pad_rows(self, rows: torch.Tensor, left_pad: int | None) -> tuple[torch.Tensor, int]:
        """[..., samples] -> (float waveforms padded to whole units (latent frames for v1, chunks for
        v2) with `left_pad` samples in front, number of units)."""
        pad = self.default_left_pad if left_pad is None else left_pad
        m = self.num_latents(rows.shape[-1], pad)
        return torch.nn.functional.pad(rows.float(), (pad, self._padded_length(m) - pad - rows.shape[-1])), m

    def _decode_span(
        self, units: int, steps: int, length: int | None, left_pad: int | None, seed: int | None
    ) -> tuple[int, int, int]:
        """Check decoding options -> (left pad, output length, seed)."""
        if steps < 1:
            raise M2LError(f"steps must be >= 1, got {steps}")
        pad = self.default_left_pad if left_pad is None else left_pad
        available = self._padded_length(units) - pad
        length = available if length is None else length
        if not 1 <= length <= available:
            raise M2LError(
                f"length {length} is outside what {units} {self.unit_name} cover (1..{available} samples)"
            )
        return pad, length, secrets.randbits(63) if seed is None else int(seed)

    def _windows(self, total: int) -> list[Window]:
        return plan_windows(total, self.window, self.context)

    def _rows(self, count: int) -> Iterator[slice]:
        for i in range(0, count, self.batch_size):
            yield slice(i, min(i + self.batch_size, count))

    # ----------------------------------------------------------------------------- encoding
    def load(self, audio: object, sample_rate: int | None = None, *, downmix: bool = False) -> torch.Tensor:
        """Path or array -> float32 waveform at the model rate, [channels, samples] or batched."""
        if isinstance(audio, str | bytes) or hasattr(audio, "__fspath__"):
            if sample_rate is not None:
                raise M2LError(f"{audio}: sample_rate is read from the file; do not pass it")
            return load_audio(audio, self.sample_rate, downmix=downmix)[0]
        return to_waveform(audio, sample_rate, self.sample_rate, downmix=downmix)

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
        """Encode audio.

        Args:
            audio: a file path, or an array [samples], [channels, samples] or
                [batch, channels, samples] at `sample_rate` (the model rate if None).
            sample_rate: rate of an array input.
            features: return the encoder's pre-bottleneck features for MIR instead of latents.
            downmix: average more than 2 channels to mono instead of refusing them.
            left_pad: samples of padding before the audio (see module doc).

        Returns:
            [channels, latent_dim, frames] latents (divided by latent_scale, the authors' scale),
            or [batch, channels, latent_dim, frames] for batched input; features have
            [..., feature_dim, frames].
        """
        wave = self.load(audio, sample_rate, downmix=downmix)
        lead = wave.shape[:-1]
        out = self.encode_rows(wave.reshape(-1, wave.shape[-1]), features=features, left_pad=left_pad)
        return out.reshape(*lead, *out.shape[1:])

    def encode_rows(
        self, rows: torch.Tensor, *, features: bool = False, left_pad: int | None = None
    ) -> torch.Tensor:
        """[rows, samples] waveforms at the model rate -> [rows, dim, frames] on the CPU."""
        rows, m = self._pad_rows(rows, left_pad)
        out: torch.Tensor | None = None
        tail = self.cfg.spectral.n_fft - self.cfg.spectral.hop_length
        for win in self._windows(m):
            seg = rows[:, win.lo * self.hop_length : win.hi * self.hop_length + tail]
            weight = crossfade_weights(win, m, self.context // 2 or 1)
            for sl in self._rows(rows.shape[0]):
                spec = to_spectrogram(seg[sl].to(self.device), self.cfg.spectral)
                z = self.model.encode(spec.to(self.dtype), features=features).float().cpu()
                if out is None:
                    out = torch.zeros(rows.shape[0], z.shape[1], m)
                out[sl, :, win.lo : win.hi] += z * weight
        assert out is not None
        return out if features else out / self.cfg.latent_scale

    def encode_file(
        self, audio: object, sample_rate: int | None = None, *, downmix: bool = False
    ) -> LatentFile:
        """Encode to a `LatentFile` (latents + everything needed to decode them faithfully)."""
        wave = self.load(audio, sample_rate, downmix=downmix)
        if wave.dim() != 2:
            raise M2LError("encode_file takes one clip [channels, samples], not a batch")
        z = self.encode_rows(wave)
        return LatentFile(
            latents=z,
            sample_rate=self.sample_rate,
            length=wave.shape[-1],
            model_id=self.model_id,
            config_hash=self.config_hash,
            latent_scale=self.cfg.latent_scale,
            left_pad=self.default_left_pad,
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
        """Decode latents to audio.

        Args:
            z: latents [channels, latent_dim, frames] or [batch, channels, latent_dim, frames]
                (as returned by `encode`), or a `LatentFile` (its length and padding are used).
            steps: consistency steps (1 = single network evaluation).
            seed: makes decoding reproducible; a random seed if None.
            length: samples to return (the original length); all covered samples if None.
            left_pad: padding used at encoding time (the codec default if None).
            allow_model_mismatch: decode a latent file made with other weights of the same
                architecture instead of refusing.
            sigma_cond: v2 only (see `Codec2.decode`); must be None for v1 models.

        Returns:
            [channels, samples] or [batch, channels, samples] float32 waveform on the CPU.
        """
        if isinstance(z, LatentFile):
            self.check_latent_file(z, allow_model_mismatch)
            length = z.length if length is None else length
            left_pad, z = z.left_pad, z.latents
        if sigma_cond is not None:
            raise M2LError("sigma_cond applies to Music2Latent2 (v2) models only")
        z = self._check_latents(z)
        pad, length, seed = self._decode_span(z.shape[-1], steps, length, left_pad, seed)
        lead = z.shape[:-2]
        rows = z.reshape(-1, *z.shape[-2:]) * self.cfg.latent_scale
        wave = self.decode_rows(rows, steps=steps, seed=seed)
        return wave[:, pad : pad + length].reshape(*lead, length)

    def decode_rows(self, rows: torch.Tensor, *, steps: int, seed: int) -> torch.Tensor:
        """Raw latents [rows, dim, frames] -> full padded waveforms [rows, samples] on the CPU."""
        spc, fpl = self.cfg.spectral, self.cfg.frames_per_latent
        m = rows.shape[-1]
        out = torch.zeros(rows.shape[0], self._padded_length(m))
        sigmas = karras_sigmas(steps, self.cfg.consistency).tolist()
        for win in self._windows(m):
            weight = crossfade_weights(win, m, self.context // 2 or 1, scale=fpl)
            first, last = win.lo * fpl, win.hi * fpl
            for sl in self._rows(rows.shape[0]):
                ids = range(sl.start, sl.stop)

                def noise(step: int, ids: range = ids, first: int = first, last: int = last):
                    return torch.stack(
                        [tile_noise(seed, r, first, last, step, (2, spc.freq_bins)) for r in ids]
                    ).to(self.device, self.dtype)

                pyramid = self.model.decode_features(rows[sl, :, win.lo : win.hi].to(self.device, self.dtype))
                spec = sample_multistep(
                    lambda x, s, p=pyramid: self.model.denoise(x, s.to(self.dtype), p),
                    noise(0),
                    self.cfg.consistency,
                    sigmas=sigmas,
                    renoise=lambda i, f=noise: f(i + 1),
                )
                frames = spectrogram_to_frames(spec.float(), spc).cpu()
                overlap_add_into(out[sl], frames * weight[None, :, None], first, spc.hop_length)
        return out.clamp_(-1.0, 1.0)

    # ----------------------------------------------------------------------------- checks
    def _check_latents(self, z: object) -> torch.Tensor:
        d = self.latent_dim
        return checked_latents(
            z,
            lambda t: t.dim() in (3, 4) and t.shape[-2] == d and t.shape[-1] >= 1,
            f"[channels, {d}, frames] or [batch, channels, {d}, frames]",
        )

    def check_latent_file(self, lf: LatentFile, allow_model_mismatch: bool = False) -> None:
        """Refuse latents made by another architecture (or other weights, unless allowed)."""
        if lf.config_hash != self.config_hash or lf.latent_scale != self.cfg.latent_scale:
            raise M2LError(
                f"latents were made by model {lf.model_id} (config {lf.config_hash}), "
                f"incompatible with {self.model_id} (config {self.config_hash})"
            )
        if lf.model_id != self.model_id and not allow_model_mismatch:
            raise M2LError(
                f"latents were made by {lf.model_id}, not {self.model_id}; pass "
                f"--allow-model-mismatch to decode them anyway"
            )


def checked_latents(z: object, shape_ok: Callable[[torch.Tensor], bool], expected: str) -> torch.Tensor:
    """A float32 CPU tensor from a tensor or array, or a one-line error (shape, dtype, NaN/Inf)."""
    if isinstance(z, np.ndarray):
        z = torch.from_numpy(np.ascontiguousarray(z))
    if not isinstance(z, torch.Tensor):
        raise M2LError(f"latents: expected a tensor or array, got {type(z).__name__}")
    if not shape_ok(z):
        raise M2LError(f"latents: expected shape {expected}, got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise M2LError(f"latents: expected floating point values, got {z.dtype}")
    z = z.detach().float().cpu()
    if not torch.isfinite(z).all():
        raise M2LError("latents: contain NaN or Inf")
    return z


def _auto_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
