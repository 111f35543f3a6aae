"""A run folder's safety rules: one trainer at a time, a config that changes only on purpose,
nothing left behind by a start that fails, and a resume that never destroys good work.

- `RUN/.lock` (JSON: pid, host) is created exclusively by the trainer of rank 0 and removed when
  it stops (also on SIGTERM and Ctrl-C); a second trainer fails at once. A lock whose process
  has died on this host is reported and taken over.
- `check_run` compares the asked config with `RUN/config.json` before anything is written: any
  changed field is refused, `steps` too unless `--extend` asks for more steps (see
  `m2l.train.schedule` for how the schedules continue). A missing or unreadable config.json
  next to checkpoints is an error, never a new config.
- `newest_state` resumes from the newest checkpoint that passes its checksum; the ones that fail
  are moved aside (`*.corrupt`), never deleted. `best_record` takes the best score from the
  best checkpoint itself, so a resumed run never replaces it by a worse model.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m2l.errors import M2LError
from m2l.formats import list_checkpoints
from m2l.train.config import TrainConfig, train_config_from_dict, train_config_to_dict
from m2l.train.schedule import extend, lr_at
from m2l.train.state import read_state

LOCK_NAME = ".lock"
CONFIG_NAME = "config.json"
BEST_NAME = "best.safetensors"
CREATED_AT_START = ("data_index.json",)
"""Files a start writes before config.json; removed again when a start in a new folder fails."""


@dataclass(frozen=True)
class RunPlan:
    """What `check_run` found: the config to train with and whether to extend it.

    Attributes:
        cfg: the run's config (the folder's own when it holds a run, else the asked one).
        existing: the folder holds a run (a config.json).
        extend_to: the new total of steps when extending, else None.
    """

    cfg: TrainConfig
    existing: bool = False
    extend_to: int | None = None

    def resolve(self, step: int, run_dir: Path, say: bool) -> TrainConfig:
        """The config to train with once the run's step is known (after resuming)."""
        if self.extend_to is None:
            return self.cfg
        cfg = extend(self.cfg, self.extend_to, step)
        if say:
            lr = lr_at(step, cfg)
            how = (
                f"stays at its final {lr:.3g} (its decay had ended)"
                if lr <= cfg.min_lr
                else f"continues from {lr:.3g} (cosine decay to {cfg.min_lr:.3g} at step {cfg.steps})"
            )
            print(
                f"extending run {run_dir} from {self.cfg.steps} to {cfg.steps} steps at step {step}; "
                f"learning rate {how}",
                flush=True,
            )
        return cfg


def check_run(run_dir: Path, cfg: TrainConfig, *, extend: bool = False) -> RunPlan:
    """Check the asked config against the run folder (nothing is written).

    Args:
        run_dir: the run folder (`--out`); it may not exist yet.
        cfg: the asked config (preset or file plus `--set`s).
        extend: `--extend`: a larger `steps` extends the run instead of being refused.

    Returns:
        The plan to train by.

    Raises:
        M2LError: `run_dir` is a file, its config.json is missing (next to checkpoints) or
            unreadable, or the asked config differs from the run's.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise M2LError(f"{run_dir}: --out must be a run folder, not a file")
    old = read_run_config(run_dir)
    if old is None:
        if extend:
            raise M2LError(f"{run_dir}: holds no run to extend (--extend continues an existing run)")
        return RunPlan(cfg)
    a, b = train_config_to_dict(old), train_config_to_dict(cfg)
    diff = sorted(k for k in a if a[k] != b[k] and k not in ("steps", "extensions"))
    if diff:
        raise M2LError(
            f"{run_dir}: holds a run with a different config ({', '.join(diff)}); "
            f"use another --out or the run's own config.json"
        )
    if cfg.steps == old.steps:
        return RunPlan(old, existing=True)
    if extend and cfg.steps > old.steps:
        return RunPlan(old, existing=True, extend_to=cfg.steps)
    hint = (
        f"; pass --extend to train it on to {cfg.steps} steps"
        if cfg.steps > old.steps
        else f"; the run spans {old.steps} steps (--until STEP stops earlier)"
    )
    raise M2LError(
        f"{run_dir}: holds a run with a different config (steps); "
        f"use another --out or the run's own config.json{hint}"
    )


def read_run_config(run_dir: Path) -> TrainConfig | None:
    """The config of the run in `run_dir`, or None when it holds none (no config.json and no
    checkpoints).

    Raises:
        M2LError: config.json is unreadable, or missing while checkpoints exist.
    """
    path = run_dir / CONFIG_NAME
    if not path.exists():
        ckpts = run_dir / "checkpoints"
        if list_checkpoints(ckpts) or (ckpts / BEST_NAME).exists():
            raise M2LError(
                f"{path}: missing, but the run has checkpoints in {ckpts}; restore config.json "
                f"(every checkpoint records it) or use another --out"
            )
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise M2LError(f"{path}: not a readable run config ({err}); repair or restore it") from None
    if not isinstance(data, dict):
        raise M2LError(f"{path}: not a readable run config (expected a JSON object); repair or restore it")
    return train_config_from_dict(data, str(path))


class RunLock:
    """`RUN/.lock`: held by the one trainer that writes to a run folder.

    Args:
        run_dir: the run folder (created by `acquire` when missing).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.held = False
        self.pid = os.getpid()

    def acquire(self) -> None:
        """Take the lock (a no-op when held).

        Raises:
            M2LError: another live trainer holds it (the message names its pid and host).
        """
        if self.held:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pid = os.getpid()
        owner = {"pid": self.pid, "host": socket.gethostname()}
        for _ in range(3):  # a stale lock is moved away, then the exclusive create is retried
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(owner))
            self.held = True
            return
        raise M2LError(f"{self.run_dir}: could not take the lock {self.path}; another trainer is starting")

    def release(self) -> None:
        """Remove the lock if this object holds it (safe to call more than once; a forked child,
        e.g. a data loader worker, never removes its parent's lock)."""
        if self.held and os.getpid() == self.pid:
            self.held = False
            self.path.unlink(missing_ok=True)

    def _take_over_if_stale(self) -> None:
        text = _read_text(self.path)
        if text is None:  # released in the meantime: retry
            return
        owner = _lock_owner(text)
        if owner is None:
            raise M2LError(
                f"{self.run_dir}: locked by another trainer ({self.path} is unreadable; "
                f"remove it if no trainer is running)"
            )
        pid, host = owner
        if host != socket.gethostname() or _alive(pid):
            raise M2LError(
                f"{self.run_dir}: another trainer (pid {pid} on {host}) is using this run folder; "
                f"wait for it to stop (remove {self.path} if it no longer runs)"
            )
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:  # another starter took it over first
            return
        if _read_text(aside) != text:  # a fresh lock was moved: put it back and give up
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
            aside.unlink(missing_ok=True)
            raise M2LError(f"{self.run_dir}: another trainer took the run lock {self.path} just now")
        aside.unlink(missing_ok=True)
        warnings.warn(
            f"{self.run_dir}: taking over the lock of pid {pid} on {host}, which no longer runs",
            stacklevel=3,
        )


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""


def _lock_owner(text: str) -> tuple[int, str] | None:
    """(pid, host) of a lock file's text, or None when it is malformed."""
    try:
        data = json.loads(text)
        return int(data["pid"]), str(data["host"])
    except (ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def guarded_start(run_dir: Path, lock: RunLock | None) -> Iterator[None]:
    """Hold `lock` over a trainer's start; when the start fails (error, Ctrl-C), release it and,
    if the folder was new, remove what the start wrote in it (and the folder when it is empty).

    Args:
        run_dir: the run folder.
        lock: rank 0's lock (None on other ranks: they neither lock nor clean up).
    """
    fresh = lock is not None and not run_dir.exists()
    if lock is not None:
        lock.acquire()  # outside the try: a refused lock must not clean up another run's files
    try:
        yield
    except BaseException:
        if lock is not None:
            lock.release()
        if fresh:
            for name in CREATED_AT_START:
                (run_dir / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only when empty
        raise


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside the block SIGTERM raises KeyboardInterrupt, so that a start cut short by `kill`
    releases the lock like Ctrl-C does (the training loop installs its own handlers, which
    save a checkpoint first)."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _set_aside(path: Path, err: Exception, then: str) -> None:
    """Move a checkpoint that failed its check to `NAME.corrupt` (never over another file)."""
    aside = path.with_name(path.name + ".corrupt")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{n}")
    try:
        os.rename(path, aside)
        where = f"moved aside as {aside.name}"
    except OSError:
        where = "left in place"
    warnings.warn(f"{err} ({where}); {then}", stacklevel=3)


def newest_state(ckpt_dir: Path, *, main: bool) -> dict[str, Any] | None:
    """The parts (`read_state`) of the newest step checkpoint that passes its checks, or None.

    Args:
        ckpt_dir: the run's checkpoints folder.
        main: rank 0, which moves failing files aside and warns (other ranks skip them).
    """
    found = list_checkpoints(ckpt_dir)
    for _, path in reversed(found):
        try:
            return read_state(path)
        except (M2LError, OSError) as err:
            if main:
                _set_aside(path, err, "trying an older checkpoint")
    if found and main:
        warnings.warn(f"{ckpt_dir}: no valid checkpoint left; training starts from step 0", stacklevel=2)
    return None


def best_record(ckpt_dir: Path) -> dict[str, Any]:
    """`best_mel` and `best_step` of the run's best checkpoint, read from that file itself (None
    when there is none, or it fails its check and is moved aside)."""
    path = ckpt_dir / BEST_NAME
    none = {"best_mel": None, "best_step": None}
    if not path.exists():
        return none
    try:
        counters = read_state(path)["counters"]
    except (M2LError, OSError) as err:
        _set_aside(path, err, "the next validation writes a new best checkpoint")
        return none
    return {key: counters.get(key) for key in none}
