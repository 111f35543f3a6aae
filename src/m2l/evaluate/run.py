"""`m2l eval`: reconstruct a fixed set of items with one or more codecs and score everything.

For each model, each item (`m2l.evaluate.items`: the first N files in sorted order, optionally a
centred crop of S seconds) is encoded once (encoding is deterministic) and decoded for every sweep
setting: every `steps` value, times every `sigma_cond` value for v2 models. A v1 model ignores the
sigma_cond list (a note says so); a run whose models are all v1 refuses it, since it could change
nothing. Decoding uses the same `seed` for every item and setting.

Scores (`results.json`, schema in `m2l.evaluate.report`):
- per item: SI-SDR, mel distance, STFT distance (`m2l.evaluate.metrics`, averaged over
  channels), ViSQOL (None with a note when `visqol-python` is missing), the level difference and
  for stereo items the stereo image (`m2l.evaluate.fidelity`), and the chunk-boundary analysis of
  `m2l.evaluate.boundaries`;
- per setting: the means of the per-item scores (of the stereo items for the stereo image), FAD
  between the original items and their reconstructions (`m2l.evaluate.fad` with a pluggable
  embedder), the boundary/interior ratio pooled over items, the decoding time, and for a
  multi-step setting the change of ViSQOL and mel distance from one step;
- per model: latent statistics over the latents of all items (`m2l.evaluate.latents`; latents do
  not depend on the decoding settings).

Outputs in OUT_DIR: results.json and report.html (atomic writes), and for the first
`audio_items` items audio/*.wav and images/*.png of the original and of each reconstruction.
OUT_DIR must be absent or empty unless `force` is set.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from m2l.errors import M2LError
from m2l.evaluate.boundaries import (
    boundary_analysis,
    boundary_positions,
    boundary_spacing,
    pooled_ratio,
)
from m2l.evaluate.items import Item, find_items, load_items
from m2l.evaluate.results import finite_or_none, json_safe, results_preamble
from m2l.files import check_output_folder, write_text

RESULTS_FORMAT = "m2l-eval"
RESULTS_VERSION = 1
SPECTROGRAM_HEIGHT = 256
SPECTROGRAM_WIDTH = 512  # plot columns of every report picture (the time axis is resampled to it)
ITEM_METRICS = ("si_sdr", "mel_distance", "stft_distance", "level_db")
PARTIAL_METRICS = ("visqol", "lr_correlation_error", "side_mid_change_db", "balance_error")
"""Item scores that some items lack (ViSQOL fails on very short items; the stereo image needs
stereo items): their setting means are over the items that have them."""
STEP_CHANGES = ("visqol", "mel_distance")
"""Scores whose change from one decoding step is given for every multi-step setting."""


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: its report `label` and the `source` given to `m2l.load`."""

    label: str
    source: str


@dataclass(frozen=True)
class Setting:
    """One decoding setting of the sweep (`sigma_cond` None: the codec default, or v1)."""

    steps: int
    sigma_cond: float | None = None

    @property
    def label(self) -> str:
        """Human-readable name, e.g. "steps=2 sigma_cond=0.4"."""
        return f"steps={self.steps}" + ("" if self.sigma_cond is None else f" sigma_cond={self.sigma_cond:g}")

    @property
    def slug(self) -> str:
        """File-name part, e.g. "steps2-sigma0.4"."""
        return f"steps{self.steps}" + ("" if self.sigma_cond is None else f"-sigma{self.sigma_cond:g}")


@dataclass(frozen=True)
class EvalOptions:
    """Everything `run_evaluation` needs; see `m2l eval --help` for the meaning of each field."""

    models: tuple[ModelSpec, ...]
    data: Path
    out: Path
    items: int | None = None
    seconds: float | None = None
    steps: tuple[int, ...] = (1,)
    sigma_cond: tuple[float, ...] = ()
    embedding: str = "mel-stats"
    embedding_weights: str | None = None
    audio_items: int = 4
    seed: int = 0
    force: bool = False
    device: str | None = None
    window: float | None = None
    stereo: str | None = None
    visqol: bool = True
    progress: bool = True
    command: str = ""


@dataclass
class EvalContext:
    """State shared while evaluating: options, embedder, notes, progress bar, ViSQOL on/off."""

    opts: EvalOptions
    embedder: Any
    bar: Any = None
    notes: list[str] = field(default_factory=list)
    visqol_on: bool = True

    def note(self, text: str) -> None:
        """Record a note once (and show it as a warning on stderr)."""
        if text not in self.notes:
            self.notes.append(text)
            tqdm.write(f"m2l: note: {text}", file=sys.stderr)


# ----------------------------------------------------------------------------- small helpers
def parse_model_arg(text: str) -> ModelSpec:
    """`--model` value -> ModelSpec: "LABEL=SOURCE", or a plain SOURCE used as its own label.

    The `=` form applies only when the whole text is not an existing path and LABEL is a plain
    name (no path separator).
    """
    label, sep, source = text.partition("=")
    if sep and label and source and "/" not in label and os.sep not in label and not Path(text).exists():
        return ModelSpec(label, source)
    return ModelSpec(text, text)


def slug(text: str, limit: int = 40) -> str:
    """A safe file-name fragment of `text`."""
    return (re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model")[:limit]


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse an OUT_DIR that is a file, or is not empty, unless `force`."""
    check_output_folder(out, force=force)


def mean_or_none(values: list[float | None]) -> float | None:
    """Mean of the values, or None when any is None (or there are none)."""
    if not values or any(v is None for v in values):
        return None
    return finite_or_none(sum(values) / len(values))  # type: ignore[arg-type]


def mean_present(values: list[float | None]) -> float | None:
    """Mean of the values that are not None, or None when there are none."""
    present = [v for v in values if v is not None]
    return finite_or_none(sum(present) / len(present)) if present else None


def sweep(codec: Any, steps: tuple[int, ...], sigma_cond: tuple[float, ...]) -> list[Setting]:
    """The decoding settings of one model."""
    takes_sigma = codec.default_sigma_cond is not None
    sigmas: tuple[float | None, ...] = sigma_cond if sigma_cond and takes_sigma else (None,)
    return [Setting(k, s) for k in steps for s in sigmas]


def match_channels(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Average a stereo model's 2-channel output [2, samples] of a mono item [1, samples] to mono."""
    if estimate.shape[0] != reference.shape[0] and reference.shape[0] == 1:
        return estimate.mean(dim=0, keepdim=True)
    return estimate


# ----------------------------------------------------------------------------- scoring
def item_scores(
    estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int, ctx: EvalContext
) -> dict[str, float | None]:
    """SI-SDR, mel and STFT distances (channel means) and ViSQOL of one reconstruction.

    `estimate` and `reference` are [channels, samples] at `sample_rate`; a ViSQOL failure turns
    ViSQOL off for the rest of the run (with a note), and its score is None. SI-SDR and the STFT
    distance, which divide by the original's energy, skip channels that are silent in the
    original (a source panned hard to one side); what leaks into them shows in the mel distance
    and the balance error.
    """
    from m2l.evaluate.fidelity import SILENCE, fidelity_scores
    from m2l.evaluate.metrics import mel_distance, si_sdr, stft_distance

    audible = reference.double().square().mean(-1) >= SILENCE  # [channels]
    if not audible.any():
        audible = torch.ones_like(audible)  # a silent item: every channel, as before
    heard_est, heard_ref = estimate[audible], reference[audible]
    scores: dict[str, float | None] = {
        "si_sdr": finite_or_none(si_sdr(heard_est, heard_ref).mean()),
        "mel_distance": finite_or_none(mel_distance(estimate, reference, sample_rate).mean()),
        "stft_distance": finite_or_none(stft_distance(heard_est, heard_ref).mean()),
        "visqol": None,
    }
    fidelity = fidelity_scores(estimate, reference, sample_rate)
    scores.update({k: finite_or_none(v) for k, v in fidelity.items()})
    if ctx.visqol_on:
        from m2l.evaluate.visqol import VisqolSignalError, visqol

        try:
            scores["visqol"] = finite_or_none(visqol(estimate, reference, sample_rate))
        except VisqolSignalError:  # this item only (one note for all): its mean is over the others
            ctx.note(
                "ViSQOL not computed for some items (it failed on their signals, e.g. too short "
                "for its patches); ViSQOL means are over the other items"
            )
        except M2LError as err:
            ctx.visqol_on = False
            ctx.note(f"ViSQOL not computed: {err}")
    return scores


def setting_fad(
    reference: list[torch.Tensor], estimate: list[torch.Tensor], sample_rate: int, ctx: EvalContext, what: str
) -> float | None:
    """FAD of one setting, or None with a note when it cannot be computed."""
    from m2l.evaluate.fad import fad

    try:
        return finite_or_none(fad(reference, estimate, sample_rate, ctx.embedder))
    except M2LError as err:
        ctx.note(f"FAD not computed for {what}: {err}")
        return None


def model_latent_stats(latents: list[torch.Tensor], codec: Any) -> dict[str, Any]:
    """Latent statistics over the latent vectors of every item of one model.

    `latents` are the codec's, v1 [channels, 64, frames] or v2 [rows, chunks, K, 64], one per item.
    """
    from m2l.evaluate.latents import latent_stats

    dim = codec.latent_channel_axis
    vectors = torch.cat([z.movedim(dim, -1).reshape(-1, z.shape[dim]) for z in latents])
    return latent_stats(vectors, dim=-1, latent_scale=float(codec.cfg.latent_scale))


# ----------------------------------------------------------------------------- outputs
def write_media(
    out: Path, stem: str, wave: torch.Tensor, sample_rate: int, reference: torch.Tensor | None = None
) -> dict[str, str]:
    """audio/STEM.wav and images/STEM.png; returns their paths relative to `out`.

    Args:
        out: the report folder.
        stem: the file names' stem.
        wave: [channels, samples] audio.
        sample_rate: its rate.
        reference: [channels, samples] original audio whose loudest spectrogram bin is drawn as
            0 dB (`wave` itself if None): an item's original and every reconstruction of it share
            one dB scale, so a quieter reconstruction looks darker.
    """
    from m2l.audio.io import save_audio
    from m2l.evaluate.images import spectrogram_peak, spectrogram_png

    audio, image = f"audio/{stem}.wav", f"images/{stem}.png"
    save_audio(out / audio, wave, sample_rate, force=True)
    spectrogram_png(
        wave,
        out / image,
        sample_rate=sample_rate,
        height=SPECTROGRAM_HEIGHT,
        width=SPECTROGRAM_WIDTH,
        reference_peak=spectrogram_peak(wave if reference is None else reference),
        axes=True,
    )
    return {"audio": audio, "image": image}


def _decode(codec: Any, z: torch.Tensor, item: Item, setting: Setting, seed: int) -> torch.Tensor:
    """Decode the latents of `item` with one setting, as [channels, samples] like the item."""
    extra = {} if setting.sigma_cond is None else {"sigma_cond": setting.sigma_cond}
    y = codec.decode(z, seed=seed, length=item.wave.shape[-1], steps=setting.steps, **extra)
    return match_channels(y, item.wave)


def _score_item(
    codec: Any, z: torch.Tensor, item: Item, setting: Setting, mslug: str, ctx: EvalContext
) -> tuple[dict[str, Any], torch.Tensor, float]:
    """Reconstruct one item with one setting: its row of scores, the audio and the decode time."""
    started = time.perf_counter()
    y = _decode(codec, z, item, setting, ctx.opts.seed)
    seconds = time.perf_counter() - started
    row: dict[str, Any] = {"item": item.index, "name": item.name}
    row.update(item_scores(y, item.wave, item.sample_rate, ctx))
    bounds = boundary_positions(codec, item.wave.shape[-1])
    row["boundary"] = boundary_analysis(y, item.wave, item.sample_rate, bounds)
    row["media"] = None
    if item.index < ctx.opts.audio_items:
        stem = f"{item.slug}__{mslug}__{setting.slug}"
        row["media"] = write_media(ctx.opts.out, stem, y, item.sample_rate, reference=item.wave)
    return row, y, seconds


def evaluate_model(
    spec: ModelSpec, index: int, codec: Any, items: list[Item], ctx: EvalContext
) -> dict[str, Any]:
    """Every setting of one model over every item; the model's entry of results.json."""
    settings = sweep(codec, ctx.opts.steps, ctx.opts.sigma_cond)
    mslug = f"m{index}-{slug(spec.label)}"
    rows: dict[Setting, list[dict[str, Any]]] = {s: [] for s in settings}
    recon: dict[Setting, list[torch.Tensor]] = {s: [] for s in settings}
    seconds = dict.fromkeys(settings, 0.0)
    latents = []
    for item in items:
        z = codec.encode(item.wave)
        latents.append(z)
        for setting in settings:
            row, y, took = _score_item(codec, z, item, setting, mslug, ctx)
            rows[setting].append(row)
            recon[setting].append(y)
            seconds[setting] += took
            if ctx.bar is not None:
                ctx.bar.update(1)
    references = [item.wave for item in items]
    out_settings = []
    for setting in settings:
        metrics = {m: mean_or_none([r[m] for r in rows[setting]]) for m in ITEM_METRICS}
        metrics.update({m: mean_present([r[m] for r in rows[setting]]) for m in PARTIAL_METRICS})
        what = f"{spec.label} {setting.label}"
        metrics["fad"] = setting_fad(references, recon[setting], items[0].sample_rate, ctx, what)
        metrics["boundary_ratio"] = finite_or_none(pooled_ratio([r["boundary"] for r in rows[setting]]))
        metrics["decode_seconds"] = seconds[setting]
        out_settings.append(
            {
                "label": setting.label,
                "slug": setting.slug,
                "steps": setting.steps,
                "sigma_cond": setting.sigma_cond,
                "metrics": metrics,
                "items": rows[setting],
            }
        )
    step_changes(out_settings)
    return {
        "label": spec.label,
        "source": spec.source,
        "slug": mslug,
        "model_id": codec.model_id,
        "version": codec.version,
        "config": codec.cfg.name,
        "sample_rate": int(codec.sample_rate),
        "hop_length": int(codec.samples_per_unit),  # results.json keeps its key (format 1)
        "boundary_spacing": boundary_spacing(codec),
        "latent_stats": model_latent_stats(latents, codec),
        "settings": out_settings,
    }


def step_changes(settings: list[dict[str, Any]]) -> None:
    """Give each multi-step setting "<score>_change_from_1_step" for the scores of
    `STEP_CHANGES`: its mean minus that of the 1-step setting with the same sigma_cond (None
    without one). Added to the settings' metrics in place."""
    one_step = {s["sigma_cond"]: s["metrics"] for s in settings if s["steps"] == 1}
    for setting in settings:
        if setting["steps"] == 1:
            continue
        base = one_step.get(setting["sigma_cond"], {})
        for name in STEP_CHANGES:
            now, then = setting["metrics"].get(name), base.get(name)
            change = None if now is None or then is None else finite_or_none(now - then)
            setting["metrics"][f"{name}_change_from_1_step"] = change


# ----------------------------------------------------------------------------- the run
def load_codecs(opts: EvalOptions, ctx: EvalContext) -> list[Any]:
    """Load every model (one-line errors name the source) and check the sweep applies."""
    from m2l.loading import load

    if not opts.models:
        raise M2LError("no model to evaluate; pass --model SOURCE (repeatable)")
    labels = [m.label for m in opts.models]
    if len(set(labels)) != len(labels):
        raise M2LError(f"model labels must be unique, got {', '.join(labels)}; use --model LABEL=SOURCE")
    options: dict[str, Any] = {} if opts.window is None else {"window_seconds": opts.window}
    if opts.stereo is not None:
        options["stereo"] = opts.stereo
    codecs = []
    for spec in opts.models:
        try:
            codecs.append(load(spec.source, device=opts.device, **options))
        except M2LError as err:
            text = str(err)
            raise M2LError(text if spec.source in text else f"{spec.source}: {text}") from None
    if opts.sigma_cond:
        v1 = [m.label for m, c in zip(opts.models, codecs, strict=True) if c.default_sigma_cond is None]
        if len(v1) == len(codecs):
            raise M2LError("--sigma-cond applies to Music2Latent2 (v2) models only, and no --model is v2")
        if v1:
            ctx.note(f"--sigma-cond ignored for v1 model(s): {', '.join(v1)}")
    return codecs


def _original_media(items: list[Item], opts: EvalOptions) -> list[dict[str, Any]]:
    """The items' entries of results.json (writing the originals' audio and spectrograms)."""
    entries = []
    for item in items:
        entry: dict[str, Any] = {
            "index": item.index,
            "name": item.name,
            "path": str(item.path),
            "start_seconds": item.start / item.sample_rate,
            "seconds": item.wave.shape[-1] / item.sample_rate,
            "channels": int(item.wave.shape[0]),
            "media": None,
        }
        if item.index < opts.audio_items:
            entry["media"] = write_media(opts.out, f"{item.slug}__original", item.wave, item.sample_rate)
        entries.append(entry)
    return entries


def _header(opts: EvalOptions, data_kind: str) -> dict[str, Any]:
    """The run description at the top of results.json."""
    return {
        **results_preamble(RESULTS_FORMAT, RESULTS_VERSION, opts.command),
        "data": {
            "source": str(opts.data),
            "kind": data_kind,
            "items": opts.items,
            "seconds": opts.seconds,
            "crop": "centre" if opts.seconds else "whole file",
        },
        "options": {
            "steps": list(opts.steps),
            "sigma_cond": list(opts.sigma_cond),
            "embedding": opts.embedding,
            "embedding_weights": opts.embedding_weights,
            "seed": opts.seed,
            "audio_items": opts.audio_items,
            "window": opts.window,
            "stereo": opts.stereo,
            "device": opts.device,
            "visqol": opts.visqol,
        },
    }


def computed_metrics(models: list[dict[str, Any]]) -> dict[str, bool]:
    """Which metrics hold a value for at least one setting (a skipped or failed one is False)."""
    names = [name for model in models for s in model["settings"] for name in s["metrics"]]
    return {
        name: any(s["metrics"].get(name) is not None for model in models for s in model["settings"])
        for name in dict.fromkeys(names)
    }


def run_evaluation(opts: EvalOptions) -> dict[str, Any]:
    """Run the whole evaluation and write OUT_DIR; returns the results (as in results.json).

    Raises:
        M2LError: for a non-empty OUT_DIR without `force`, bad data, an unloadable model or
            embedder, or an unreadable item (one line naming the input).
    """
    from m2l.evaluate.embeddings import load_embedder
    from m2l.evaluate.report import render_report

    check_out_dir(opts.out, opts.force)
    sources = find_items(opts.data, opts.items)
    ctx = EvalContext(opts, load_embedder(opts.embedding, opts.embedding_weights), visqol_on=opts.visqol)
    codecs = load_codecs(opts, ctx)
    by_rate: dict[int, list[Item]] = {}
    for codec in codecs:
        rate = int(codec.sample_rate)
        if rate not in by_rate:
            by_rate[rate] = load_items(sources, rate, opts.seconds)
    results = _header(opts, "folder" if opts.data.is_dir() else "manifest")
    opts.out.mkdir(parents=True, exist_ok=True)
    results["items"] = _original_media(by_rate[int(codecs[0].sample_rate)], opts)
    total = sum(len(sweep(c, opts.steps, opts.sigma_cond)) for c in codecs) * len(sources)
    with tqdm(
        total=total,
        desc="eval",
        unit="decode",
        file=sys.stderr,
        disable=not opts.progress,
        dynamic_ncols=True,
    ) as bar:
        ctx.bar = bar
        results["models"] = [
            evaluate_model(spec, i, codec, by_rate[int(codec.sample_rate)], ctx)
            for i, (spec, codec) in enumerate(zip(opts.models, codecs, strict=True))
        ]
    if not opts.visqol:
        ctx.notes.append("ViSQOL disabled (--no-visqol)")
    results["computed"] = computed_metrics(results["models"])
    results["notes"] = ctx.notes
    results = json_safe(results)
    text = json.dumps(results, indent=1, allow_nan=False) + "\n"
    write_text(opts.out / "results.json", text, force=opts.force)
    write_text(opts.out / "report.html", render_report(results), force=opts.force)
    return results
