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
probe and datasets commands), `jobs` (inputs -> outputs, the per-file runner), `codec` (encode,
decode, reconstruct, convert) and `info`.

`app` imports the command modules when their command runs or its options are built, so that this
package can import it at once and `m2l --help` imports none of them (nor torch).
"""

from __future__ import annotations

from m2l.cli.app import COMMANDS, Command, build_parser, main
from m2l.cli.info import format_info, inspect_path
from m2l.cli.jobs import Job, resolve_jobs

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
