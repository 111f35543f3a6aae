"""The `m2l` command line: encode, decode, reconstruct, info, convert, train, export, eval, probe, data,
pack, stats.

    m2l encode INPUT... -o OUT        audio -> .m2l latent files
    m2l decode INPUT... -o OUT        .m2l latent files -> audio (.wav / .flac)
    m2l reconstruct INPUT... -o OUT   audio -> audio through the codec
    m2l info PATH... [--json]         describe .m2l files and checkpoints
    m2l convert SOURCE OUT            any loadable model source -> m2l checkpoint

Every problem with an input is reported as one line `m2l: error: ...` on stderr and the other
inputs are still processed. Exit codes: 0 success, 1 when any input failed, 2 for usage errors,
130 when interrupted.

Modules: `app` (the `Command` registry `COMMANDS`, `build_parser`, `main`), `report` (one-line
errors and warnings), `args` (argument types and device checks shared with the train, evaluate,
probe and datasets commands), `codec` (encode, decode, reconstruct, convert: their options and
run functions), `one_file` (one input file: read -> codec -> write, and the codec options, model
loading and output checks the jobs share), `jobs` and `prefetch` (many inputs: folders, manifests,
torchrun ranks, read-ahead, write-behind) and `info`.

The names below resolve on first access: `m2l.train.cli` and its siblings import `m2l.cli.args`,
which runs this file, and should not import the registry, the codec commands and their jobs with
it. The `m2l` program and `python -m m2l` start at `m2l.cli.app.main` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from m2l.lazy import lazy_attribute, lazy_names

if TYPE_CHECKING:
    from m2l.cli.app import COMMANDS, Command, build_parser, main
    from m2l.cli.info import format_info, inspect_path
    from m2l.cli.jobs import Job, resolve_jobs

_LAZY = {
    "COMMANDS": "m2l.cli.app",
    "Command": "m2l.cli.app",
    "build_parser": "m2l.cli.app",
    "main": "m2l.cli.app",
    "Job": "m2l.cli.jobs",
    "resolve_jobs": "m2l.cli.jobs",
    "format_info": "m2l.cli.info",
    "inspect_path": "m2l.cli.info",
}

__all__ = [
    "COMMANDS",
    "Command",
    "Job",
    "build_parser",
    "format_info",
    "inspect_path",
    "main",
    "resolve_jobs",
]


def __getattr__(name: str) -> Any:
    """An exported name, imported from its module on first access."""
    return lazy_attribute(__name__, _LAZY, globals(), name)


def __dir__() -> list[str]:
    return lazy_names(_LAZY, globals())
