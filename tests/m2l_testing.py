"""Shared helpers for the tests: small models with non-trivial random weights, test signals, the
check that an error is reported as one line, and surgery on the safetensors headers of m2l files
(tampering, crafted metadata, version 1)."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from m2l.config import V1Config, V2Config, preset
from m2l.models import create

# A model far smaller than the tiny preset, for tests over very long audio.
MICRO = V1Config(
    name="m2l-v1-micro",
    base_channels=4,
    multipliers=(1, 1, 1, 1, 2),
    attention=(False, False, False, False, True),
    unet_blocks=1,
    cond_channels=16,
    bottleneck_channels=16,
    bottleneck_blocks=1,
    heads=2,
)
MICRO2 = V2Config(
    name="m2l-v2-micro",
    channels=(4, 4, 4, 4, 8, 8),
    layers=(1, 1, 1, 1, 1, 1),
    dim=16,
    depth=1,
    heads=2,
    cond_channels=16,
)


def randomize(model: torch.nn.Module, seed: int = 0, zero_scale: float = 0.3) -> torch.nn.Module:
    """Give zero-initialised layers small random weights so every path carries signal."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) * zero_scale / math.sqrt(fan_in))
            elif p.dim() == 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def random_model(name_or_cfg: str | V1Config | V2Config = "m2l-v1-tiny", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = preset(name_or_cfg) if isinstance(name_or_cfg, str) else name_or_cfg
    return randomize(create(cfg), seed).eval()


def sine(
    freq: float | Sequence[float],
    seconds: float | None = None,
    *,
    samples: int | None = None,
    rate: int = 44100,
    channels: int | None = None,
    amplitude: float = 0.5,
    phase: float | Sequence[float] = 0.0,
    dtype: type = np.float64,
) -> np.ndarray:
    """amplitude * sin(2 pi freq t + phase) over `seconds` (int(seconds * rate) samples) or `samples`.

    Returns [samples], or [channels, samples] when `channels` is given; `freq` (Hz) and `phase`
    (radians) are one number for every channel or one per channel. Computed in float64, then cast
    to `dtype`.
    """
    if (seconds is None) == (samples is None):
        raise TypeError("sine: give seconds or samples (one of them)")
    n = int(seconds * rate) if samples is None else samples
    t = np.arange(n) / rate
    rows = 1 if channels is None else channels
    freqs = np.broadcast_to(np.asarray(freq, dtype=np.float64), (rows,))
    phases = np.broadcast_to(np.asarray(phase, dtype=np.float64), (rows,))
    wave = np.stack([amplitude * np.sin(2 * np.pi * f * t + p) for f, p in zip(freqs, phases, strict=True)])
    wave = wave.astype(dtype, copy=False)
    return wave[0] if channels is None else wave


def sine_tensor(*args: object, **kwargs: object) -> torch.Tensor:
    """`sine` as a torch tensor (float64 unless `dtype` says otherwise)."""
    return torch.from_numpy(sine(*args, **kwargs))  # type: ignore[arg-type]


def assert_one_line_error(error: object, *fragments: str) -> None:
    """An error is reported as one line that names each of `fragments`.

    `error` is the stderr text of the command line (exactly one `m2l: error: ` line, no
    traceback) or a raised exception (`pytest.raises`' ExceptionInfo or the exception itself),
    whose message must hold no newline.
    """
    if isinstance(error, str):
        lines = error.strip().splitlines()
        assert len(lines) == 1, error
        assert lines[0].startswith("m2l: error: "), error
        assert "Traceback" not in error
        message = lines[0]
    else:
        message = str(getattr(error, "value", error))
        assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def tone_and_noise(seconds: float, sr: int = 44100, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """A stationary test signal [channels, samples] (float32): a sine per channel (440 Hz, then
    110 Hz higher per channel) plus white noise."""
    gen = torch.Generator().manual_seed(seed)
    freqs = [440 + 110 * c for c in range(channels)]
    tones = sine_tensor(freqs, seconds, rate=sr, channels=channels, amplitude=0.2, dtype=np.float32)
    return tones + 0.1 * torch.randn(tones.shape, generator=gen)


def music_like(seconds: float, sr: int = 44100, seed: int = 0) -> torch.Tensor:
    """A non-stationary test signal [1, samples]: plucked harmonic notes of a melody over a bass."""
    gen = torch.Generator().manual_seed(seed)
    n = int(seconds * sr)
    t = torch.arange(n) / sr
    out = torch.zeros(n)
    note = 0.25
    for i in range(int(seconds / note)):
        start = int(i * note * sr)
        local = t[: n - start]
        freq = 220.0 * 2 ** (int(torch.randint(0, 12, (1,), generator=gen)) / 12)
        env = torch.exp(-local * 6.0)
        out[start:] += sum(0.15 / k * torch.sin(2 * math.pi * freq * k * local) for k in (1, 2, 3, 4)) * env
    bass = 0.1 * torch.sin(2 * math.pi * 55.0 * t) * (0.6 + 0.4 * torch.sin(2 * math.pi * 0.5 * t))
    return (out + bass)[None] + 0.003 * torch.randn(1, n, generator=gen)


def read_header(path: Path) -> tuple[dict, bytes]:
    """(the safetensors JSON header, the tensor bytes after it) of the file at `path`."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def rewrite_header(path: Path, *, reseal: bool = False, drop: tuple[str, ...] = (), **changes: str) -> None:
    """Change metadata fields of an m2l file in place (and remove those in `drop`).

    With `reseal`, the metadata checksum is recomputed, as a writer with a bug (or a forger) would:
    the file passes its integrity check and only the values themselves can be wrong.
    """
    from m2l.formats import metadata_digest

    header, body = read_header(path)
    meta = header["__metadata__"]
    meta.update(changes)
    for key in drop:
        meta.pop(key, None)
    if reseal:
        meta["sha256"] = metadata_digest(meta)
    blob = json.dumps(header).encode()
    blob += b" " * ((8 - len(blob) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + body)


def make_version_1(path: Path) -> None:
    """Turn an m2l file into its format version 1 form: `sha256` over the tensors only."""
    header, _ = read_header(path)
    tensors_sha = header["__metadata__"]["tensors_sha256"]
    rewrite_header(path, version="1", sha256=tensors_sha, drop=("tensors_sha256",))


def flip_bit_in_value(path: Path, key: str) -> None:
    """Flip the lowest bit of the first character of metadata field `key`'s value, in the raw
    header bytes (the JSON stays valid: digits stay digits, letters stay letters)."""
    data = bytearray(path.read_bytes())
    (size,) = struct.unpack("<Q", data[:8])
    needle = json.dumps(key).encode() + b":"
    at = data.index(needle, 8, 8 + size) + len(needle)
    while data[at] in b' "':
        at += 1
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def record_pass_sizes(codec, method: str, monkeypatch, fail_above: int | None = None) -> list[int]:
    """Record the batch size (leading dimension) of every call of `codec.model.<method>`; with
    `fail_above`, calls of more inputs raise `torch.OutOfMemoryError`, as a full GPU would."""
    seen: list[int] = []
    original = getattr(codec.model, method)

    def spy(x, *args, **kwargs):
        seen.append(x.shape[0])
        if fail_above is not None and x.shape[0] > fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(x, *args, **kwargs)

    monkeypatch.setattr(codec.model, method, spy)
    return seen
