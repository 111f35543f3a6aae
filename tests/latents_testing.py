"""Helpers for the latent dataset tests: folders of `.m2l` files, from random latents or from the
micro models of `m2l_testing` encoding test signals, and damaging a file's bytes."""

from __future__ import annotations

from pathlib import Path

import torch
from m2l_testing import MICRO, MICRO2, random_model, tone_and_noise

from m2l.codec import Codec
from m2l.formats import LatentFile
from m2l.loading import make_codec

K = 4  # latents per chunk of the random v2 files


def random_latent_file(
    kind: str = "v1", channels: int = 1, frames: int = 20, seed: int = 0, model_id: str = "rand@1"
) -> LatentFile:
    """A LatentFile of random latents, v1 [channels, 64, frames] or v2 [channels, frames, K, 64],
    with a different mean and spread per dimension (so normalising has something to do)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (channels, 64, frames) if kind == "v1" else (channels, frames, K, 64)
    dims = (64, 1) if kind == "v1" else (64,)
    centre = torch.linspace(-1.0, 1.0, 64).reshape(dims)
    spread = torch.linspace(0.2, 2.0, 64).reshape(dims)
    return LatentFile(
        latents=centre + spread * torch.randn(shape, generator=gen),
        sample_rate=44100,
        length=frames * 4096,
        model_id=model_id,
        config_hash=f"config-{kind}-{model_id.split('@')[0]}",
        latent_scale=0.06 if kind == "v1" else 1.0,
        left_pad=3072,
        kind=kind,
        extra={"audio_channels": channels} if kind == "v2" else {},
        model_source="preset-of-" + model_id,
    )


def random_folder(
    folder: Path, kind: str = "v1", frames: tuple[int, ...] = (20, 35, 8, 50), model_id: str = "rand@1"
) -> list[Path]:
    """A folder of random `.m2l` files (alternately mono and stereo, in sub-folders too)."""
    paths = []
    for i, n in enumerate(frames):
        path = folder / ("sub" if i % 2 else "") / f"file{i}.m2l"
        random_latent_file(kind, channels=1 + i % 2, frames=n, seed=i, model_id=model_id).save(path)
        paths.append(path)
    return paths


def micro_codec(kind: str) -> Codec:
    """The codec of the micro v1 or v2 model of `m2l_testing` (random weights, CPU)."""
    cfg = MICRO if kind == "v1" else MICRO2
    return make_codec(random_model(cfg), model_id=f"{cfg.name}@test", device="cpu")


def encoded_folder(folder: Path, codec: Codec, seconds: tuple[float, ...] = (3.0, 5.0, 4.0)) -> list[Path]:
    """`.m2l` files that `codec` makes of test signals (mono, then stereo, ...), as `m2l encode`
    would write them."""
    paths = []
    for i, s in enumerate(seconds):
        wave = tone_and_noise(s, channels=1 + i % 2, seed=i).numpy()
        path = folder / f"song{i}.m2l"
        codec.encode_file(wave, 44100).save(path)
        paths.append(path)
    return paths


def flip_byte(path: Path, offset_from_end: int = 5) -> None:
    """Flip one bit of the byte `offset_from_end` bytes before the end of the file (tensor data)."""
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x10
    path.write_bytes(bytes(data))
