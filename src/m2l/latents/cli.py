"""`m2l pack` and `m2l stats` (registered in `m2l.cli.COMMANDS`, which reports errors as one line).

Torch and the latent modules are imported inside the run functions, so `m2l --help` stays light.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from m2l.cli.args import add_quiet, finite_float

_MB = 1 << 20
DEFAULT_SHARD_MB = 256.0
"""About how many MB of latents a shard holds unless --shard-mb says otherwise."""


def add_pack(p: argparse.ArgumentParser) -> None:
    """Declare `m2l pack LATENT_DIR -o DATASET_DIR [--shard-mb N] [--manifest M] [--force]`."""
    p.add_argument("latent_dir", metavar="LATENT_DIR", help="folder of .m2l files of one model (recursive)")
    p.add_argument("-o", "--output", required=True, metavar="DATASET_DIR", help="dataset folder to write")
    p.add_argument(
        "--shard-mb",
        type=finite_float("a positive number", lambda v: v > 0),
        default=DEFAULT_SHARD_MB,
        metavar="N",
        help="about N MB of latents per shard (default 256; a larger file gets a shard of its own)",
    )
    p.add_argument(
        "--manifest",
        metavar="M",
        help="manifest.jsonl (m2l data fetch) whose row for each file's audio is copied into the index",
    )
    p.add_argument("--force", action="store_true", help="replace a dataset that is already there")
    add_quiet(p)


def run_pack(args: argparse.Namespace) -> int:
    """Pack the folder; one summary line on stderr (a warning when files lack a manifest row)."""
    return pack(
        args.latent_dir,
        args.output,
        shard_bytes=max(1, round(args.shard_mb * _MB)),
        manifest=args.manifest,
        force=args.force,
        quiet=args.quiet,
    )


def pack(
    latent_dir: str,
    dataset_dir: str,
    *,
    shard_bytes: int = round(DEFAULT_SHARD_MB * _MB),
    manifest: str | None = None,
    force: bool = False,
    quiet: bool = False,
) -> int:
    """`m2l pack LATENT_DIR -o DATASET_DIR` (also `m2l encode --pack`): pack the folder
    (`m2l.latents.pack.pack_folder`), say what was written in one line on stderr, warn when files
    lack a manifest row; returns the exit code."""
    from m2l.latents.pack import pack_folder

    summary = pack_folder(
        latent_dir, dataset_dir, shard_bytes=shard_bytes, manifest=manifest, force=force, quiet=quiet
    )
    if summary.unmatched:
        warnings.warn(
            f"{manifest}: no row for {len(summary.unmatched)} of {summary.files} files "
            f"(e.g. {summary.unmatched[0]}); their index rows have no manifest",
            stacklevel=1,
        )
    print(
        f"m2l: packed {summary.files} files ({summary.units} units, {summary.bytes / _MB:.1f} MB) "
        f"into {summary.shards} shard{'s' * (summary.shards != 1)}: {summary.index}",
        file=sys.stderr,
    )
    return 0


def add_stats(p: argparse.ArgumentParser) -> None:
    """Declare `m2l stats LATENTS [-o FILE] [--force] [--no-verify]`."""
    p.add_argument("latents", metavar="LATENTS", help="a packed latent dataset or a folder of .m2l files")
    p.add_argument(
        "-o", "--output", metavar="FILE", help="the JSON file to write (default LATENTS/stats.json)"
    )
    p.add_argument("--force", action="store_true", help="overwrite FILE")
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the checksums of the latents (headers are still checked)",
    )


def run_stats(args: argparse.Namespace) -> int:
    """Compute and write the statistics; a summary on stdout."""
    from m2l.files import check_output
    from m2l.latents.stats import compute_stats, stats_path

    out = Path(args.output) if args.output else stats_path(args.latents)
    check_output(out, args.force)
    stats = compute_stats(args.latents, verify=not args.no_verify)
    stats.save(out, force=args.force)
    print(
        f"{stats.vectors} latent vectors of {stats.model_id} ({stats.kind}, {stats.latent_dim} dims): "
        f"mean {stats.global_mean:.4g}, std {stats.global_std:.4g} (per dimension "
        f"{min(stats.std):.4g}..{max(stats.std):.4g}) -> {out}"
    )
    return 0
