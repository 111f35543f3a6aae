"""`m2l info PATH... [--json]`: describe .m2l latent files, model checkpoints and shards.

`inspect_path` returns a JSON-able dict for one path (a latent file, an m2l checkpoint, a training
checkpoint, a shard of a packed latent dataset or the authors' checkpoint); `format_info` turns it
into text. A folder stands for the m2l files in it (`m2l_files`: walked recursively, sorted; the
other files are counted in one closing line).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from m2l.cli.report import EXPECTED_ERRORS, PROG, describe, error, naming
from m2l.config import config_to_dict
from m2l.errors import M2LError
from m2l.files import walk_files
from m2l.sniff import LATENT_SUFFIX


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _latent_info(path: Path, meta: dict[str, str] | None) -> dict[str, Any]:
    from m2l.formats import load_latents

    lf = load_latents(path)
    z = lf.latents.float()
    shape = list(z.shape)
    return {
        "path": str(path),
        "type": "latents",
        "format_version": int(meta.get("version", 0)) if meta else None,
        "model_id": lf.model_id,
        "config_hash": lf.config_hash,
        "kind": lf.kind,
        "sample_rate": lf.sample_rate,
        "channels": lf.channels,
        "length": lf.length,
        "duration_seconds": lf.length / lf.sample_rate,
        "latent_shape": shape,
        **_latent_layout(lf.kind, shape),
        "latent_scale": lf.latent_scale,
        "left_pad": lf.left_pad,
        "stats": {
            "min": _finite(float(z.min())),
            "max": _finite(float(z.max())),
            "mean": _finite(float(z.mean())),
            "std": _finite(float(z.std(correction=0))),
        },
        "source_sample_rate": lf.source_sample_rate,
        "stereo": stereo_coding(lf),
        "extra": lf.extra,
    }


STEREO_NAMES = {"ms": "mid/side (decoded back to left/right)", "lr": "left/right", "joint": "joint (one row)"}


def stereo_coding(lf: Any) -> str | None:
    """How a latent file carries stereo audio: "ms" or "lr" (rows coded apart; a file without a
    record is "lr"), "joint" (a stereo v2 model's one row); None for mono audio."""
    if lf.extra.get("audio_channels") == 2 and lf.channels == 1:
        return "joint"
    if lf.channels != 2:
        return None
    return str(lf.extra.get("stereo", "lr"))


def _latent_layout(kind: str, shape: list[int]) -> dict[str, int]:
    """v1: [channels, latent_dim, frames]; v2: [rows, chunks, K, latent_dim]."""
    if kind == "v2":
        return {
            "chunks": shape[1],
            "latents_per_chunk": shape[2],
            "latent_dim": shape[3],
            "latent_frames": shape[1] * shape[2],
        }
    return {"latent_frames": shape[-1], "latent_dim": shape[-2]}


def _checkpoint_info(path: Path, meta: dict[str, str] | None) -> dict[str, Any]:
    from m2l.loading import load_model

    model, model_id = load_model(path)
    params = sum(p.numel() for p in model.parameters())
    cfg = model.cfg
    if meta and meta.get("format") == "m2l-checkpoint":
        try:
            extra = json.loads(meta.get("extra", "{}"))
        except json.JSONDecodeError:
            extra = {}
        return {
            "path": str(path),
            "type": "checkpoint",
            "format_version": int(meta.get("version", 0)),
            "model_id": model_id,
            "name": cfg.name,
            "kind": cfg.kind,
            "parameters": params,
            "sha256": meta.get("tensors_sha256", meta.get("sha256")),  # of the weights (version 1: sha256)
            "config": config_to_dict(cfg),
            "extra": extra,
        }
    return {
        "path": str(path),
        "type": "authors-checkpoint",
        "model_id": model_id,
        "name": cfg.name,
        "kind": cfg.kind,
        "parameters": params,
        "note": "the authors' Music2Latent checkpoint (torch); parameters counted after "
        "conversion to m2l (m2l convert writes it as an m2l checkpoint)",
    }


def _training_info(path: Path) -> dict[str, Any]:
    from m2l.train.state import read_state

    parts = read_state(path)
    cfg, ema = parts["model_config"], parts["ema"]
    return {
        "path": str(path),
        "type": "training-checkpoint",
        "step": parts["step"],
        "name": cfg.name,
        "kind": cfg.kind,
        "train_config": parts["train_config"].name,
        "parameters": sum(t.numel() for t in ema.values() if t.is_floating_point()),
        "config": config_to_dict(cfg),
    }


def _generator_info(path: Path) -> dict[str, Any]:
    """A latent generator, every field checked (`m2l.load_generator`)."""
    import dataclasses

    from m2l.generate.checkpoint import load_generator

    gen = load_generator(path)
    return {
        "path": str(path),
        "type": "generator",
        "name": gen.cfg.name,
        "codec": gen.codec_id,
        "codec_source": gen.codec_source,
        "labels": list(gen.labels),
        "parameters": sum(p.numel() for p in gen.model.parameters()),
        "config": dataclasses.asdict(gen.cfg),
    }


def _shard_info(path: Path) -> dict[str, Any]:
    """A shard of a packed latent dataset, its checksum verified (the file is read once)."""
    from m2l.latents.shards import Shard

    shard = Shard(path)
    shard.verify()
    meta = shard.metadata
    return {
        "path": str(path),
        "type": "latent-shard",
        "format_version": int(meta["version"]),
        "model_id": meta.get("model_id"),
        "kind": meta.get("kind"),
        "files": int(meta.get("files", 0)),
        "units": shard.units,
        "shape": list(shard.shape),
        "sample_rate": int(meta.get("sample_rate", 0)),
    }


def inspect_path(path: Path) -> dict[str, Any]:
    """Describe a `.m2l` latent file or a checkpoint as a JSON-able dict.

    Args:
        path: a latent file, an m2l checkpoint, a training checkpoint or the authors' checkpoint.

    Returns:
        The description; its "type" is "latents", "checkpoint", "training-checkpoint",
        "latent-shard" (of a dataset made by `m2l pack`), "generator" or "authors-checkpoint".

    Raises:
        M2LError: when the path is missing, a directory, or none of these.
    """
    from m2l.sniff import Kind, sniff

    if path.is_dir():
        raise M2LError(f"{path}: is a directory; give .m2l files or checkpoints")
    found = sniff(path)  # one-line errors: missing, not a regular file, unreadable
    if found.kind is Kind.LATENTS or (found.format is None and path.suffix.lower() == LATENT_SUFFIX):
        return _latent_info(path, found.metadata)
    if found.kind is Kind.TRAINING_STATE:
        return _training_info(path)
    if found.kind is Kind.SAFETENSORS and found.format == "m2l-latent-shard":
        return _shard_info(path)
    if found.kind is Kind.GENERATOR:
        return _generator_info(path)
    if found.kind is Kind.GENERATOR_STATE:
        raise M2LError(
            f"{path}: {found.description} (m2l generate takes its run folder's generator.safetensors)"
        )
    if found.kind is Kind.SAFETENSORS and found.metadata is not None:
        raise M2LError(
            f"{path}: safetensors file that is neither an m2l latent file nor an m2l "
            f"checkpoint (format={found.format!r})"
        )
    return _checkpoint_info(path, found.metadata)


def m2l_files(folder: Path) -> tuple[list[Path], int]:
    """The m2l files under `folder` and how many other files it holds.

    An m2l file is a latent file (by its header, or any `.m2l` file: a damaged one is described
    as failing), an m2l or training checkpoint, or a shard of a packed latent dataset; files are
    told apart by their first bytes (`m2l.sniff.sniff`), whatever their names.

    Returns:
        (the m2l files, recursively and sorted, hidden names left out; the number of other
        files, unreadable ones and those that are not regular files included).
    """
    from m2l.latents.shards import SHARD_FORMAT
    from m2l.sniff import Kind, sniff

    others = 0

    def other(path: Path, line: str) -> None:
        nonlocal others
        others += 1

    found = []
    for path in walk_files(folder, None, on_skip=other):
        try:
            kind = sniff(path)
        except M2LError:
            kind = None
        ours = kind is not None and (
            kind.kind in (Kind.LATENTS, Kind.CHECKPOINT, Kind.TRAINING_STATE)
            or (kind.kind is Kind.SAFETENSORS and kind.format == SHARD_FORMAT)
        )
        if ours or path.suffix.lower() == LATENT_SUFFIX:
            found.append(path)
        else:
            others += 1
    return sorted(found), others


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)


def _row(label: str, value: Any) -> str:
    return f"  {label + ':':<18} {value}"


def _latent_rows(info: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [
        ("type", "m2l latent file"),
        ("format version", info["format_version"]),
        ("model id", info["model_id"]),
        ("config hash", info["config_hash"]),
        ("sample rate", f"{info['sample_rate']} Hz"),
        ("channels", info["channels"]),
        ("length", f"{info['length']} samples ({info['duration_seconds']:.3f} s)"),
        (
            "source rate",
            "not recorded" if info["source_sample_rate"] is None else f"{info['source_sample_rate']} Hz",
        ),
        ("latent shape", _format_value(info["latent_shape"])),
    ]
    if info["stereo"] is not None:
        rows.append(("stereo", STEREO_NAMES.get(info["stereo"], info["stereo"])))
    if info["kind"] == "v2":
        rows.append(("layout", "[rows, chunks, K, latent_dim] (Music2Latent2 summary embeddings)"))
        rows.append(("chunks", f"{info['chunks']} x {info['latents_per_chunk']} latents"))
    s = info["stats"]
    return [
        *rows,
        ("latent frames", info["latent_frames"]),
        ("latent scale", _format_value(info["latent_scale"])),
        ("left pad", f"{info['left_pad']} samples"),
        (
            "latent values",
            "  ".join(f"{key} {_format_value(s[key])}" for key in ("min", "max", "mean", "std")),
        ),
    ]


def _checkpoint_lines(info: dict[str, Any]) -> list[str]:
    rows: list[tuple[str, Any]] = [
        ("type", "m2l checkpoint"),
        ("format version", info["format_version"]),
        ("model id", info["model_id"]),
        ("config", info["name"]),
        ("kind", info["kind"]),
        ("parameters", f"{info['parameters']:,}"),
        ("sha256", f"{(info['sha256'] or '')[:12]}..."),
    ]
    if info["extra"]:
        rows += [(key, _format_value(value)) for key, value in _flatten(info["extra"])]
    fields = [f"    {key} = {_format_value(value)}" for key, value in _flatten(info["config"])]
    return [*(_row(label, value) for label, value in rows), "  config fields:", *fields]


def _other_rows(info: dict[str, Any]) -> list[tuple[str, Any]]:
    """A training checkpoint, a latent shard, a generator or the authors' checkpoint."""
    if info["type"] == "latent-shard":
        unit = "latent frames" if info["kind"] == "v1" else "chunks"
        return [
            ("type", f"m2l latent dataset shard (version {info['format_version']}, checksum verified)"),
            ("model id", info["model_id"]),
            ("kind", info["kind"]),
            ("files", info["files"]),
            ("length", f"{info['units']} {unit} (tensor {info['shape']})"),
            ("sample rate", f"{info['sample_rate']} Hz"),
        ]
    if info["type"] == "generator":
        return [
            ("type", "m2l latent generator (m2l generate --model FILE)"),
            ("config", f"{info['name']} ({info['config']['objective']} objective)"),
            ("codec", f"{info['codec']} (from {info['codec_source']})"),
            ("labels", ", ".join(info["labels"]) or "none (unconditional)"),
            ("parameters", f"{info['parameters']:,}"),
        ]
    if info["type"] == "training-checkpoint":
        return [
            ("type", "m2l training checkpoint (m2l.load / --model use its EMA weights)"),
            ("step", info["step"]),
            ("config", f"{info['name']} ({info['kind']}), recipe {info['train_config']}"),
            ("parameters", f"{info['parameters']:,}"),
        ]
    return [
        ("type", "the authors' Music2Latent checkpoint (torch .pt)"),
        ("model id", info["model_id"]),
        ("config", f"{info['name']} (after conversion)"),
        ("parameters", f"{info['parameters']:,} (after conversion)"),
    ]


def format_info(info: dict[str, Any]) -> str:
    """Human-readable text for `inspect_path` output.

    Args:
        info: what `inspect_path` returned.

    Returns:
        The path on the first line, then one indented "label: value" line per field.
    """
    if info["type"] == "checkpoint":
        body = _checkpoint_lines(info)
    else:
        rows = _latent_rows(info) if info["type"] == "latents" else _other_rows(info)
        body = [_row(label, value) for label, value in rows]
    return "\n".join([str(info["path"]), *body])


def add_info(p: argparse.ArgumentParser) -> None:
    """Declare the options of `m2l info`."""
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help=".m2l files, checkpoints, dataset shards, or folders of them (walked recursively)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per file")


def run_info(args: argparse.Namespace) -> int:
    """Run `m2l info`: one description per file on stdout (a folder: one per m2l file in it, and
    a line on stderr counting its other files). Returns the exit code."""
    out = _Descriptions(args.json)
    for item in args.paths:
        path = Path(item)
        if not path.is_dir():
            out.describe(path)
            continue
        files, others = m2l_files(path)
        if not files:
            error(f"{path}: no m2l files in this folder (latent files, checkpoints, dataset shards)")
            out.failed += 1
        for file in files:
            out.describe(file)
        if files and others:
            note = f"skipped {others} file{'s' * (others != 1)} that are not m2l files"
            print(f"{PROG}: {path}: {note}", file=sys.stderr, flush=True)
    return 1 if out.failed else 0


class _Descriptions:
    """Prints descriptions on stdout (text blocks apart by a blank line, or JSON lines) and
    errors as one line each, counting the failures."""

    def __init__(self, as_json: bool) -> None:
        self.as_json, self.shown, self.failed = as_json, 0, 0

    def describe(self, path: Path) -> None:
        """Print the description of one file, or its error."""
        try:
            info = inspect_path(path)
        except EXPECTED_ERRORS as err:
            error(naming(describe(err), path))
            self.failed += 1
            return
        if self.as_json:
            print(json.dumps(info), flush=True)
        else:
            print(("\n" if self.shown else "") + format_info(info), flush=True)
        self.shown += 1
