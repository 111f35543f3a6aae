"""Packing the encoder passes of several clips into shared batches (`encode_many`, the corpus
encoder of `m2l encode`).

A clip's encode is planned as encoder passes (`Codec.encode_plan`, `m2l.passes`); `encode_many`
gathers the passes of many clips by their `key` (input shape) and runs them in batches of up to
`batch_units` units, so short clips and the windows of many files fill a batch together. Every
item of a batch is computed independently of the others (convolutions, group norms and attention
all act within one item), so a clip's latents do not depend on what it was batched with, up to
float rounding (batched kernels may sum in another order): `encode_many` gives each clip the
latents `Codec.encode_file` gives it. On the CPU, where a batch of several passes is no faster
than one after the other, `encode_many` lets no partial batch wait for company that the next clip
does not bring, so clips finish one after the other, as a file job's progress shows them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from m2l.errors import M2LError
from m2l.passes import EncodePass, EncodePlan, run_batch

if TYPE_CHECKING:
    from m2l.codec import Codec
    from m2l.formats import LatentFile

__all__ = ["EncodePass", "EncodePlan", "encode_many", "run_batch"]  # the passes are importable here too

K = TypeVar("K")


@dataclass
class _Open:
    """A clip whose passes have not all run yet (`done` of `total` progress units run)."""

    key: Any
    wave: torch.Tensor
    rate: int
    plan: EncodePlan
    left: int
    total: int
    done: int = 0


class _OldestProgress:
    """Tells `codec.progress` how far the oldest clip in flight (the next to finish, as a rule)
    is: "encoding" when it becomes the oldest, after each batch that ran some of its passes, and
    at its total when it finishes; then the next oldest, from where it stands."""

    def __init__(self, codec: Codec) -> None:
        self.hook = codec.progress
        self.shown: tuple[int, int] | None = None  # (serial, done) last reported

    def finish(self, finished: Iterable[tuple[int, _Open]]) -> None:
        """Report the clip shown at its total if it is among the `finished` ones."""
        for serial, clip in finished:
            if self.hook is not None and self.shown is not None and self.shown[0] == serial:
                self.hook("encoding", clip.total, clip.total)
                self.shown = None

    def show(self, open_clips: OrderedDict[int, _Open]) -> None:
        """Report the oldest open clip if it is new or has moved on since the last report."""
        if self.hook is not None and open_clips:
            serial, clip = next(iter(open_clips.items()))
            if self.shown != (serial, clip.done):
                self.hook("encoding", clip.done, clip.total)
                self.shown = (serial, clip.done)


def encode_many(
    codec: Codec,
    clips: Iterable[tuple[K, torch.Tensor, int]],
    *,
    batch_units: int | None = None,
    max_open: int | None = None,
    wait_to_fill: bool | None = None,
) -> Iterator[tuple[K, LatentFile | M2LError]]:
    """Encode many clips, batching the passes of different clips together.

    `codec.progress`, when set, hears how far the oldest clip in flight is ("encoding", from 0 to
    its windows (v1) or chunks (v2)), one clip after the other.

    Args:
        codec: the codec (`m2l.load`).
        clips: (key, waveform [channels, samples] at the codec's rate, the rate the audio had
            before it was resampled), consumed lazily.
        batch_units: most units per batch (default `codec.batch_units`).
        max_open: most clips in flight (default: 2 * batch_size + 2); when more are open, the
            passes of the oldest are run in a partial batch, which bounds memory and delay.
        wait_to_fill: whether a partial batch waits for the passes of later clips (up to
            `max_open` clips in flight). Default: on a GPU, yes; on the CPU, where a batch of
            several passes is no faster (BENCHMARKS.md, corpus encoding), a partial batch runs
            as soon as the next clip brings no pass of its shape, so that each clip is done
            before the next one's passes run (clips of one length in a row still share).

    Yields:
        (key, its `LatentFile`) as clips finish (not necessarily in input order), or
        (key, M2LError) for a clip that cannot be encoded (the others go on). Autograd is
        off inside each batch only, never across a yield.
    """
    capacity = max(1, batch_units or codec.batch_units)
    limit = max(1, max_open or 2 * codec.batch_size + 2)
    wait = codec.device.type != "cpu" if wait_to_fill is None else wait_to_fill
    batches = _Batches(codec, capacity)
    open_clips: OrderedDict[int, _Open] = OrderedDict()
    buckets: dict[Hashable, list[tuple[int, EncodePass]]] = {}
    progress = _OldestProgress(codec)
    serial = 0
    for key, wave, rate in clips:
        try:
            rows, _ = codec.model_rows(codec.coded_channels(codec.checked_clip(wave)))
            plan = codec.encode_plan(rows)
        except M2LError as err:
            yield key, err
            continue
        if not wait:  # partial batches this clip adds nothing to
            shapes = {p.key for p in plan.passes}
            for shape in [shape for shape in buckets if shape not in shapes]:
                yield from _run(batches, buckets.pop(shape), open_clips, progress)
        serial += 1
        open_clips[serial] = _Open(key, wave, rate, plan, len(plan.passes), plan.total_progress)
        progress.show(open_clips)
        for p in plan.passes:
            if p.key in buckets and batches.over(buckets[p.key], p):
                yield from _run(batches, buckets.pop(p.key), open_clips, progress)
            buckets.setdefault(p.key, []).append((serial, p))
            if batches.full(buckets[p.key]):
                yield from _run(batches, buckets.pop(p.key), open_clips, progress)
        while len(open_clips) > limit:
            yield from _run(batches, _oldest_bucket(buckets, open_clips), open_clips, progress)
    while buckets:  # the rest, oldest clip first
        yield from _run(batches, _oldest_bucket(buckets, open_clips), open_clips, progress)


class _Batches:
    """The limits of `encode_many`'s batches: `capacity` units, and once running out of device
    memory lowered `codec.batch_size` (see `m2l.framing.Framing.halving_on_oom`), at most that many
    inputs."""

    def __init__(self, codec: Codec, capacity: int) -> None:
        self.codec, self.capacity, self.start_size = codec, capacity, codec.batch_size

    @property
    def max_items(self) -> int | None:
        """Inputs per batch, None when out of memory has not lowered `batch_size`."""
        return self.codec.batch_size if self.codec.batch_size < self.start_size else None

    def over(self, bucket: list[tuple[int, EncodePass]], p: EncodePass) -> bool:
        """Whether `bucket` plus `p` is more than one batch holds."""
        return self._beyond(_units(bucket) + p.units - 1, _items(bucket) + p.items - 1)

    def full(self, bucket: list[tuple[int, EncodePass]]) -> bool:
        """Whether `bucket` holds a whole batch."""
        return self._beyond(_units(bucket), _items(bucket))

    def _beyond(self, units: int, items: int) -> bool:
        """Whether a batch of `units` units and `items` inputs has reached a limit."""
        max_items = self.max_items
        return units >= self.capacity or (max_items is not None and items >= max_items)


def _oldest_bucket(
    buckets: dict[Hashable, list[tuple[int, EncodePass]]], open_clips: OrderedDict[int, _Open]
) -> list[tuple[int, EncodePass]]:
    """Take out the bucket that holds a pass of the oldest open clip."""
    oldest = next(iter(open_clips))
    key = next(k for k, bucket in buckets.items() if any(n == oldest for n, _ in bucket))
    return buckets.pop(key)


def _units(bucket: list[tuple[int, EncodePass]]) -> int:
    return sum(p.units for _, p in bucket)


def _items(bucket: list[tuple[int, EncodePass]]) -> int:
    return sum(p.items for _, p in bucket)


def _run(
    batches: _Batches,
    bucket: list[tuple[int, EncodePass]],
    open_clips: OrderedDict[int, _Open],
    progress: _OldestProgress,
) -> Iterator[tuple[Any, LatentFile]]:
    """Run one bucket (in parts, once out of memory lowered the batch size); yield the clips it
    finished."""
    codec = batches.codec
    run_batch(codec, [p for _, p in bucket], limit=batches.max_items)
    finished: list[tuple[int, _Open]] = []
    for serial, p in bucket:
        clip = open_clips[serial]
        clip.left -= 1
        clip.done += p.progress
        if clip.left == 0:
            finished.append((serial, open_clips.pop(serial)))
    progress.finish(finished)
    for _, clip in finished:
        yield clip.key, codec.latent_file(clip.wave, clip.plan.finish(), clip.rate)
    progress.show(open_clips)  # after the finished clips are handed on (a file bar moves first)
