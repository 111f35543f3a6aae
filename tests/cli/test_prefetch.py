"""`m2l.cli.prefetch`: shares of the inputs per rank, inputs read ahead in worker processes, and
outputs written behind in a thread."""

from __future__ import annotations

import os
import threading
import time
from functools import partial

import pytest

from m2l.cli.prefetch import WriteBehind, default_workers, rank_and_world, read_ahead, shard
from m2l.errors import M2LError


def test_rank_and_world_from_the_environment():
    assert rank_and_world({}) == (0, 1)
    assert rank_and_world({"RANK": "1", "WORLD_SIZE": "3"}) == (1, 3)
    for env in (
        {"RANK": "3", "WORLD_SIZE": "3"},
        {"RANK": "-1", "WORLD_SIZE": "2"},
        {"RANK": "a", "WORLD_SIZE": "2"},
    ):
        with pytest.raises(M2LError, match="RANK"):
            rank_and_world(env)


def test_shards_are_disjoint_cover_everything_and_do_not_depend_on_input_order():
    names = [f"f{i:03d}" for i in range(23)]
    for world in (1, 2, 3, 7):
        shares = [shard(names, str, rank, world) for rank in range(world)]
        assert sorted(n for share in shares for n in share) == names
        assert all(len(share) in (len(names) // world, len(names) // world + 1) for share in shares)
        assert shares == [shard(list(reversed(names)), str, rank, world) for rank in range(world)]


def _load(fail_on: int, job: int) -> tuple[int, int]:
    if job == fail_on:
        raise M2LError(f"job{job}.wav: cannot read audio")
    if job == fail_on + 1:
        raise OSError("disk vanished")
    return job * job, os.getpid()


def test_default_workers_read_in_line_where_torch_takes_every_core():
    assert default_workers(1, "cuda", 1, cores=16) == 0  # one input: nothing to read ahead
    assert default_workers(5, "cuda", 16, cores=16) == 1  # a GPU leaves the cores to the reader
    assert default_workers(5, "cpu", 1, cores=2) == 1  # a core without a torch thread
    assert default_workers(5, "cpu", 2, cores=2) == 0  # every core runs the network
    assert default_workers(5, "cpu", 4, cores=2) == 0
    assert default_workers(5, "cpu", 4096) == 0  # this process's own cores, fewer than 4096


@pytest.mark.parametrize("workers", [0, 2])
def test_read_ahead_keeps_order_and_turns_failures_into_reasons(workers):
    jobs = list(range(9))
    out = list(read_ahead(jobs, partial(_load, 4), workers))
    assert [job for job, _, _ in out] == jobs
    assert [value[0] for _, value, _ in out if value is not None] == [j * j for j in jobs if j not in (4, 5)]
    reasons = {job: reason for job, _, reason in out if reason is not None}
    assert reasons == {4: "job4.wav: cannot read audio", 5: "OSError: disk vanished"}
    pids = {value[1] for _, value, _ in out if value is not None}
    assert (os.getpid() in pids) == (workers == 0)  # with workers, loading happens elsewhere


def _write(done: list[int], job: int) -> int:
    time.sleep(0.01 * (job % 3))
    if job == 2:
        raise M2LError("out/2.m2l exists (use --force to overwrite)")
    done.append(job)
    return job * 10


def test_write_behind_gives_outcomes_in_order_and_failed_writes_as_errors():
    done: list[int] = []
    with WriteBehind(expected=(M2LError,), depth=2) as writes:
        outcomes = [o for job in range(6) for o in writes.submit(job, partial(_write, done, job))]
        assert len(outcomes) >= 6 - 2  # at most `depth` writes were left in flight
        outcomes += list(writes.drain())
    assert [job for job, _ in outcomes] == list(range(6)) and done == [0, 1, 3, 4, 5]
    assert [o for _, o in outcomes if not isinstance(o, M2LError)] == [0, 10, 30, 40, 50]
    assert str(outcomes[2][1]) == "out/2.m2l exists (use --force to overwrite)"


def test_write_behind_runs_writes_in_another_thread_and_finishes_them_when_left():
    threads: list[str] = []
    release = threading.Event()

    def slow(job: int) -> int:
        release.wait(timeout=10)
        threads.append(threading.current_thread().name)
        return job

    with pytest.raises(KeyboardInterrupt), WriteBehind(expected=(M2LError,)) as writes:
        assert list(writes.submit(0, partial(slow, 0))) == []  # not waited for: still in flight
        writes.submit(1, partial(slow, 1))  # queued even though its outcomes are not iterated
        release.set()
        raise KeyboardInterrupt  # the job is stopped while writes are in flight
    assert threads == ["m2l-write_0", "m2l-write_0"]  # both finished before leaving, in the writer thread


def test_write_behind_raises_unexpected_errors():
    def broken() -> None:
        raise ValueError("a bug")

    with WriteBehind(expected=(M2LError,)) as writes, pytest.raises(ValueError, match="a bug"):
        list(writes.submit(0, broken))
        list(writes.drain())
