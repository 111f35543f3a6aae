"""Corpus-scale plumbing of the codec commands: a deterministic share of the inputs per rank, and
inputs read ahead in worker processes while the model works.

Ranks. Under torchrun (or any launcher that sets RANK and WORLD_SIZE) rank r of W takes the jobs
r, r + W, r + 2W, ... of the list sorted by output path: ranks never write the same file, and
together they cover every job once. With `--skip-existing` a job can be restarted with another
number of ranks: finished outputs are verified and left alone whoever wrote them.

Read-ahead. `read_ahead` yields each job with what `load` made of it (the decoded, resampled
audio) or the one-line reason it failed, in order, while `workers` processes load the next ones:
audio decoding and resampling overlap with the network instead of taking turns with it. That
pays where the network leaves a core free (a GPU, fewer torch threads than cores); on a CPU whose
cores all run torch's threads the worker's decoding preempts the network, which costs more than
reading in line (`default_workers`).

Write-behind. `WriteBehind` writes outputs in one background thread while the model works on the
next ones (an atomic write syncs the file and its folder to disk, which on a slow or network file
system takes as long as a fast device's batch); a few writes at most are in flight, so memory stays
bounded, and a failed write fails only its job.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from m2l.errors import M2LError

T = TypeVar("T")
J = TypeVar("J")


def rank_and_world(environ: os._Environ[str] | dict[str, str] | None = None) -> tuple[int, int]:
    """(rank, world size) from RANK / WORLD_SIZE (torchrun), (0, 1) when they are not set.

    Raises:
        M2LError: when they are set but not integers with 0 <= rank < world.
    """
    env = os.environ if environ is None else environ
    raw_rank, raw_world = env.get("RANK"), env.get("WORLD_SIZE")
    if raw_rank is None and raw_world is None:
        return 0, 1
    try:
        rank, world = int(raw_rank or "0"), int(raw_world or "1")
    except ValueError:
        raise M2LError(f"RANK={raw_rank!r} and WORLD_SIZE={raw_world!r} must be integers") from None
    if not 0 <= rank < world:
        raise M2LError(f"RANK={rank} must be in [0, WORLD_SIZE={world})")
    return rank, world


def shard(jobs: Sequence[J], key: Callable[[J], str], rank: int, world: int) -> list[J]:
    """Rank `rank`'s share of `jobs`: every `world`-th job of the list sorted by `key`."""
    return sorted(jobs, key=key)[rank::world]


def _as_is(item: T) -> T:
    return item


class _Loads:
    """A map-style dataset: item i is (i, load(jobs[i]), None) or (i, None, reason)."""

    def __init__(self, jobs: Sequence[J], load: Callable[[J], T]) -> None:
        self.jobs, self.load = jobs, load

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> tuple[int, Any, str | None]:
        try:
            return i, self.load(self.jobs[i]), None
        except M2LError as err:
            return i, None, str(err)
        except (OSError, RuntimeError, ValueError, MemoryError) as err:  # a file that breaks a decoder
            return i, None, f"{type(err).__name__}: {err}".splitlines()[0]


def default_workers(jobs: int, device_type: str, threads: int, cores: int | None = None) -> int:
    """The read-ahead processes when --workers is not given: one for several inputs, none for one
    input or on a CPU device whose `threads` (torch's intra-op threads) take all `cores` (this
    process's usable cores when None). There, on 2 cores, the worker made the network 10 % slower
    while reading in line waited 0.2 % of the time (BENCHMARKS, "Corpus encoding")."""
    if jobs <= 1:
        return 0
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 0 if device_type == "cpu" and threads >= cores else 1


def read_ahead(
    jobs: Sequence[J], load: Callable[[J], T], workers: int, depth: int = 2
) -> Iterator[tuple[J, T | None, str | None]]:
    """(job, load(job) or None, None or the reason it failed) for each job, in order.

    Args:
        jobs: the work list.
        load: reads one job's input; must be picklable (a module-level function or a partial of
            one) when `workers` > 0. Its M2LErrors (and OS/decoder errors) become the reason.
        workers: processes loading ahead; 0 loads in this process, one job at a time.
        depth: loads each worker keeps ready.
    """
    data = _Loads(jobs, load)
    if workers <= 0 or len(jobs) <= 1:
        for i in range(len(data)):
            _, value, reason = data[i]
            yield jobs[i], value, reason
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(
        data,  # type: ignore[arg-type]
        batch_size=None,
        num_workers=min(workers, len(jobs)),
        prefetch_factor=depth,
        collate_fn=_as_is,
        persistent_workers=False,
    )
    for i, value, reason in loader:
        yield jobs[i], value, reason


class WriteBehind:
    """Runs writes in one background thread, in the order given, and hands back their outcomes.

    Use as a context manager (leaving it waits for the writes in flight, so none is cut off):

        with WriteBehind(expected=(OSError,)) as writes:
            for job, result in work():
                yield from writes.submit(job, partial(save, job, result))
            yield from writes.drain()

    Args:
        expected: the errors a write may raise that fail only its job (given back as its
            outcome); any other error is raised to the caller.
        depth: writes in flight at most; `submit` waits for the oldest beyond that.
    """

    def __init__(self, expected: tuple[type[BaseException], ...], depth: int = 4) -> None:
        self.expected, self.depth = expected, max(1, depth)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="m2l-write")
        self._pending: deque[tuple[Any, Future[Any]]] = deque()

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pool.shutdown(wait=True)

    def submit(self, key: J, write: Callable[[], T]) -> Iterator[tuple[J, T | BaseException]]:
        """Queue `write()` for `key` (now, whether or not the result is iterated); returns the
        outcomes of the writes that have finished, oldest first: (key, what its write returned
        or the expected error it raised), waiting for the oldest while too many are in flight."""
        self._pending.append((key, self._pool.submit(write)))
        return self._finished()

    def _finished(self) -> Iterator[tuple[Any, Any]]:
        while self._pending and (self._pending[0][1].done() or len(self._pending) > self.depth):
            yield self._outcome()

    def drain(self) -> Iterator[tuple[Any, Any]]:
        """Wait for every write in flight; yields their outcomes, oldest first."""
        while self._pending:
            yield self._outcome()

    def _outcome(self) -> tuple[Any, Any]:
        key, future = self._pending.popleft()
        try:
            return key, future.result()
        except self.expected as err:
            return key, err
