"""Reading, checking, resampling and writing audio, and the mid/side coding of a stereo pair.

Every function here turns bad input into an `M2LError` whose message is one line naming the file
(or the array) and what is wrong with it. Waveforms are float32 tensors laid out as
[channels, samples] (or [batch, channels, samples]) with values nominally in [-1, 1].

Truncated files. libsndfile clamps the frame count of a WAV or AIFF file whose data chunk is cut
short to the frames that are there, so a file truncated in the middle (a copy that stopped, a full
disk) looks whole to it. `declared_frames` walks the container's chunks and returns what the
header declared, so that `load_audio` can tell such a file from a complete one.
"""

from __future__ import annotations

import numbers
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr
import torch

from m2l.audio.extensions import AUDIO_EXTENSIONS, DEFAULT_SUBTYPE, WRITE_EXTENSIONS, WRITE_SUBTYPES
from m2l.config import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, STEREO_MODES
from m2l.errors import M2LError
from m2l.files import atomic_output, check_output, regular_file, write_error

_WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}

# Integer sample formats: (offset, scale) so that float = (int - offset) / scale.
_NP_INT_SCALES = {
    np.dtype(np.int8): (0, 2**7),
    np.dtype(np.uint8): (2**7, 2**7),
    np.dtype(np.int16): (0, 2**15),
    np.dtype(np.int32): (0, 2**31),
}
_TORCH_INT_SCALES = {getattr(torch, d.name): scale for d, scale in _NP_INT_SCALES.items()}

_READ_ERRORS = (sf.LibsndfileError, sf.SoundFileError, RuntimeError, OSError, EOFError)
_BLOCK_SAMPLES = 1 << 20  # samples (all channels) per read: 4 MB of float32
_UNKNOWN_FRAMES = 1 << 62  # libsndfile's frame count of a stream of unknown length is about 2**63
_MP3_FRAME = 1152  # samples per MPEG layer III frame; MP3 frame counts may be estimates


def _fail(name: str, problem: str) -> M2LError:
    """Build the one-line error for input `name`."""
    return M2LError(" ".join(f"{name}: {problem}".split("\n")))


def _short_reason(err: BaseException) -> str:
    """First line of an exception message (the libsndfile text when there is one)."""
    text = (getattr(err, "error_string", None) or str(err)).strip()
    return text.splitlines()[0].strip() if text else type(err).__name__


def _check_rate(rate: object, name: str, what: str = "sample rate") -> int:
    """Return `rate` as a positive int, or raise when it is not one."""
    ok = isinstance(rate, numbers.Integral) and not isinstance(rate, bool)
    if not ok and isinstance(rate, numbers.Real) and not isinstance(rate, bool):
        ok = float(rate).is_integer()
    if not ok or int(rate) <= 0:
        raise _fail(name, f"{what} must be a positive integer, got {rate!r}")
    return int(rate)


def _as_float_tensor(audio: object, name: str) -> torch.Tensor:
    """Convert a numpy array or tensor to float32 (integer PCM scaled to [-1, 1))."""
    if isinstance(audio, torch.Tensor):
        if audio.dtype in _TORCH_INT_SCALES:
            offset, scale = _TORCH_INT_SCALES[audio.dtype]
            return (audio.to(torch.float32) - offset) / scale
        if audio.is_floating_point():
            return audio.to(torch.float32)
        raise _fail(name, f"unsupported sample dtype {audio.dtype}; expected float or int16/int32")
    if isinstance(audio, np.generic):  # a numpy scalar: report it as a 0-D array
        audio = np.asarray(audio)
    if isinstance(audio, np.ndarray):
        if audio.dtype in _NP_INT_SCALES:
            offset, scale = _NP_INT_SCALES[audio.dtype]
            data = ((audio.astype(np.float64) - offset) / scale).astype(np.float32)
        elif audio.dtype.kind == "f":
            data = audio.astype(np.float32, copy=False)
        else:
            raise _fail(name, f"unsupported sample dtype {audio.dtype}; expected float or int16/int32")
        if not (data.flags.c_contiguous and data.flags.writeable):
            data = np.array(data, order="C")  # torch.from_numpy wants both
        return torch.from_numpy(data)
    raise _fail(name, f"expected a numpy array or torch tensor, got {type(audio).__name__}")


def _check_finite(wave: torch.Tensor, name: str) -> None:
    """Raise when `wave` holds NaN or Inf values."""
    if not bool(torch.isfinite(wave).all()):
        raise _fail(name, "contains NaN or Inf")


def _check_layout(wave: torch.Tensor, name: str) -> None:
    """Reject a 2-D/3-D array whose last two axes look swapped ([samples, channels])."""
    if wave.dim() >= 2 and wave.shape[-2] > 2 and wave.shape[-1] <= 2:
        lead = "batch, " if wave.dim() == 3 else ""
        raise _fail(
            name,
            f"shape {list(wave.shape)} looks like [{lead}samples, channels]; "
            f"transpose it to [{lead}channels, samples]",
        )


def _check_channels(channels: int, downmix: bool, name: str) -> None:
    """Refuse more than 2 channels unless they are to be averaged (`downmix`)."""
    if channels > 2 and not downmix:
        raise _fail(
            name,
            f"has {channels} channels but only mono or stereo is supported; "
            "pass downmix=True (CLI: --downmix) to average them to mono",
        )


def _mix_channels(wave: torch.Tensor, downmix: bool, name: str) -> torch.Tensor:
    """Average all channels to mono when `downmix`, else refuse more than 2 channels."""
    if downmix:
        return wave.mean(dim=-2, keepdim=True)
    _check_channels(wave.shape[-2], downmix, name)
    return wave


def resample(audio: torch.Tensor, orig_rate: int, target_rate: int) -> torch.Tensor:
    """Resample along the last axis with soxr (quality "HQ").

    Args:
        audio: Waveform [..., samples]; every leading index is resampled independently.
        orig_rate: Sample rate of `audio` in Hz.
        target_rate: Wanted sample rate in Hz.

    Returns:
        Float32 tensor [..., new_samples] on the device of `audio`, with
        new_samples ~= samples * target_rate / orig_rate. When the rates are equal, `audio` itself
        is returned (converted to float32 if it was not).

    Raises:
        M2LError: When a rate is not a positive integer.
    """
    orig_rate = _check_rate(orig_rate, "array")
    target_rate = _check_rate(target_rate, "array", "target rate")
    if orig_rate == target_rate:
        return audio.to(torch.float32)
    lead, n = tuple(audio.shape[:-1]), audio.shape[-1]
    rows = np.ascontiguousarray(
        audio.detach().to("cpu", torch.float32).reshape(-1, n).numpy().T
    )  # [samples, rows]: soxr wants time on axis 0 and treats columns as channels.
    if n == 0 or rows.shape[1] == 0:
        new_n = round(n * target_rate / orig_rate)
        return torch.zeros(*lead, new_n, dtype=torch.float32, device=audio.device)
    out = soxr.resample(rows, orig_rate, target_rate, quality="HQ")
    out = torch.from_numpy(np.ascontiguousarray(out.T, dtype=np.float32))
    return out.reshape(*lead, out.shape[-1]).to(audio.device)


def to_waveform(
    audio: np.ndarray | torch.Tensor,
    sample_rate: int | None,
    target_rate: int,
    *,
    downmix: bool = False,
    name: str = "array",
) -> torch.Tensor:
    """Check an in-memory waveform and bring it to `target_rate`.

    Integer PCM is scaled to [-1, 1) (int16 / 2**15, int32 / 2**31, uint8 centred on 128);
    other float dtypes become float32.

    Args:
        audio: Numpy array or tensor, [samples], [channels, samples] or
            [batch, channels, samples].
        sample_rate: Rate of `audio` in Hz; None means it is already at `target_rate`.
        target_rate: Wanted sample rate in Hz.
        downmix: Average all channels to mono; without it more than 2 channels is an error.
        name: How the input is called in error messages.

    Returns:
        Float32 tensor [channels, samples] ([1, samples] for 1-D input) or
        [batch, channels, samples], on the device of a tensor input (CPU for numpy). It may
        share memory with `audio` when no conversion was needed.

    Raises:
        M2LError: On empty audio, a wrong number of dims, swapped axes, NaN/Inf, a non-numeric
            dtype, more than 2 channels without `downmix`, or a bad rate.
    """
    target_rate = _check_rate(target_rate, name, "target rate")
    rate = target_rate if sample_rate is None else _check_rate(sample_rate, name)
    wave = _as_float_tensor(audio, name)
    if wave.dim() == 0 or wave.dim() > 3:
        raise _fail(
            name,
            f"has {wave.dim()} dims (shape {list(wave.shape)}); expected [samples], "
            "[channels, samples] or [batch, channels, samples]",
        )
    if wave.dim() == 1:
        wave = wave.unsqueeze(0)
    if wave.numel() == 0:
        raise _fail(name, f"empty audio (shape {list(wave.shape)})")
    _check_layout(wave, name)
    _check_finite(wave, name)
    wave = _mix_channels(wave, downmix, name)
    return resample(wave, rate, target_rate)


def load_audio(
    path: str | os.PathLike, target_rate: int | None = None, *, downmix: bool = False
) -> tuple[torch.Tensor, int]:
    """Read an audio file.

    Args:
        path: File with one of the `AUDIO_EXTENSIONS`.
        target_rate: Resample to this rate in Hz; None keeps the file's rate.
        downmix: Average all channels to mono; without it more than 2 channels is an error.

    Returns:
        (waveform, sample_rate): float32 CPU tensor [channels, samples] and its rate in Hz
        (`target_rate` when given).

    Raises:
        M2LError: When the file is missing, a directory, has an unsupported extension, cannot
            be decoded, is empty, holds NaN/Inf, has more than 2 channels without `downmix`, or
            a sample rate outside `MIN_SAMPLE_RATE`..`MAX_SAMPLE_RATE` (a damaged header: such a
            rate would make the resampler allocate many times the file's size), or is truncated
            (fewer frames than its header promises; MP3 counts, which may be estimates, get 5%).
    """
    p = Path(path)
    name = str(p)
    if target_rate is not None:
        target_rate = _check_rate(target_rate, name, "target rate")
    if not p.exists():
        raise _fail(name, "file not found")
    if p.is_dir():
        raise _fail(name, "is a directory, expected an audio file")
    if p.suffix.lower() not in AUDIO_EXTENSIONS:
        supported = ", ".join(sorted(AUDIO_EXTENSIONS))
        raise _fail(name, f"unsupported extension '{p.suffix}' (supported: {supported})")
    regular_file(p)  # a FIFO or a device would block the read
    data, rate = _read_file(p, name, downmix)
    if data.size == 0:
        raise _fail(name, "empty audio (0 samples)")
    wave = torch.from_numpy(data)
    _check_finite(wave, name)
    wave = _mix_channels(wave, downmix, name)
    if target_rate is None:
        return wave, int(rate)
    return resample(wave, int(rate), target_rate), target_rate


def _read_file(path: Path, name: str, downmix: bool) -> tuple[np.ndarray, int]:
    """(float32 [channels, frames], sample rate) of an audio file, its header checked first and
    the frames read checked against the frames it promises."""
    try:
        with sf.SoundFile(str(path)) as f:
            rate = f.samplerate
            if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
                sane = f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
                raise _fail(name, f"sample rate {rate} Hz is outside {sane} (damaged header?)")
            _check_channels(f.channels, downmix, name)
            promised = _promised_frames(path, f)
            data = _read_frames(f, name, promised)
            slack = max(promised // 20, 4 * _MP3_FRAME) if f.format == "MPEG" else 0
    except _READ_ERRORS as err:
        raise _fail(name, f"cannot read audio: {_short_reason(err)}") from err
    if data.shape[1] < promised - slack:
        raise _fail(name, f"truncated: header says {promised} frames, file holds {data.shape[1]}")
    return data, rate


def check_complete(path: str | os.PathLike[str]) -> None:
    """Check, without decoding it all, that an audio file is whole: readable, not empty, holding
    every frame its header promises (its last frame is read).

    Raises:
        M2LError: naming the file and what is wrong.
    """
    name = str(path)
    regular_file(Path(path))
    try:
        with sf.SoundFile(name) as f:
            promised = _promised_frames(Path(path), f)
            if f.frames <= 0:
                raise _fail(name, "empty audio (0 samples)")
            if promised > f.frames:
                raise _fail(name, f"truncated: header says {promised} frames, file holds {f.frames}")
            if f.seekable():
                f.seek(f.frames - 1)
                if len(f.read(1)) != 1:
                    raise _fail(name, f"truncated: cannot read frame {f.frames - 1}")
    except _READ_ERRORS as err:
        raise _fail(name, f"cannot read audio: {_short_reason(err)}") from err


def _promised_frames(path: Path, f: sf.SoundFile) -> int:
    """The frames the header of an open file promises (0 when unknown): libsndfile's count, or
    for WAV and AIFF, whose count libsndfile clamps to the data present, the container's."""
    promised = f.frames if 0 <= f.frames < _UNKNOWN_FRAMES else 0
    if f.format in ("WAV", "WAVEX", "AIFF"):
        promised = max(promised, declared_frames(path) or 0)
    return promised


def _read_frames(f: sf.SoundFile, name: str, promised: int) -> np.ndarray:
    """Every frame of an open file as float32 [channels, frames], read in blocks of
    `_BLOCK_SAMPLES`: memory follows the data the file really holds, never the frame count its
    header claims (which `sf.read` would allocate at once)."""
    step = max(1, _BLOCK_SAMPLES // f.channels)
    blocks, held = [], 0
    try:
        while len(block := f.read(step, dtype="float32", always_2d=True)):
            blocks.append(block)
            held += len(block)
    except _READ_ERRORS as err:
        what = f"the {promised} frames its header promises" if promised else "all of it"
        raise _fail(name, f"truncated or damaged: cannot read {what} ({_short_reason(err)})") from err
    data = np.empty((f.channels, held), dtype=np.float32)
    at = 0
    blocks.reverse()
    while blocks:  # each block is let go once copied
        block = blocks.pop()
        data[:, at : at + len(block)] = block.T
        at += len(block)
    return data


def check_subtype(path: str | os.PathLike, subtype: str) -> str:
    """`subtype` if the format of `path` (its extension) can hold it, else a one-line error.

    Raises:
        M2LError: an extension m2l does not write, or a subtype it cannot hold (FLAC: no FLOAT).
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in WRITE_EXTENSIONS:
        supported = ", ".join(sorted(WRITE_EXTENSIONS))
        raise _fail(str(p), f"cannot write extension '{p.suffix}' (supported: {supported})")
    allowed = WRITE_SUBTYPES[ext]
    if subtype not in allowed:
        fits = sorted(e for e, kinds in WRITE_SUBTYPES.items() if subtype in kinds)
        other = f", or a {'/'.join(fits)} output" if fits else ""
        raise _fail(
            str(p), f"{ext[1:].upper()} cannot hold {subtype} samples (use {' or '.join(allowed)}{other})"
        )
    return subtype


def save_audio(
    path: str | os.PathLike,
    audio: np.ndarray | torch.Tensor,
    sample_rate: int,
    *,
    force: bool = False,
    subtype: str = DEFAULT_SUBTYPE,
) -> None:
    """Write a waveform as .wav or .flac (24-bit PCM unless `subtype` says otherwise), atomically.

    Written through `m2l.files.atomic_output`: a hidden temporary file in the target directory
    is published as `path` (exclusively without `force`), so a failed write never leaves a
    partial file behind. Values are clipped to [-1, 1]. Parent directories are created.

    Args:
        path: Output file; its extension (one of `WRITE_EXTENSIONS`) picks the format.
        audio: Numpy array or tensor [channels, samples] or [samples].
        sample_rate: Rate in Hz.
        force: Overwrite an existing file.
        subtype: sample format, one of `WRITE_SUBTYPES[extension]`: "PCM_16", "PCM_24" or
            "FLOAT" (32-bit float, .wav only).

    Raises:
        M2LError: On an unsupported extension or subtype, an existing file without `force`, bad
            audio (empty, wrong dims, swapped axes, NaN/Inf) or a failed write.
    """
    p = Path(path)
    name = str(p)
    ext = p.suffix.lower()
    check_subtype(p, subtype)
    check_output(p, force)
    rate = _check_rate(sample_rate, name)
    wave = _as_float_tensor(audio, name)
    if wave.dim() not in (1, 2):
        raise _fail(name, f"has {wave.dim()} dims (shape {list(wave.shape)}); expected [channels, samples]")
    wave = wave.reshape(1, -1) if wave.dim() == 1 else wave
    if wave.numel() == 0:
        raise _fail(name, f"empty audio (shape {list(wave.shape)})")
    _check_layout(wave, name)
    _check_finite(wave, name)
    data = np.ascontiguousarray(wave.detach().clamp(-1.0, 1.0).cpu().numpy().T)
    with atomic_output(p, force=force) as tmp:
        try:
            sf.write(str(tmp), data, rate, subtype=subtype, format=_WRITE_FORMATS[ext])
        except OSError as err:
            raise write_error(p, err) from None
        except (sf.LibsndfileError, sf.SoundFileError, RuntimeError, EOFError, ValueError, TypeError) as err:
            raise _fail(name, f"cannot write audio: {_short_reason(err)}") from err


# ----------------------------------------------------------------------------- container headers
_MAX_CHUNKS = 256  # chunks walked before giving up (a file of junk chunks is not worth more)
_PCM_TAGS = frozenset({0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE})  # PCM, float, A-law, mu-law, extensible
_UNKNOWN_SIZES = frozenset({0, 0xFFFFFFFF})  # what streaming writers put before the length is known


def declared_frames(path: Path) -> int | None:
    """The frame count the header of a WAV (RIFF) or AIFF/AIFF-C file declares, or None when the
    file is neither, its data size is a streaming placeholder, or its encoding has no fixed
    bytes per frame (ADPCM...). Never reads past the chunk headers.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return _wav_frames(f)
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return _aiff_frames(f)
    return None


def _chunks(f: BinaryIO, endian: str) -> Iterator[tuple[bytes, int, int]]:
    """(id, size, offset of its data) of each chunk from the current position on."""
    for _ in range(_MAX_CHUNKS):
        header = f.read(8)
        if len(header) < 8:
            return
        (size,) = struct.unpack(endian + "I", header[4:])
        start = f.tell()
        yield header[:4], size, start
        f.seek(start + size + (size & 1))  # chunks are padded to an even length


def _wav_frames(f: BinaryIO) -> int | None:
    """Data bytes / block align of the `data` chunk, after a PCM or float `fmt ` chunk."""
    block_align = 0
    for chunk, size, _ in _chunks(f, "<"):
        if chunk == b"fmt ":
            fmt = f.read(14)
            if size < 14 or len(fmt) < 14:
                return None
            tag, _, _, _, block_align = struct.unpack("<HHIIH", fmt)
            if tag not in _PCM_TAGS:
                return None
        elif chunk == b"data":
            if block_align == 0 or size in _UNKNOWN_SIZES:
                return None
            return size // block_align
    return None


def _aiff_frames(f: BinaryIO) -> int | None:
    """numSampleFrames of the `COMM` chunk."""
    for chunk, size, _ in _chunks(f, ">"):
        if chunk == b"COMM":
            comm = f.read(6)
            if size < 6 or len(comm) < 6:
                return None
            (frames,) = struct.unpack(">I", comm[2:6])
            return frames
    return None


# Stereo coding of a channel pair (see `m2l.codec`): mid M = (L + R) / 2, side S = (L - R) / 2.
def checked_stereo_mode(mode: object, what: str = "stereo") -> str:
    """`mode` if it is one of `STEREO_MODES`, else a one-line M2LError."""
    if mode not in STEREO_MODES:
        raise M2LError(f"{what} must be one of {', '.join(STEREO_MODES)}, got {mode!r}")
    return str(mode)


def to_mid_side(wave: torch.Tensor) -> torch.Tensor:
    """[..., 2, samples] left/right -> [..., 2, samples] mid/side (mid first)."""
    left, right = wave.unbind(-2)
    return torch.stack(((left + right) / 2, (left - right) / 2), dim=-2)


def from_mid_side(wave: torch.Tensor) -> torch.Tensor:
    """[..., 2, samples] mid/side -> [..., 2, samples] left/right (the inverse of `to_mid_side`)."""
    mid, side = wave.unbind(-2)
    return torch.stack((mid + side, mid - side), dim=-2)
