"""`m2l gen eval`: how close a latent generator's audio comes to real audio, beside references.

From a test split (a folder of audio or a manifest, read as `m2l eval` reads it) N crops of S
seconds are taken at seeded positions (files in a seeded order, round robin; files shorter than
a crop are left out) and mixed to mono. Each crop is encoded by the codec recorded in the
generator file (its first latent row, as `m2l generate` does), and five sets of N clips follow:

- "real": the crops themselves, the reference set of every FAD;
- "floor": the decoded real latents (what the codec alone loses; no generator can beat it);
- "baseline": decoded Gaussian latents with the generator's corpus mean and std per dimension
  (a generator that learned nothing about time or the joint distribution of dimensions);
- "shuffled": the real latents with their frames permuted in time, decoded (right frames, wrong
  order: what only the temporal structure adds);
- "generated": N unconditional clips, clip i exactly `m2l generate --seconds S --seed SEED+i`.

The FAD of each set against "real" is reported side by side with the closed gap
(baseline - generated) / (baseline - floor): 0 is the baseline, 1 the floor.

Continuation: for each crop, its first P seconds (the prompt, encoded alone) are continued to S
seconds with seed SEED+i, decoded, and the part after the prompt is scored with the mel distance
(`m2l.evaluate.metrics.mel_distance`) against the crop's true continuation, beside two
references: the prompt's last S - P seconds repeated (tiled when the prompt is shorter) and the
floor (the decoded real latents of the whole crop, cut after the prompt).

Every clip i is decoded with seed SEED+i, so the decoder's noise is the same in every set.
Outputs in OUT: results.json (format "m2l-gen-eval", version 1), report.html
(`m2l.generate.report`) and audio/*.wav for the first `audio_items` clips of every set.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
from tqdm import tqdm

from m2l.codec import Codec
from m2l.config import DEFAULT_MODEL, GENERATE_STEPS
from m2l.errors import M2LError
from m2l.evaluate.embeddings import Embedder, load_embedder
from m2l.evaluate.fad import fad
from m2l.evaluate.items import ItemSource, find_items
from m2l.evaluate.metrics import mel_distance
from m2l.evaluate.results import finite_or_none, json_safe, results_preamble
from m2l.files import check_output_folder, write_text
from m2l.generate.checkpoint import GeneratorFile
from m2l.generate.make import Request, continue_latents, generate_audio, generator_and_codec, prompt_latents
from m2l.generate.normalize import from_generator

RESULTS_FORMAT = "m2l-gen-eval"
RESULTS_VERSION = 1
SETS = ("floor", "baseline", "shuffled", "generated")
"""The clip sets whose FAD against the real crops is reported, in the table's order."""
CONTINUATIONS = ("continuation", "repeat", "floor")
"""The continuation estimates scored against the true continuation, in the table's order."""


@dataclass(frozen=True)
class GenEvalOptions:
    """Everything `run_gen_evaluation` needs; see `m2l gen eval --help` for each field."""

    data: Path
    out: Path
    model: str = DEFAULT_MODEL
    clips: int = 32
    seconds: float = 10.0
    prompt_seconds: float = 5.0
    steps: int = GENERATE_STEPS
    seed: int = 0
    embedding: str = "mel-stats"
    embedding_weights: str | None = None
    audio_items: int = 4
    device: str | None = None
    force: bool = False
    progress: bool = True
    command: str = ""
    reference: Path | None = None


@dataclass(frozen=True)
class Crop:
    """One real clip: `wave` [samples] mono at the codec's rate, from `start` samples of `name`."""

    name: str
    start: int
    wave: torch.Tensor


# ----------------------------------------------------------------------------- the clips
def check_lengths(seconds: float, prompt_seconds: float) -> None:
    """Refuse a prompt that leaves nothing to continue.

    Raises:
        M2LError: `prompt_seconds` not in (0, `seconds`).
    """
    if not 0 < prompt_seconds < seconds:
        raise M2LError(
            f"--prompt-seconds {prompt_seconds:g} must be shorter than --seconds {seconds:g} "
            "(and positive): the rest of each clip is what the generator continues"
        )


def file_seconds(source: ItemSource) -> float:
    """The duration of an audio file from its header.

    Raises:
        M2LError: naming the file when its header cannot be read.
    """
    try:
        info = sf.info(str(source.path))
    except (RuntimeError, OSError) as err:  # libsndfile reports an unreadable file this way
        reason = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        raise M2LError(f"{source.path}: cannot read the audio header ({reason})") from None
    return info.frames / info.samplerate if info.samplerate > 0 else 0.0


def take_crops(
    sources: list[ItemSource], sample_rate: int, seconds: float, count: int, generator: torch.Generator
) -> list[Crop]:
    """`count` mono crops of `seconds` at seeded positions (see the module notes).

    Args:
        sources: the test files, in sorted order.
        sample_rate: the codec's rate; crops are round(seconds * sample_rate) samples.
        seconds: the crop length.
        count: how many crops.
        generator: draws the file order and the positions (in this order).

    Returns:
        The crops, crop i from the (i mod usable files)-th file of the seeded order.

    Raises:
        M2LError: no file is at least `seconds` long, or a file cannot be read.
    """
    from m2l.audio.io import load_audio

    usable = [s for s in sources if file_seconds(s) >= seconds]
    if not usable:
        raise M2LError(f"no audio file of the {len(sources)} found is at least {seconds:g} s long")
    order = torch.randperm(len(usable), generator=generator).tolist()
    positions = torch.rand(count, generator=generator, dtype=torch.float64).tolist()
    length = round(seconds * sample_rate)
    crops: dict[int, Crop] = {}
    for slot in dict.fromkeys(order[i % len(usable)] for i in range(count)):
        source = usable[slot]
        wave = load_audio(source.path, sample_rate)[0].mean(dim=0)  # [samples] mono
        if wave.shape[-1] < length:  # resampling rounded a file of exactly `seconds` down
            wave = torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))
        for i in range(count):
            if order[i % len(usable)] == slot:
                start = min(int(positions[i] * (wave.shape[-1] - length + 1)), wave.shape[-1] - length)
                crops[i] = Crop(source.name, start, wave[start : start + length].clone())
    return [crops[i] for i in range(count)]


def gaussian_latents(
    mean: torch.Tensor, std: torch.Tensor, shape: tuple[int, int, int], generator: torch.Generator
) -> torch.Tensor:
    """Independent Gaussian latents with a mean and std per latent dimension.

    Args:
        mean: [D] means.
        std: [D] standard deviations.
        shape: (N, D, T) of the result.
        generator: the noise's generator.

    Returns:
        [N, D, T] float32 latents, mean[d] + std[d] * N(0, 1) in dimension d.
    """
    noise = torch.randn(shape, generator=generator)  # [N, D, T]
    return mean.float()[:, None] + std.float()[:, None] * noise


def shuffle_frames(latents: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each clip's frames in a random order: the frame vectors stay whole, only time is lost.

    Args:
        latents: [N, D, T] latents.
        generator: draws one permutation per clip.

    Returns:
        [N, D, T] latents; clip n is `latents[n][:, perm_n]`.
    """
    frames = latents.shape[-1]
    perms = torch.stack([torch.randperm(frames, generator=generator) for _ in range(latents.shape[0])])
    return torch.gather(latents, -1, perms[:, None, :].expand_as(latents))  # [N, D, T]


def repeat_tail(prompt: torch.Tensor, samples: int) -> torch.Tensor:
    """The prompt's last `samples` samples (the whole prompt, tiled, when it is shorter).

    Args:
        prompt: [P] audio.
        samples: the length of the result.

    Returns:
        [samples] audio: the end of the prompt played again.
    """
    tail = prompt[-samples:]  # [min(P, samples)]
    return tail.repeat(math.ceil(samples / tail.shape[-1]))[:samples]


def closed_gap(fads: dict[str, float | None]) -> float | None:
    """(baseline - generated) / (baseline - floor) of FAD values: 0 at the baseline, 1 at the
    floor (None when a value is missing or the baseline is no worse than the floor)."""
    floor, baseline, generated = fads.get("floor"), fads.get("baseline"), fads.get("generated")
    if floor is None or baseline is None or generated is None or baseline <= floor:
        return None
    return (baseline - generated) / (baseline - floor)


def targets(fads: dict[str, float | None], means: dict[str, float | None]) -> dict[str, bool | None]:
    """The targets of BENCHMARKS: generated FAD at most halfway from the floor to the baseline, and
    within 10% of the floor; the continuation closer to the truth than repeating the prompt."""
    floor, baseline, generated = fads.get("floor"), fads.get("baseline"), fads.get("generated")
    made, repeat = means.get("continuation"), means.get("repeat")
    known = floor is not None and generated is not None
    return {
        "fad_halfway": None if not known or baseline is None else generated <= (floor + baseline) / 2,
        "fad_within_10_percent_of_floor": None if not known else generated <= 1.1 * floor,
        "continuation_beats_repeat": None if made is None or repeat is None else made < repeat,
    }


# ----------------------------------------------------------------------------- the run
@dataclass
class Run:
    """What the steps of one evaluation share: options, generator, codec, progress, notes."""

    opts: GenEvalOptions
    gen: GeneratorFile
    codec: Codec
    tick: Callable[[], None]
    notes: list[str]

    @property
    def length(self) -> int:
        """Samples of a clip."""
        return round(self.opts.seconds * self.codec.sample_rate)

    def decode(self, latents: torch.Tensor, i: int, length: int | None = None) -> torch.Tensor:
        """Codec latents [D, T] of clip i -> mono audio [samples] (decoded with seed SEED+i)."""
        wave = self.codec.decode(latents[None], seed=self.opts.seed + i, length=length or self.length)
        self.tick()
        return wave.mean(dim=0)  # [samples]


def real_latents(run: Run, crops: list[Crop]) -> torch.Tensor:
    """The first latent row of each crop -> [N, D, T] codec latents on the CPU."""
    waves = torch.stack([c.wave for c in crops])[:, None]  # [N, 1, samples]
    return run.codec.encode(waves)[:, 0].float().cpu()  # [N, D, T]


def clip_sets(run: Run, crops: list[Crop], generator: torch.Generator) -> dict[str, list[torch.Tensor]]:
    """The real crops and the four decoded sets of `SETS`, N mono clips [samples] each."""
    z = real_latents(run, crops)  # [N, D, T]
    stats = run.gen.stats
    noise = gaussian_latents(torch.tensor(stats.mean), torch.tensor(stats.std), tuple(z.shape), generator)
    shuffled = shuffle_frames(z, generator)  # [N, D, T]
    sets = {
        "real": [c.wave for c in crops],
        "floor": [run.decode(z[i], i) for i in range(len(crops))],
        "baseline": [run.decode(noise[i], i) for i in range(len(crops))],
        "shuffled": [run.decode(shuffled[i], i) for i in range(len(crops))],
    }
    opts, made = run.opts, []
    for i in range(len(crops)):
        request = Request(seconds=opts.seconds, seed=opts.seed + i, steps=opts.steps)
        made.append(generate_audio(run.gen, run.codec, request).mean(dim=0))  # [samples]
        run.tick()
    sets["generated"] = made
    return sets


def reference_floor(run: Run, generator: torch.Generator) -> list[torch.Tensor]:
    """The "train_floor" set: N crops of `opts.reference` (the generator's training audio),
    encoded and decoded (clip i with seed SEED+i): what a generator that had learned its training
    distribution perfectly would score against the test crops."""
    opts = run.opts
    sources = find_items(opts.reference) if opts.reference is not None else []
    crops = take_crops(sources, int(run.codec.sample_rate), opts.seconds, opts.clips, generator)
    z = real_latents(run, crops)  # [N, D, T]
    return [run.decode(z[i], i) for i in range(len(crops))]


def fad_scores(run: Run, sets: dict[str, list[torch.Tensor]], embedder: Embedder) -> dict[str, float | None]:
    """FAD of each set of `SETS` (and "train_floor" with a reference) against the real crops
    (None with a note when it fails)."""
    scores: dict[str, float | None] = {}
    for name in [*SETS, *(["train_floor"] if "train_floor" in sets else [])]:
        try:
            scores[name] = finite_or_none(fad(sets["real"], sets[name], run.codec.sample_rate, embedder))
        except M2LError as err:
            scores[name] = None
            run.notes.append(f"FAD of {name} not computed: {err}")
    return scores


def continuations(run: Run, crops: list[Crop], floor: list[torch.Tensor]) -> list[dict[str, Any]]:
    """Continue each crop's prompt; per crop the continued clip [samples] ("audio") and the mel
    distances of `CONTINUATIONS` to the true continuation."""
    opts, rate = run.opts, run.codec.sample_rate
    prompt = round(opts.prompt_seconds * rate)
    rows = []
    for i, crop in enumerate(crops):
        given, _ = prompt_latents(run.gen, run.codec, crop.wave[None, :prompt])  # [D, P]
        request = Request(seconds=opts.seconds, seed=opts.seed + i, steps=opts.steps)
        z = continue_latents(run.gen, run.codec, given, run.length, request)  # [1, D, T]
        audio = run.decode(from_generator(z[0], run.gen.stats, run.gen.cfg), i)  # [samples]
        truth = crop.wave[prompt:]  # [S - P]
        estimates = {
            "continuation": audio[prompt:],
            "repeat": repeat_tail(crop.wave[:prompt], truth.shape[-1]),
            "floor": floor[i][prompt:],
        }
        row: dict[str, Any] = {name: float(mel_distance(x, truth, rate)) for name, x in estimates.items()}
        rows.append({"audio": audio, **row})
    return rows


def write_media(
    run: Run, sets: dict[str, list[torch.Tensor]], continued: list[torch.Tensor]
) -> dict[str, Any]:
    """audio/<set>_<i>.wav for the first `audio_items` clips of every set, the prompts and the
    continued clips; returns their paths (relative to OUT) by set."""
    from m2l.audio.io import save_audio

    count = min(run.opts.audio_items, len(continued))
    prompt = round(run.opts.prompt_seconds * run.codec.sample_rate)
    clips = {**sets, "prompt": [w[:prompt] for w in sets["real"]], "continued": continued}
    media: dict[str, list[str]] = {}
    for name, waves in clips.items():
        media[name] = [f"audio/{name}_{i:02d}.wav" for i in range(count)]
        for path, wave in zip(media[name], waves, strict=False):
            save_audio(run.opts.out / path, wave[None], run.codec.sample_rate, force=run.opts.force)
    return media


def mean(values: list[float | None]) -> float | None:
    """The mean of finite values (None when one is missing or there are none)."""
    if not values or any(v is None for v in values):
        return None
    return finite_or_none(sum(v for v in values if v is not None) / len(values))


def header(run: Run, data_kind: str, crops: list[Crop]) -> dict[str, Any]:
    """The run description at the top of results.json."""
    opts, gen, codec = run.opts, run.gen, run.codec
    rate = codec.sample_rate
    return {
        **results_preamble(RESULTS_FORMAT, RESULTS_VERSION, opts.command),
        "data": {
            "source": str(opts.data),
            "kind": data_kind,
            "clips": len(crops),
            "reference": None if opts.reference is None else str(opts.reference),
        },
        "options": {
            "seconds": opts.seconds,
            "prompt_seconds": opts.prompt_seconds,
            "steps": opts.steps,
            "seed": opts.seed,
            "embedding": opts.embedding,
            "embedding_weights": opts.embedding_weights,
            "audio_items": opts.audio_items,
            "device": opts.device,
        },
        "generator": {
            "path": str(gen.path),
            "config": gen.cfg.name,
            "labels": list(gen.labels),
            "codec_id": gen.codec_id,
            "codec_source": gen.codec_source,
        },
        "codec": {"model_id": codec.model_id, "version": codec.version, "sample_rate": int(rate)},
        "clips": [{"index": i, "name": c.name, "start_seconds": c.start / rate} for i, c in enumerate(crops)],
    }


def run_gen_evaluation(opts: GenEvalOptions) -> dict[str, Any]:
    """Run the whole evaluation and write OUT; returns the results (as in results.json).

    Raises:
        M2LError: a non-empty OUT without `force`, a prompt as long as the clips, no usable
            audio, an unloadable generator, codec or embedder (one line naming the input).
    """
    from m2l.generate.report import render_gen_report

    check_output_folder(opts.out, force=opts.force)
    check_lengths(opts.seconds, opts.prompt_seconds)
    sources = find_items(opts.data)
    embedder = load_embedder(opts.embedding, opts.embedding_weights)
    gen, codec = generator_and_codec(opts.model, opts.device)
    generator = torch.Generator().manual_seed(opts.seed)
    crops = take_crops(sources, int(codec.sample_rate), opts.seconds, opts.clips, generator)
    clips = (5 + (opts.reference is not None)) * len(crops)
    bar = tqdm(total=clips, desc="gen eval", unit="clip", file=sys.stderr, disable=not opts.progress)
    with bar:
        run = Run(opts, gen, codec, lambda: bar.update(1), [])
        sets = clip_sets(run, crops, generator)
        rows = continuations(run, crops, sets["floor"])
        if opts.reference is not None:
            sets["train_floor"] = reference_floor(run, torch.Generator().manual_seed(opts.seed + 1))
    results = header(run, "folder" if opts.data.is_dir() else "manifest", crops)
    fads = fad_scores(run, sets, embedder)
    means = {name: mean([r[name] for r in rows]) for name in CONTINUATIONS}
    results["fad"] = {**fads, "closed_gap": closed_gap(fads)}
    results["continuation"] = {"mel_distance": means}
    for entry, row in zip(results["clips"], rows, strict=True):
        entry["mel_distance"] = {name: row[name] for name in CONTINUATIONS}
    results["targets"] = targets(fads, means)
    opts.out.mkdir(parents=True, exist_ok=True)
    results["media"] = write_media(run, sets, [r["audio"] for r in rows])
    results["notes"] = run.notes
    results = json_safe(results)
    text = json.dumps(results, indent=1, allow_nan=False) + "\n"
    write_text(opts.out / "results.json", text, force=opts.force)
    write_text(opts.out / "report.html", render_gen_report(results), force=opts.force)
    return results
