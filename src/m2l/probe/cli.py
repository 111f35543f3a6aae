"""`m2l probe`: MIR probes on a labelled set: pitch, pitch class, instrument on isolated notes, or
key, tempo, meter (also key_mode, tonic) on music excerpts.

    m2l probe --model A [--model B ...] --data DATA/notes/manifest.jsonl --out OUT_DIR
              [--tasks pitch,pitch_class,instrument] [--probes linear,mlp] [--pool mean] [--force]
    m2l probe --model A --data DATA/excerpts/manifest.jsonl --out OUT_DIR   # key,tempo,meter

`--notes` is the former name of `--data`. The default tasks and pooling follow the manifest: rows
with a "key" are excerpts (tasks key, tempo, meter; pooling meanstd), others notes (pitch,
pitch_class, instrument; pooling mean).

For every model: its paper MIR features and its plain latents (see `m2l.probe.features`); once per
architecture, the same encoder with untrained (seeded) weights; once overall, log-mel statistics.
Each feature set x task x probe is trained on the train split, tuned on val and scored on test
(`m2l.probe.probes`). Results go to OUT_DIR/probe.json (never overwritten without --force) and a
table on stdout; features are cached under OUT_DIR/cache (or --cache).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from m2l.cli.args import add_quiet, check_device, comma_choices, device_arg
from m2l.datasets import SPLITS
from m2l.files import check_output, check_output_folder
from m2l.probe import SET_TASKS, TASK_FIELDS

if TYPE_CHECKING:
    from m2l.probe.features import NoteSet

RESULT_FILE = "probe.json"
RESULT_FORMAT, RESULT_VERSION = "m2l-probe", 1
DEFAULT_POOL = {"notes": "mean", "excerpts": "meanstd"}


@dataclass(frozen=True)
class FeatureSet:
    """One feature matrix to probe.

    Attributes:
        model: the --model argument, "untrained NAME" or "log-mel".
        model_id: the weights' id (or the baseline's).
        feature: "features", "latents", "untrained" or "logmel".
        matrix: [notes, dim] float32.
    """

    model: str
    model_id: str
    feature: str
    matrix: np.ndarray


def add_probe(p: argparse.ArgumentParser) -> None:
    """Declare the options of `m2l probe`."""
    from m2l.probe.probes import PROBES

    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="SOURCE",
        help="model to probe: preset (untrained), checkpoint path or 'music2latent'; "
        "repeatable (none: only the log-mel baseline)",
    )
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--data",
        dest="manifest",
        metavar="MANIFEST",
        help="labelled manifest (JSON lines): DATA/notes/manifest.jsonl or DATA/excerpts/manifest.jsonl",
    )
    data.add_argument("--notes", dest="manifest", metavar="MANIFEST", help="the same as --data")
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="folder for probe.json (and cache/)")
    p.add_argument(
        "--tasks",
        type=comma_choices(tuple(TASK_FIELDS), "task"),
        default=None,
        help="comma-separated tasks (default: "
        + "; ".join(f"{','.join(tasks)} for {kind}" for kind, tasks in SET_TASKS.items())
        + ")",
    )
    p.add_argument(
        "--pool",
        choices=("mean", "meanstd"),
        help="pooling of the codec outputs over time: mean, or mean and std "
        "(default: mean for notes, meanstd for excerpts)",
    )
    p.add_argument(
        "--probes",
        type=comma_choices(PROBES, "probe"),
        default=list(PROBES),
        help=f"comma-separated probes (default: {','.join(PROBES)})",
    )
    p.add_argument("--cache", metavar="DIR", help="feature cache folder (default: OUT_DIR/cache)")
    p.add_argument("--device", type=device_arg, help="cpu, cuda, cuda:N, mps (default: best available)")
    p.add_argument("--force", action="store_true", help="overwrite OUT_DIR/probe.json")
    add_quiet(p, "no progress bars")


def extract_feature_sets(
    notes: NoteSet,
    sources: list[str],
    cache_dir: Path,
    device: str | None,
    quiet: bool,
    pool: str = "mean",
) -> list[FeatureSet]:
    """Every model's features and latents, one untrained baseline per architecture, log-mel stats.

    Args:
        notes: the `NoteSet`.
        sources: --model arguments (duplicates are probed once).
        cache_dir: the feature cache folder.
        device: torch device of the encoders (None: best available).
        quiet: no progress bars.
        pool: pooling of the codec outputs ("mean" or "meanstd", `features.codec_extractor`).

    Returns:
        The feature sets in report order.
    """
    from m2l.loading import UNTRAINED_TAG, load_model, make_codec
    from m2l.models import create
    from m2l.probe import features

    def extractor(model: Any, model_id: str) -> Any:
        return lambda: features.codec_extractor(make_codec(model, model_id=model_id, device=device), pool)

    suffix = "" if pool == "mean" else f"+{pool}"  # the cache key of pooled features

    sets: list[FeatureSet] = []
    baselines: dict[str, FeatureSet] = {}
    for source in dict.fromkeys(sources):
        model, model_id = features.seeded(lambda source=source: load_model(source))
        # a preset without weights is the seeded untrained encoder: share its cache entry
        key = features.untrained_id(model.cfg) if model_id.endswith(UNTRAINED_TAG) else model_id
        key += suffix
        feats = features.cached_features(
            notes,
            cache_dir,
            key,
            ("features", "latents"),
            extractor(model, model_id),
            f"{source} features",
            quiet,
        )
        sets += [FeatureSet(source, model_id, kind, feats[kind]) for kind in ("features", "latents")]
        uid = features.untrained_id(model.cfg)
        if uid not in baselines:
            cfg = model.cfg
            untrained = features.cached_features(
                notes,
                cache_dir,
                uid + suffix,
                ("features",),
                lambda cfg=cfg, uid=uid: extractor(features.seeded(lambda: create(cfg)), uid)(),
                f"untrained {cfg.name} features",
                quiet,
            )
            baselines[uid] = FeatureSet(f"untrained {cfg.name}", uid, "untrained", untrained["features"])
    logmel = features.cached_features(
        notes,
        cache_dir,
        features.LOGMEL_ID,
        ("logmel",),
        features.logmel_extractor,
        "log-mel features",
        quiet,
    )
    return [*sets, *baselines.values(), FeatureSet("log-mel", features.LOGMEL_ID, "logmel", logmel["logmel"])]


def format_table(report: dict[str, Any]) -> str:
    """Test accuracies as a text table: a row per feature set, a column per task x probe."""
    columns = [(t, p) for t in report["tasks"] for p in report["probes"]]
    by_key = {(r["model"], r["feature"], r["task"], r["probe"]): r for r in report["results"]}
    heads = ["model", "feature", "dim", *[f"{t}/{p}" for t, p in columns]]
    rows = []
    for fs in report["feature_sets"]:
        cells = []
        for t, p in columns:
            acc = by_key[(fs["model"], fs["feature"], t, p)]["accuracy"]
            cells.append("-" if acc is None else f"{acc:.3f}")
        rows.append([fs["model"], fs["feature"], str(fs["dim"]), *cells])
    first = {t: next(r for r in report["results"] if r["task"] == t) for t in report["tasks"]}
    for label, key in (("chance (majority)", "chance_majority"), ("chance (1/classes)", "chance_uniform")):
        rows.append([label, "", "", *[f"{first[t][key]:.3f}" for t, _ in columns]])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    n, unit = report["splits"], report.get("set", "notes")
    title = (
        f"test accuracy ({report['manifest']}: train {n['train']}, val {n['val']}, test {n['test']} {unit})"
    )
    return "\n".join([title, line(heads), *(line(r) for r in rows)])


def run_probe(args: argparse.Namespace) -> int:
    """Run `m2l probe`; returns the exit code (errors are raised as `M2LError`)."""
    from m2l.files import write_text
    from m2l.probe import probes
    from m2l.probe.features import read_notes

    probes.require_sklearn()
    out = Path(args.out)
    result = out / RESULT_FILE
    check_output_folder(out)
    check_output(result, args.force)
    check_device(args.device)
    notes = read_notes(args.manifest, args.tasks)
    args.tasks = list(notes.labels)
    args.pool = args.pool or DEFAULT_POOL[notes.kind]
    cache_dir = Path(args.cache) if args.cache else out / "cache"
    sets = extract_feature_sets(notes, args.model, cache_dir, args.device, args.quiet, args.pool)
    report = _report(args, notes, sets, _score_all(args, notes, sets))
    write_text(result, json.dumps(report, indent=2) + "\n", force=args.force)
    print(format_table(report), flush=True)
    return 0


def _set_info(fs: FeatureSet) -> dict[str, Any]:
    """What names a feature set in the results: its model, weights, feature and width."""
    return {"model": fs.model, "model_id": fs.model_id, "feature": fs.feature, "dim": int(fs.matrix.shape[1])}


def _score_all(args: argparse.Namespace, notes: NoteSet, sets: list[FeatureSet]) -> list[dict[str, Any]]:
    """One result row per (feature set, task, probe): the probe's scores on the splits."""
    from m2l.probe import probes

    return [
        {
            **_set_info(fs),
            "task": task,
            "probe": probe,
            **probes.evaluate_probe(fs.matrix, notes.labels[task], notes.splits, probe),
        }
        for fs in sets
        for task in args.tasks
        for probe in args.probes
    ]


def _report(
    args: argparse.Namespace, notes: NoteSet, sets: list[FeatureSet], results: list[dict[str, Any]]
) -> dict[str, Any]:
    """results.json: the manifest it scored, the protocol, the feature sets and the result rows."""
    from m2l.probe import probes

    return {
        "format": RESULT_FORMAT,
        "version": RESULT_VERSION,
        "manifest": str(notes.manifest),
        "manifest_sha256": notes.sha256,
        "set": notes.kind,
        "splits": {s: notes.count(s) for s in SPLITS},
        "tasks": list(args.tasks),
        "classes": notes.classes or {},
        "probes": list(args.probes),
        "protocol": {
            "pooling": args.pool,
            "standardise": "train mean and std",
            "selection": "val accuracy",
            "seed": probes.SEED,
            "linear": {"C": list(probes.LINEAR_C)},
            "mlp": {
                "hidden": probes.MLP_HIDDEN,
                "alpha": list(probes.MLP_ALPHA),
                "max_iter": probes.MLP_MAX_ITER,
            },
        },
        "feature_sets": [_set_info(fs) for fs in sets],
        "results": results,
    }
