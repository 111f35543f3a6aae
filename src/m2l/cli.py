"""The `m2l` command line: encode, decode, reconstruct, info, convert.

    m2l encode INPUT... -o OUT        audio -> .m2l latent files
    m2l decode INPUT... -o OUT        .m2l latent files -> audio (.wav / .flac)
    m2l reconstruct INPUT... -o OUT   audio -> audio through the codec
    m2l info PATH... [--json]         describe .m2l files and checkpoints
    m2l convert SOURCE OUT            any loadable model source -> m2l checkpoint

Inputs may be files or directories; a directory is walked recursively (hidden files and folders
are skipped) and its tree is mirrored under OUT. Every problem with an input is reported as one
line `m2l: error: ...` on stderr and the other inputs are still processed. Exit codes: 0 success,
1 when any input failed, 2 for usage errors, 130 when interrupted.

Subcommands live in `COMMANDS` (name -> `Command(help, add_arguments, run)`); adding one (e.g.
`train`) is one entry there. `run` receives the parsed namespace and returns the exit code.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from m2l.audio.io import AUDIO_EXTENSIONS, WRITE_EXTENSIONS, save_audio
from m2l.config import PRESETS, config_to_dict
from m2l.datasets import cli as data_cli
from m2l.errors import M2LError
from m2l.evaluate import cli as eval_cli
from m2l.formats import load_latents, safetensors_metadata, save_latents
from m2l.probe import cli as probe_cli
from m2l.train import cli as train_cli

PROG = "m2l"
LATENT_SUFFIX = ".m2l"
DEFAULT_MODEL = "default"


# ----------------------------------------------------------------------------- reporting
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(message: str) -> None:
    """Print `m2l: error: message` as one line on stderr (without breaking a progress bar)."""
    tqdm.write(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)


def _describe(err: BaseException) -> str:
    """One line for an expected error (M2LError, OSError)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return _one_line(str(err)) or type(err).__name__


def _naming(message: str, *paths: Path) -> str:
    """Make sure an error message names the file it is about."""
    if any(str(p) in message for p in paths):
        return message
    return f"{paths[0]}: {message}"


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    tqdm.write(f"{PROG}: warning: {_one_line(str(message))}", file=sys.stderr)


EXPECTED_ERRORS = (M2LError, OSError)


# ----------------------------------------------------------------------------- argument types
def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type for integers >= `minimum`, described as `what` in errors."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive integer")
_seed = _int_at_least(0, "non-negative integer")


def _finite_float(what: str, accept: Callable[[float], bool]) -> Callable[[str], float]:
    """An argparse type for finite floats that `accept` takes, described as `what` in errors."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_float = _finite_float("a positive number", lambda v: v > 0)
_non_negative_float = _finite_float("a number >= 0", lambda v: v >= 0)


def _device(text: str) -> str:
    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r} (e.g. cpu, cuda, cuda:1, mps)") from None
    return text


def _check_device(name: str | None) -> None:
    """Refuse a device this machine does not have (one line instead of a torch traceback)."""
    if name is None:
        return
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise M2LError(f"device {name!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise M2LError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise M2LError(f"device {name!r}: MPS is not available on this machine")


# ----------------------------------------------------------------------------- inputs / outputs
@dataclass(frozen=True)
class Job:
    """One input file and the output it produces."""

    src: Path
    dst: Path


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(root: Path, suffixes: frozenset[str], skip: Path | None) -> list[Path]:
    """Files under `root` (recursively, sorted) whose lowercase suffix is in `suffixes`."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not _is_hidden(d) and (skip is None or _resolved(here / d) != skip)
        )
        found.extend(
            here / f for f in sorted(filenames) if not _is_hidden(f) and Path(f).suffix.lower() in suffixes
        )
    return found


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def resolve_jobs(
    inputs: Sequence[str],
    out: str,
    in_suffixes: frozenset[str],
    out_suffixes: frozenset[str],
    out_ext: str,
    what: str,
) -> tuple[list[Job], list[str]]:
    """Map inputs to outputs.

    Args:
        inputs: files or directories given on the command line.
        out: the -o argument.
        in_suffixes: suffixes picked up in directories.
        out_suffixes: suffixes that make OUT a file path (single file input only).
        out_ext: extension of outputs written into a directory OUT.
        what: name of the input kind for messages ("audio", ".m2l").

    Returns:
        (jobs, errors): errors are one-line messages; when there are any nothing should run.
    """
    out_path = Path(out)
    errors: list[str] = []
    jobs: list[Job] = []
    single_file = len(inputs) == 1 and Path(inputs[0]).is_file()
    out_is_file = single_file and out_path.suffix.lower() in out_suffixes and not out_path.is_dir()
    if not out_is_file and out_path.exists() and not out_path.is_dir():
        return [], [f"{out_path}: exists and is not a directory (output folder expected)"]
    if not out_is_file and not out_path.exists() and out_path.suffix.lower() in out_suffixes:
        return [], [
            f"{out_path}: looks like a file, but several inputs or a directory input need an output folder"
        ]
    skip = _resolved(out_path)
    for item in inputs:
        src = Path(item)
        if src.is_dir():
            files = _walk(src, in_suffixes, skip)
            if not files:
                errors.append(
                    f"{src}: no {what} files found in this directory (looked for "
                    f"{', '.join(sorted(in_suffixes))})"
                )
            for f in files:
                rel = f.relative_to(src)
                jobs.append(Job(f, out_path / rel.with_suffix(out_ext)))
        elif src.is_file():
            if out_is_file:
                jobs.append(Job(src, out_path))
            else:
                jobs.append(Job(src, out_path / (src.stem + out_ext)))
        elif src.exists():
            errors.append(f"{src}: not a regular file or directory")
        else:
            errors.append(f"{src}: no such file or directory")
    # the same input twice is done once; two inputs writing one output is an error
    seen_src: set[Path] = set()
    by_dst: dict[Path, Job] = {}
    unique: list[Job] = []
    for job in jobs:
        key = _resolved(job.src)
        if key in seen_src:
            continue
        seen_src.add(key)
        dst_key = _resolved(job.dst)
        if dst_key in by_dst:
            errors.append(
                f"{by_dst[dst_key].src} and {job.src} would both be written to "
                f"{job.dst}; rename one or run them separately"
            )
            continue
        by_dst[dst_key] = job
        unique.append(job)
    return unique, errors


def _check_format_conflict(args: argparse.Namespace, jobs: list[Job]) -> None:
    """-o x.wav --format flac: refuse rather than guess."""
    out = Path(args.output)
    suffix = out.suffix.lower()
    if (
        len(jobs) == 1
        and jobs[0].dst == out
        and suffix in WRITE_EXTENSIONS
        and args.format is not None
        and suffix != f".{args.format}"
    ):
        raise M2LError(f"-o {out} does not match --format {args.format}")


# ----------------------------------------------------------------------------- running files
@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send what C libraries print on file descriptor 2 to /dev/null for a moment.

    libsndfile's MPEG decoder (mpg123) prints "Note: Illegal Audio-MPEG-Header ..." lines
    straight to fd 2 while it probes a corrupt file; the CLI reports the failure in one line
    instead. Python-level output is not affected unless it is written meanwhile.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _read_audio(codec: Any, path: Path, downmix: bool) -> torch.Tensor:
    """[channels, samples] at the model rate, without native decoder chatter on stderr."""
    with _native_stderr_silenced():
        return codec.load(path, downmix=downmix)


def _load_codec(args: argparse.Namespace) -> Any:
    from m2l.loading import load

    if args.checkpoint is not None and args.model not in PRESETS:
        raise M2LError(
            f"--checkpoint only applies to a preset --model "
            f"({', '.join(sorted(PRESETS))}), not {args.model!r}"
        )
    _check_device(args.device)
    options: dict[str, Any] = {}
    if args.window is not None:
        options["window_seconds"] = args.window
    return load(args.model, device=args.device, checkpoint=args.checkpoint, **options)


def _run_files(
    args: argparse.Namespace, jobs: list[Job], errors: list[str], work: Callable[[Any, Job], None], verb: str
) -> int:
    """Report resolution errors, skip existing outputs, load the model once, run `work` per job."""
    if errors:
        for message in errors:
            _error(message)
        return 1
    failed = 0
    todo = []
    for job in jobs:
        if job.dst.exists() and not args.force:
            _error(f"{job.dst}: already exists (pass --force to overwrite)")
            failed += 1
        else:
            todo.append(job)
    if todo:
        try:
            codec = _load_codec(args)
        except EXPECTED_ERRORS as err:
            _error(_describe(err))
            return 1
        if not args.quiet:
            print(f"{PROG}: model {codec.model_id}", file=sys.stderr)
        disable = args.quiet or (len(todo) == 1 and not sys.stderr.isatty())
        for job in tqdm(todo, desc=verb, unit="file", file=sys.stderr, disable=disable, dynamic_ncols=True):
            try:
                work(codec, job)
            except EXPECTED_ERRORS as err:
                _error(_naming(_describe(err), job.src, job.dst))
                failed += 1
    if len(jobs) > 1 and not args.quiet:
        done = len(jobs) - failed
        tail = f", {failed} failed" if failed else ""
        print(f"{PROG}: {verb} {done} of {len(jobs)} files{tail}", file=sys.stderr)
    return 1 if failed else 0


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="SOURCE",
        help=f"model: {DEFAULT_MODEL!r} (the model shipped with m2l), 'music2latent' "
        f"(the authors' checkpoint, fetched from the hub), a checkpoint path, or a "
        f"preset name ({', '.join(sorted(PRESETS))}) (default: %(default)s)",
    )
    g.add_argument("--checkpoint", metavar="PATH", help="weights for a preset --model")
    g.add_argument("--device", type=_device, help="cpu, cuda, cuda:N, mps (default: best available)")
    g.add_argument(
        "--window",
        type=_positive_float,
        metavar="SECONDS",
        help="process audio in windows of this length (bounds memory; default 10)",
    )


def _add_io_options(p: argparse.ArgumentParser, inputs: str, with_format: bool) -> None:
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help=f"{inputs} files or directories (walked recursively)"
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output directory (or output file for a single input file)",
    )
    if with_format:
        p.add_argument(
            "--format",
            choices=sorted(e.lstrip(".") for e in WRITE_EXTENSIONS),
            help="audio format of the outputs (default: wav, or the suffix of -o FILE)",
        )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


def _add_decode_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument("--steps", type=_positive_int, default=1, help="consistency steps (default: %(default)s)")
    g.add_argument("--seed", type=_seed, help="seed for reproducible decoding (default: random)")
    g.add_argument(
        "--sigma-cond",
        type=_non_negative_float,
        metavar="SIGMA",
        help="v2 models: noise level of the re-noised previous chunk (default: 0.4)",
    )


def _add_downmix(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--downmix",
        action="store_true",
        help="average audio with more than 2 channels to mono (instead of refusing it)",
    )


# ----------------------------------------------------------------------------- encode
def _add_encode(p: argparse.ArgumentParser) -> None:
    _add_io_options(p, "audio", with_format=False)
    _add_downmix(p)
    _add_model_options(p)


def _run_encode(args: argparse.Namespace) -> int:
    suffixes = frozenset({LATENT_SUFFIX})
    jobs, errors = resolve_jobs(args.inputs, args.output, AUDIO_EXTENSIONS, suffixes, LATENT_SUFFIX, "audio")

    def work(codec: Any, job: Job) -> None:
        lf = codec.encode_file(_read_audio(codec, job.src, args.downmix))
        save_latents(job.dst, lf, force=args.force)

    return _run_files(args, jobs, errors, work, "encoded")


# ----------------------------------------------------------------------------- decode
def _add_decode(p: argparse.ArgumentParser) -> None:
    _add_io_options(p, ".m2l", with_format=True)
    _add_decode_options(p)
    p.add_argument(
        "--allow-model-mismatch",
        action="store_true",
        help="decode latents made with other weights of the same architecture",
    )
    _add_model_options(p)


def _audio_jobs(
    args: argparse.Namespace, in_suffixes: frozenset[str], what: str
) -> tuple[list[Job], list[str]]:
    ext = f".{args.format or 'wav'}"
    jobs, errors = resolve_jobs(args.inputs, args.output, in_suffixes, WRITE_EXTENSIONS, ext, what)
    if not errors:
        try:
            _check_format_conflict(args, jobs)
        except M2LError as err:
            errors.append(str(err))
    return jobs, errors


def _run_decode(args: argparse.Namespace) -> int:
    jobs, errors = _audio_jobs(args, frozenset({LATENT_SUFFIX}), ".m2l")

    def work(codec: Any, job: Job) -> None:
        lf = load_latents(job.src)
        audio = codec.decode(
            lf,
            steps=args.steps,
            seed=args.seed,
            sigma_cond=args.sigma_cond,
            allow_model_mismatch=args.allow_model_mismatch,
        )
        save_audio(job.dst, audio, lf.sample_rate, force=args.force)

    return _run_files(args, jobs, errors, work, "decoded")


# ----------------------------------------------------------------------------- reconstruct
def _add_reconstruct(p: argparse.ArgumentParser) -> None:
    _add_io_options(p, "audio", with_format=True)
    _add_downmix(p)
    _add_decode_options(p)
    _add_model_options(p)


def _run_reconstruct(args: argparse.Namespace) -> int:
    jobs, errors = _audio_jobs(args, AUDIO_EXTENSIONS, "audio")

    def work(codec: Any, job: Job) -> None:
        lf = codec.encode_file(_read_audio(codec, job.src, args.downmix))
        audio = codec.decode(lf, steps=args.steps, seed=args.seed, sigma_cond=args.sigma_cond)
        save_audio(job.dst, audio, codec.sample_rate, force=args.force)

    return _run_files(args, jobs, errors, work, "reconstructed")


# ----------------------------------------------------------------------------- info
def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _latent_info(path: Path, meta: dict[str, str] | None) -> dict[str, Any]:
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
        "extra": lf.extra,
    }


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
            "sha256": meta.get("sha256"),
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


def inspect_path(path: Path) -> dict[str, Any]:
    """Describe a `.m2l` latent file or a checkpoint as a JSON-able dict."""
    if not path.exists():
        raise M2LError(f"{path}: no such file")
    if path.is_dir():
        raise M2LError(f"{path}: is a directory; give .m2l files or checkpoints")
    meta = safetensors_metadata(path)
    fmt = meta.get("format") if meta else None
    if fmt == "m2l-latents" or (fmt is None and path.suffix.lower() == LATENT_SUFFIX):
        return _latent_info(path, meta)
    if fmt == "m2l-train-state":
        return _training_info(path)
    if meta is not None and fmt != "m2l-checkpoint":
        raise M2LError(
            f"{path}: safetensors file that is neither an m2l latent file nor an m2l "
            f"checkpoint (format={fmt!r})"
        )
    return _checkpoint_info(path, meta)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def format_info(info: dict[str, Any]) -> str:
    """Human-readable text for `inspect_path` output."""
    lines = [str(info["path"])]

    def add(label: str, value: Any) -> None:
        lines.append(f"  {label + ':':<18} {value}")

    if info["type"] == "latents":
        add("type", "m2l latent file")
        add("format version", info["format_version"])
        add("model id", info["model_id"])
        add("config hash", info["config_hash"])
        add("sample rate", f"{info['sample_rate']} Hz")
        add("channels", info["channels"])
        add("length", f"{info['length']} samples ({info['duration_seconds']:.3f} s)")
        add("latent shape", _fmt(info["latent_shape"]))
        if info["kind"] == "v2":
            add("layout", "[rows, chunks, K, latent_dim] (Music2Latent2 summary embeddings)")
            add("chunks", f"{info['chunks']} x {info['latents_per_chunk']} latents")
        add("latent frames", info["latent_frames"])
        add("latent scale", _fmt(info["latent_scale"]))
        add("left pad", f"{info['left_pad']} samples")
        s = info["stats"]
        add(
            "latent values",
            f"min {_fmt(s['min'])}  max {_fmt(s['max'])}  mean {_fmt(s['mean'])}  std {_fmt(s['std'])}",
        )
    elif info["type"] == "checkpoint":
        add("type", "m2l checkpoint")
        add("format version", info["format_version"])
        add("model id", info["model_id"])
        add("config", info["name"])
        add("kind", info["kind"])
        add("parameters", f"{info['parameters']:,}")
        add("sha256", f"{(info['sha256'] or '')[:12]}...")
        if info["extra"]:
            for key, value in _flatten(info["extra"]):
                add(key, _fmt(value))
        lines.append("  config fields:")
        for key, value in _flatten(info["config"]):
            lines.append(f"    {key} = {_fmt(value)}")
    elif info["type"] == "training-checkpoint":
        add("type", "m2l training checkpoint (m2l.load / --model use its EMA weights)")
        add("step", info["step"])
        add("config", f"{info['name']} ({info['kind']}), recipe {info['train_config']}")
        add("parameters", f"{info['parameters']:,}")
    else:
        add("type", "the authors' Music2Latent checkpoint (torch .pt)")
        add("model id", info["model_id"])
        add("config", f"{info['name']} (after conversion)")
        add("parameters", f"{info['parameters']:,} (after conversion)")
    return "\n".join(lines)


def _add_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help=".m2l latent files or checkpoints")
    p.add_argument("--json", action="store_true", help="print one JSON object per path")


def _run_info(args: argparse.Namespace) -> int:
    failed = 0
    first = True
    for item in args.paths:
        path = Path(item)
        try:
            info = inspect_path(path)
        except EXPECTED_ERRORS as err:
            _error(_naming(_describe(err), path))
            failed += 1
            continue
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(("" if first else "\n") + format_info(info), flush=True)
        first = False
    return 1 if failed else 0


# ----------------------------------------------------------------------------- convert
def _add_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="the authors' music2latent.pt, an m2l checkpoint, 'music2latent' (fetched "
        f"from the hub), {DEFAULT_MODEL!r} (shipped) or a preset name (untrained)",
    )
    p.add_argument("out", metavar="OUT", help="m2l checkpoint to write (.safetensors)")
    p.add_argument("--force", action="store_true", help="overwrite OUT")


def _run_convert(args: argparse.Namespace) -> int:
    from m2l.loading import convert

    out = Path(args.out)
    if out.is_dir():
        _error(f"{out}: is a directory; give the checkpoint file to write")
        return 1
    if out.exists() and not args.force:
        _error(f"{out}: already exists (pass --force to overwrite)")
        return 1
    try:
        model_id = convert(args.source, out, force=args.force)
    except EXPECTED_ERRORS as err:
        _error(_naming(_describe(err), Path(args.source), out))
        return 1
    print(model_id)
    return 0


# ----------------------------------------------------------------------------- entry point
@dataclass(frozen=True)
class Command:
    """A subcommand: `add_arguments(parser)` declares its options, `run(args)` returns the exit
    code; an `M2LError` it raises is reported as one line with exit code 1. Expensive imports
    belong inside `run` so that `m2l --help` stays fast."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "encode": Command("encode audio files to .m2l latent files", _add_encode, _run_encode),
    "decode": Command("decode .m2l latent files to audio", _add_decode, _run_decode),
    "reconstruct": Command("encode and decode audio (audio -> audio)", _add_reconstruct, _run_reconstruct),
    "info": Command("describe .m2l latent files and model checkpoints", _add_info, _run_info),
    "convert": Command(
        "write a model (e.g. the authors' music2latent.pt) as an m2l checkpoint", _add_convert, _run_convert
    ),
    "train": Command(
        "train a model (one process, or many under torchrun)", train_cli.add_train, train_cli.run_train
    ),
    "export": Command(
        "write a training checkpoint's EMA weights as an inference checkpoint",
        train_cli.add_export,
        train_cli.run_export,
    ),
    "eval": Command(
        "reconstruct a fixed item set with one or more models; metrics + HTML report",
        eval_cli.add_eval,
        eval_cli.run_eval,
    ),
    "probe": Command(
        "MIR probes (pitch, pitch class, instrument) on a labelled note set",
        probe_cli.add_probe,
        probe_cli.run_probe,
    ),
    "data": Command(
        "build open music/speech/note data sets with manifests (m2l data fetch DATA_DIR)",
        data_cli.add_data,
        data_cli.run_data,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    from m2l import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, description="Consistency autoencoders for audio (Music2Latent)."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failures, 2 usage, 130 interrupt)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.run(args))
    except M2LError as err:  # a command's bad input: one line, exit 1
        _error(_describe(err))
        return 1
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `m2l info ... | head`: stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
