"""The codec interface: audio of any length <-> latents, in bounded memory.

`Codec` is what `m2l.load` returns: the public methods (`load`, `encode`, `encode_file`,
`decode`, `check_latent_file`) with autograd off, device/dtype placement and the framing. Two
siblings implement its hooks (how audio becomes model rows, how rows are encoded and decoded,
the latent layout, where seams fall):

- `m2l.codec_v1.Codec1`: Music2Latent (v1), latents [channels, latent_dim, frames], long audio in
  cross-faded windows of latents;
- `m2l.codec_v2.Codec2`: Music2Latent2 (v2), latents [rows, chunks, K, latent_dim], chunks
  encoded in parallel and decoded autoregressively.

Stereo. A model that codes each channel apart (v1, mono v2) decodes each with its own noise, so
two channels that were alike would come back unlike (a centred voice wide and phasey, dual mono
decorrelated). So a stereo pair is coded as mid M = (L + R) / 2 and side S = (L - R) / 2 by
default (`to_mid_side`): what the channels share is decoded once, in M, and only their
difference, quiet for most music and silent for dual mono, carries its own noise; L = M + S and
R = M - S afterwards (`from_mid_side`). Stereo mode "lr" codes left/right, as the authors do.

`isinstance(codec, m2l.Codec)` holds for both; `codec.version` ("v1" / "v2", the config's kind)
tells them apart where it matters, which should be rarely: prefer the attributes and hooks.

Framing (padding, units, row batches, seams, progress counting, out-of-memory halving) is
`m2l.framing.Framing`'s, which `Codec` inherits (its unit: see the `Codec` docstring). One clip
is encoded by the sibling's `encode_rows`, a plain loop over its windows or chunks; `encode_plan`
gives the same work as passes that `m2l.packing.encode_many` batches with other clips'.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from m2l.audio.io import checked_stereo_mode, from_mid_side, load_audio, resample, to_mid_side, to_waveform
from m2l.config import config_hash
from m2l.errors import M2LError
from m2l.formats import LatentFile
from m2l.framing import Batchable, Framing, Progress, auto_device, checked_flag, checked_int
from m2l.passes import EncodePlan

MODEL_MISMATCH_MESSAGE = (
    "latents were made by {made_by}, not {model_id}; to decode them anyway pass "
    "allow_model_mismatch=True (on the command line: --allow-model-mismatch)"
)
"""The one wording for "a latent file made with other weights of the same architecture"."""


@dataclass(frozen=True)
class DecodePlan:
    """`decode`'s checked arguments: model rows [R, ...] (times latent_scale), the lead shape
    they reshape to, and the span of the padded waveform to return."""

    rows: torch.Tensor
    lead: tuple[int, ...]
    source_channels: int | None
    pad: int
    length: int
    steps: int
    seed: int
    sigma_cond: float | None
    stereo: str = "lr"


def finished(progressive: Iterator[tuple[torch.Tensor, int]]) -> torch.Tensor:
    """The waveforms of the last step of a `Codec.decode_steps` iterator (all samples final)."""
    last = deque(progressive, maxlen=1)
    assert last, "decode_steps yielded nothing"
    return last[0][0]


class Codec(Framing):
    """Encode audio to latents and decode latents to audio (the interface of v1 and v2 codecs).

    Units. A codec frames audio in units, the steps along the latents' time axis
    (`latent_time_axis`): a unit is one latent frame for v1 (one latent vector per channel;
    `cfg.frames_per_latent` STFT hops, 4096 samples at the paper size) and one chunk for v2
    (`cfg.num_latents` = K latent vectors; `cfg.chunk_frames` STFT hops, 32,768 samples at the
    paper size). A clip of N samples has `num_units(N)` units of `samples_per_unit` samples each
    (not the STFT hop, `cfg.spectral.hop_length`). The former names of these two, `num_latents`
    and `hop_length`, still work with a `DeprecationWarning`.

    Class attributes (the latent layout and capabilities of a sibling):
        version: "v1" or "v2", the kind of the model config.
        unit_name: what one framing unit is ("latent frames", "chunks"), for messages.
        latent_time_axis: the axis of a latent tensor that runs over units (negative).
        latent_channel_axis: the axis of a latent tensor that holds one latent vector's channels.
        default_sigma_cond: the decoder's default context noise level, None for a decoder that
            takes no `sigma_cond` (v1).
        progress_unit: what one progress report counts ("windows" for v1, "chunks" for v2).

    Attributes:
        sample_rate: the model's audio rate (inputs at other rates are resampled).
        samples_per_unit: audio samples per unit.
        latent_rate: latent vectors per second.
        latent_dim: channels of a latent vector.
        model_id: identifies the weights (name@digest); stored in latent files.
        config_hash: identifies the architecture; stored in latent files.
        default_left_pad: samples of padding before the audio unless told otherwise.
        batch_size: rows per model pass.
        precision: None (the default: the networks run in `dtype`), or torch.bfloat16 /
            torch.float16: the encoder and decoder run under autocast to it (latents and
            audio stay float32).
        progress: None (the default: silent), or a `Progress` callback that hears how far one
            `encode`/`encode_file`/`decode` call is: `progress(task, done, total)` with task
            "encoding" or "decoding", first with done = 0, then after every window (v1) or chunk
            (v2) of work, the last time with done = total (`m2l.packing.encode_many` reports
            its oldest clip in flight the same way, one clip after the other). The command line
            sets it to draw a progress bar; the models never print.
    """

    version: ClassVar[str]
    unit_name: ClassVar[str]
    latent_time_axis: ClassVar[int]
    latent_channel_axis: ClassVar[int]
    default_sigma_cond: ClassVar[float | None] = None
    progress_unit: ClassVar[str]
    samples_per_unit: int
    latent_rate: float

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        model_id: str,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        batch_size: int = 4,
        stereo: str | None = None,
    ) -> None:
        """Move `model` to its device/dtype for inference and record its identity.

        Args:
            model: a v1 or v2 model (`m2l.models`) with its `cfg`; frozen and put in eval mode.
            model_id: identifies the weights (stored in latent files).
            device: "cpu", "cuda", "mps"...; the best available if None.
            dtype: compute dtype (float32 if None).
            batch_size: rows per model pass.
            stereo: how a model that codes channels apart carries a stereo pair, "ms" (mid/side,
                its default) or "lr" (see the module doc); a joint-stereo model takes "lr" only.
        """
        self.cfg = model.cfg
        self.device = torch.device(device or auto_device())
        self.dtype = dtype or torch.float32
        self.model = model.to(self.device, self.dtype).eval().requires_grad_(False)
        if self.device.type in ("cpu", "cuda"):
            # convolutions run without layout reorders (2x faster on CPU, see BENCHMARKS.md)
            self.model.to(memory_format=torch.channels_last)
        self.model_id = model_id
        self.source = ""  # set by `m2l.load`: the source that loads this model again
        self.config_hash = config_hash(model.cfg)
        self.sample_rate = model.cfg.spectral.sample_rate
        self.latent_dim = model.cfg.latent_dim
        self.default_left_pad = self.cfg.spectral.n_fft - self.cfg.spectral.hop_length
        self.batch_size = checked_int(batch_size, "batch_size", 1)
        self.progress: Progress | None = None
        self.precision: torch.dtype | None = None
        self.stereo = self.checked_stereo(stereo, model.audio_channels)

    # ----------------------------------------------------------------------------- public API
    def load_audio(
        self, audio: object, sample_rate: int | None = None, *, downmix: bool = False
    ) -> torch.Tensor:
        """Path or array -> float32 waveform at the model rate, [channels, samples] or batched."""
        return self.load_audio_and_rate(audio, sample_rate, downmix=downmix)[0]

    def load_audio_and_rate(
        self, audio: object, sample_rate: int | None = None, *, downmix: bool = False
    ) -> tuple[torch.Tensor, int]:
        """`load_audio`, and the rate the audio came at (the file's, `sample_rate`, or the
        model rate for an array without one)."""
        if isinstance(audio, str | bytes) or hasattr(audio, "__fspath__"):
            if sample_rate is not None:
                raise M2LError(f"{audio}: sample_rate is read from the file; do not pass it")
            wave, rate = load_audio(audio, downmix=downmix)
            return resample(wave, rate, self.sample_rate), rate
        wave = to_waveform(audio, sample_rate, self.sample_rate, downmix=downmix)
        return wave, self.sample_rate if sample_rate is None else int(sample_rate)

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
            features: return the encoder's features for MIR instead of latents.
            downmix: average more than 2 channels to mono instead of refusing them.
            left_pad: samples of padding before the audio (see module doc).

        Returns:
            Latents (divided by latent_scale), batched as the input: v1 [channels, latent_dim,
            frames]; v2 [rows, chunks, K, latent_dim], rows = channels, or 1 for a stereo model.
            Features: v1 [channels, feature_dim, frames] (pre-bottleneck); v2 [rows, K * dim]
            (summary embeddings before the last linear layer, averaged over chunks).
        """
        features, left_pad = checked_flag(features, "features"), self.checked_left_pad(left_pad)
        wave = self.load_audio(audio, sample_rate, downmix=checked_flag(downmix, "downmix"))
        rows, lead = self.model_rows(wave if features else self.coded_channels(wave))
        out = self.encode_rows(rows, features=features, left_pad=left_pad)
        return out.reshape(*lead, *out.shape[1:])

    @torch.inference_mode()
    def encode_file(
        self,
        audio: object,
        sample_rate: int | None = None,
        *,
        downmix: bool = False,
        source_sample_rate: int | None = None,
    ) -> LatentFile:
        """Encode to a `LatentFile` (latents + everything needed to decode them faithfully).

        Args:
            audio: a file path, or an array [samples] or [channels, samples] at `sample_rate`.
            sample_rate: rate of an array input (the model rate if None).
            downmix: average more than 2 channels to mono instead of refusing them.
            source_sample_rate: the rate the audio had before someone resampled it to
                `sample_rate` (recorded instead of `sample_rate`).

        Returns:
            The latents with their length, padding and model, and in `extra` the rate of the
            audio given (`source_sample_rate`, for decoding back to it).
        """
        wave, rate = self.load_audio_and_rate(audio, sample_rate, downmix=checked_flag(downmix, "downmix"))
        if source_sample_rate is not None:
            rate = checked_int(source_sample_rate, "source_sample_rate", 1)
        rows, _ = self.model_rows(self.coded_channels(self.checked_clip(wave)))
        return self.latent_file(wave, self.encode_rows(rows), rate)

    def checked_clip(self, wave: torch.Tensor) -> torch.Tensor:
        """`wave` if it is one clip [channels, samples], else a one-line M2LError."""
        if wave.dim() != 2:
            raise M2LError("encode_file takes one clip [channels, samples], not a batch")
        return wave

    def latent_file(self, wave: torch.Tensor, latents: torch.Tensor, source_rate: int) -> LatentFile:
        """The `LatentFile` of `latents` encoded from `wave` [channels, samples] at the model
        rate, which came from audio at `source_rate`."""
        return LatentFile(
            latents=latents,
            sample_rate=self.sample_rate,
            length=wave.shape[-1],
            model_id=self.model_id,
            config_hash=self.config_hash,
            latent_scale=self.cfg.latent_scale,
            left_pad=self.default_left_pad,
            kind=self.version,
            extra={**self.file_extra(wave), **self.stereo_extra(wave), "source_sample_rate": source_rate},
            model_source=self.source,
        )

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
            z: latents as `encode` returns them (batched or not), or a `LatentFile` (its length
                and padding are used).
            steps: consistency steps (v1: network evaluations; v2: evaluations per new chunk).
            seed: makes decoding reproducible; a random seed if None.
            length: samples to return (the original length); all covered samples if None.
            left_pad: padding used at encoding time (the codec default if None).
            allow_model_mismatch: decode a latent file made with other weights of the same
                architecture instead of refusing.
            sigma_cond: v2: noise level of the re-noised previous chunk (`default_sigma_cond`
                if None); must be None for codecs without one (v1).

        Returns:
            [channels, samples] or [batch, channels, samples] float32 waveform on the CPU (a
            stereo v2 model gives 2 channels, or 1 for a latent file made from mono audio).
        """
        plan = self._decode_plan(z, steps, seed, length, left_pad, allow_model_mismatch, sigma_cond)
        wave = self.decode_rows(plan.rows, steps=plan.steps, seed=plan.seed, sigma_cond=plan.sigma_cond)
        return self._output(plan, wave[..., plan.pad : plan.pad + plan.length])

    @torch.inference_mode()
    def decode_stream(
        self,
        z: torch.Tensor | np.ndarray | LatentFile,
        steps: int = 1,
        seed: int | None = None,
        length: int | None = None,
        *,
        left_pad: int | None = None,
        allow_model_mismatch: bool = False,
        sigma_cond: float | None = None,
    ) -> Iterator[torch.Tensor]:
        """Decode latents piece by piece, for playback while decoding: v1 yields the audio that is
        final after each window (on a GPU, after each pass of a few windows), v2 after each chunk
        (all rows decoded side by side).

        Arguments are those of `decode`, and so is the result: the pieces [..., n] (the layout of
        `decode`'s output) joined along the last axis are exactly `decode(...)` with the same
        seed (a seed must be given for that; a random one is drawn otherwise).
        """
        plan = self._decode_plan(z, steps, seed, length, left_pad, allow_model_mismatch, sigma_cond)
        start, stop, done = plan.pad, plan.pad + plan.length, plan.pad
        options = {"steps": plan.steps, "seed": plan.seed, "sigma_cond": plan.sigma_cond}
        for wave, final in self.decode_steps(plan.rows, **options):
            upto = min(final, stop)
            if upto > done:
                yield self._output(plan, wave[..., done:upto].clamp(-1.0, 1.0))
                done = upto
        assert done == stop >= start

    def _decode_plan(
        self,
        z: torch.Tensor | np.ndarray | LatentFile,
        steps: int,
        seed: int | None,
        length: int | None,
        left_pad: int | None,
        allow_model_mismatch: bool,
        sigma_cond: float | None,
    ) -> DecodePlan:
        """Check `decode`'s arguments and lay the latents out as model rows."""
        source_channels, stereo = None, self.stereo
        if isinstance(z, LatentFile):
            self.check_latent_file(z, allow_model_mismatch)
            length = z.length if length is None else length
            source_channels = z.extra.get("audio_channels")
            stereo = checked_stereo_mode(z.extra.get("stereo", "lr"), "latent file: stereo")
            left_pad, z = z.left_pad, z.latents
        sigma_cond = self.check_sigma_cond(sigma_cond)
        z = self.check_latents(z)
        pad, length, seed = self.decode_span(z.shape[self.latent_time_axis], steps, length, left_pad, seed)
        per_row = max(-self.latent_time_axis, -self.latent_channel_axis)  # latent axes of one row
        lead = tuple(z.shape[: z.dim() - per_row])
        rows = z.reshape(-1, *z.shape[z.dim() - per_row :]) * self.cfg.latent_scale
        return DecodePlan(rows, lead, source_channels, pad, length, steps, seed, sigma_cond, stereo)

    def _output(self, plan: DecodePlan, wave: torch.Tensor) -> torch.Tensor:
        """Decoded rows [R, ..., n] -> the caller's layout, refusing non-finite audio."""
        if not torch.isfinite(wave).all():
            largest = float(plan.rows.abs().max()) / self.cfg.latent_scale  # as the caller gave them
            raise M2LError(
                f"latents: decoding gave non-finite audio; their values (largest magnitude "
                f"{largest:.3g}) are far outside what the model was trained on"
            )
        out = self.output_waveform(wave, plan.lead, plan.source_channels)
        return from_mid_side(out) if plan.stereo == "ms" and out.shape[-2] == 2 else out

    def check_latent_file(self, lf: LatentFile, allow_model_mismatch: bool = False) -> None:
        """Refuse latents made by another architecture (or other weights, unless allowed)."""
        if lf.config_hash != self.config_hash or lf.latent_scale != self.cfg.latent_scale:
            raise M2LError(
                f"latents were made by model {lf.model_id} (config {lf.config_hash}), "
                f"incompatible with {self.model_id} (config {self.config_hash})"
            )
        if lf.sample_rate != self.sample_rate:
            raise M2LError(
                f"latent file says {lf.sample_rate} Hz, but its model {self.model_id} works at "
                f"{self.sample_rate} Hz (inconsistent metadata)"
            )
        if lf.model_id != self.model_id and not allow_model_mismatch:
            raise M2LError(MODEL_MISMATCH_MESSAGE.format(made_by=lf.model_id, model_id=self.model_id))

    def check_sigma_cond(self, sigma_cond: float | None) -> float | None:
        """The decoder's context noise level: refused unless None for codecs without one."""
        if sigma_cond is not None:
            raise M2LError("sigma_cond applies to Music2Latent2 (v2) models only")
        return None

    @staticmethod
    def checked_stereo(stereo: str | None, audio_channels: int) -> str:
        """The stereo coding of a codec whose model takes `audio_channels` channels per row."""
        if audio_channels != 1:
            if stereo not in (None, "lr"):
                raise M2LError("stereo: a joint-stereo model codes left/right itself; only 'lr' applies")
            return "lr"
        return "ms" if stereo is None else checked_stereo_mode(stereo)

    def coded_channels(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveform [..., channels, samples] as the model codes it: a stereo pair as mid/side
        when `stereo` is "ms", anything else as it is."""
        return to_mid_side(wave) if self.stereo == "ms" and wave.shape[-2] == 2 else wave

    def stereo_extra(self, wave: torch.Tensor) -> dict[str, Any]:
        """`{"stereo": mode}` for a latent file of stereo audio [2, samples] that this codec
        codes channel by channel (older files have none: left/right), else nothing."""
        return {"stereo": self.stereo} if wave.shape[0] == 2 and self.model.audio_channels == 1 else {}

    def file_extra(self, wave: torch.Tensor) -> dict[str, Any]:
        """Extra metadata of a latent file made from `wave` [channels, samples] (none by default)."""
        return {}

    # ----------------------------------------------------------------------------- hooks
    @abstractmethod
    def model_rows(self, wave: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Waveform [..., channels, samples] -> (model rows [R, ..., samples], the lead shape
        that an output of R rows reshapes to)."""

    @abstractmethod
    def encode_rows(
        self, rows: torch.Tensor, *, features: bool = False, left_pad: int | None = None
    ) -> torch.Tensor:
        """Model rows (from `model_rows`) -> latents (or features) [R, ...] on the CPU: one clip's
        encode, reported to `progress`."""

    @abstractmethod
    def encode_plan(
        self, rows: torch.Tensor, *, features: bool = False, left_pad: int | None = None
    ) -> EncodePlan:
        """Model rows (from `model_rows`) -> the encoder passes that encode them (`m2l.passes`),
        for `m2l.packing.encode_many` to batch with other clips'."""

    def encoder_pass(self, x: torch.Tensor, *, features: bool = False) -> torch.Tensor:
        """The encoder on a batch of inputs [B, ...] -> float32 outputs on the CPU, under
        autocast to `precision` when one is set."""
        with self.autocast():
            return self.model.encode(x, features=features).float().cpu()

    @torch.inference_mode()
    def encode_side_by_side(
        self,
        pieces: Sequence[Batchable],
        *,
        make_input: Callable[[Any], torch.Tensor],
        place: Callable[[Any, torch.Tensor], None],
        features: bool,
    ) -> None:
        """One encoder pass over the inputs of `pieces` side by side (`make_input(piece)`, each
        [piece.items, ...]); each piece's share of the outputs goes to `place(piece, z)`."""
        inputs = [make_input(p) for p in pieces]
        z = self.encoder_pass(inputs[0] if len(inputs) == 1 else torch.cat(inputs), features=features)
        start = 0
        for p in pieces:
            place(p, z[start : start + p.items])
            start += p.items

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context the networks run in: autocast to `precision`, or nothing when None.
        Entered around each network call, never across a yield."""
        if self.precision is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.precision)

    @abstractmethod
    def decode_steps(
        self, rows: torch.Tensor, *, steps: int, seed: int, sigma_cond: float | None = None
    ) -> Iterator[tuple[torch.Tensor, int]]:
        """Decode raw latents (times latent_scale) [R, ...] progressively: yields (the padded
        waveforms [R, ..., samples] being written, how many leading samples are final), the last
        time with every sample final. Samples are not clamped."""

    def decode_rows(
        self, rows: torch.Tensor, *, steps: int, seed: int, sigma_cond: float | None = None
    ) -> torch.Tensor:
        """Raw latents (times latent_scale) [R, ...] -> padded waveforms [R, ..., samples],
        clamped to [-1, 1]."""
        wave = finished(self.decode_steps(rows, steps=steps, seed=seed, sigma_cond=sigma_cond))
        return wave.clamp_(-1.0, 1.0)

    @abstractmethod
    def output_waveform(
        self, wave: torch.Tensor, lead: tuple[int, ...], source_channels: int | None
    ) -> torch.Tensor:
        """Decoded rows [R, ..., length] -> [*lead, length] waveforms (as `decode` returns them).

        `source_channels` is the channel count of the audio a latent file was made from, if known.
        """

    @abstractmethod
    def check_latents(self, z: object) -> torch.Tensor:
        """A checked float32 CPU latent tensor of this codec's layout, or a one-line M2LError."""

    @abstractmethod
    def set_window_samples(self, samples: int) -> None:
        """Bound the audio one model pass covers to about `samples` samples (memory vs speed)."""

    @staticmethod
    @abstractmethod
    def clip_vector(out: torch.Tensor, *, features: bool) -> torch.Tensor:
        """Average `encode`'s output for one clip to one vector (the papers' MIR pooling).

        Args:
            out: unbatched `encode(..., features=features)` output.
            features: `out` holds features (True) or latents (False).

        Returns:
            [dim] vector (v1: dim = latent or feature channels; v2: K * dim).
        """
