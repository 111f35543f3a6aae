"""Audio from a generator: latents sampled (from noise, continuing a prompt, or filling a gap of
an input), de-normalised and decoded by the codec the generator learned from.

The generator models one v1 latent row, so a clip is mono: for a stereo input the first row
(mid, or left for a left/right codec) is what it continues or inpaints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from m2l.codec import Codec
from m2l.config import GENERATE_STEPS
from m2l.errors import M2LError
from m2l.generate.checkpoint import GeneratorFile, load_generator
from m2l.generate.flow import gap_mask
from m2l.generate.normalize import from_generator, to_generator
from m2l.generate.sampling import sample, sample_long
from m2l.loading import load


@dataclass(frozen=True)
class Request:
    """What `m2l generate` asks for.

    Attributes:
        seconds: the length of the result (ignored when inpainting: the input's length).
        seed: seeds the sampler and the decoder.
        steps: ODE steps of the sampler.
        prompt: an audio file to continue, or to inpaint with `inpaint`.
        inpaint: (start, end) seconds of the prompt to generate anew.
        style: a class name of the generator's labels.
        guidance: the classifier-free guidance scale (needs a style).
    """

    seconds: float = 30.0
    seed: int = 0
    steps: int = GENERATE_STEPS
    prompt: Path | None = None
    inpaint: tuple[float, float] | None = None
    style: str | None = None
    guidance: float = 1.0


def generator_and_codec(model: str | Path, device: str | None = None) -> tuple[GeneratorFile, Codec]:
    """The generator `model` names (a file, a run folder or the shipped one) and the codec it
    records, loaded on one device (`device`, or the codec's default).

    Raises:
        M2LError: an unloadable generator or codec, or a codec that is not v1.
    """
    gen = load_generator(model)
    codec = load(gen.codec_source, device=device)
    gen.model.to(codec.device)  # the generator runs beside its codec
    if codec.version != "v1":
        raise M2LError(
            f"{gen.path}: its codec {gen.codec_source} is {codec.version}; the generator decodes v1"
        )
    return gen, codec


def prompt_latents(gen: GeneratorFile, codec: Codec, audio: Path | torch.Tensor) -> tuple[torch.Tensor, int]:
    """The normalised latents [D, P] of the first row of an audio file (or of a waveform
    [channels, samples] at the codec's rate), and its samples."""
    wave = codec.load_audio(audio if isinstance(audio, torch.Tensor) else str(audio))  # [channels, samples]
    latents = codec.encode(wave)  # [channels, D, P]
    return to_generator(latents[0].float().cpu(), gen.stats, gen.cfg), wave.shape[-1]


def inpaint_window(total: int, start: int, stop: int, window: int) -> tuple[int, int]:
    """[first, last) frames of the window that regenerates frames [start, stop) of `total`: the
    whole clip when it fits in a training window, else the window centred on the gap.

    Raises:
        M2LError: a gap that leaves no context frame, or longer than a window allows.
    """
    if not (0 <= start < stop <= total) or (start == 0 and stop == total):
        raise M2LError(
            f"--inpaint: frames {start}..{stop} of {total} leave nothing to keep or nothing to make"
        )
    if total <= window:
        return 0, total
    if stop - start > window - 2:
        raise M2LError(
            f"--inpaint: the gap is {stop - start} frames; at most {window - 2} fit the generator's window"
        )
    first = min(max(0, start - (window - (stop - start)) // 2), total - window)
    return first, first + window


def make_latents(gen: GeneratorFile, codec: Codec, request: Request) -> tuple[torch.Tensor, int]:
    """Normalised latents [1, D, T] for `request`, and how many samples of audio they stand for."""
    label = gen.label_of(request.style)
    length = round(request.seconds * codec.sample_rate)
    if request.prompt is None:
        frames = codec.num_units(length)
        z = sample_long(
            gen.model, frames, request.steps, request.seed, label=label, guidance=request.guidance
        )
        return z, length
    given, samples = prompt_latents(gen, codec, request.prompt)  # [D, P]
    if request.inpaint is not None:
        return inpaint(gen, codec, request, given, label), samples
    if length <= samples:
        raise M2LError(
            f"--seconds {request.seconds:g} is not longer than the prompt "
            f"({samples / codec.sample_rate:.2f} s)"
        )
    return continue_latents(gen, codec, given, length, request), length


def continue_latents(
    gen: GeneratorFile, codec: Codec, given: torch.Tensor, length: int, request: Request
) -> torch.Tensor:
    """The normalised prompt latents `given` [D, P] continued to a clip of `length` samples (at
    least one frame more than the prompt) -> [1, D, T], the prompt kept as the first P frames.
    The request's seed, steps, style and guidance are used; its seconds and prompt are not."""
    frames = max(codec.num_units(length), given.shape[-1] + 1)
    label = gen.label_of(request.style)
    return sample_long(
        gen.model, frames, request.steps, request.seed, prompt=given, label=label, guidance=request.guidance
    )


def inpaint(
    gen: GeneratorFile, codec: Codec, request: Request, given: torch.Tensor, label: int | None
) -> torch.Tensor:
    """`given` [D, P] with the frames of seconds `request.inpaint` made anew -> [1, D, P]."""
    start, end = request.inpaint or (0.0, 0.0)
    total, per_second = given.shape[-1], codec.sample_rate / codec.samples_per_unit
    first_gap, stop_gap = min(total, math.floor(start * per_second)), min(total, math.ceil(end * per_second))
    first, last = inpaint_window(total, first_gap, stop_gap, gen.cfg.frames)
    part = given[None, :, first:last]  # [1, D, W]
    mask = gap_mask(1, last - first, first_gap - first, stop_gap - first)  # [1, W]
    shape = (1, part.shape[1], last - first)
    made = sample(
        gen.model, shape, request.steps, request.seed, part, mask, label, request.guidance
    )  # [1, D, W]
    z = given[None].clone()  # [1, D, P]
    z[..., first:last] = made
    return z


def generate_audio(gen: GeneratorFile, codec: Codec, request: Request) -> torch.Tensor:
    """Mono audio [1, samples] at the codec's rate for `request`."""
    z, length = make_latents(gen, codec, request)  # [1, D, T]
    latents = from_generator(z, gen.stats, gen.cfg)  # [1, D, T]: one row, decoded as mono
    return codec.decode(latents, seed=request.seed, length=length)  # [1, samples]
