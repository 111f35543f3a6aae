"""Encoder passes, and packing the passes of several clips into shared batches.

An encode is planned as a list of `EncodePass`es (`Codec.encode_plan`): each pass stacks
`items` inputs of one shape (v1: one window of latents per channel row; v2: one chunk per row
and chunk) and puts the encoder's output where it belongs. `Codec.encode` runs one clip's passes
in batches of up to `batch_units` units of neighbouring passes of one shape (on a CPU that is one
pass at a time: bigger batches are no faster there); `encode_many` gathers the passes of many
clips by their `key` (input shape) and runs them in batches of up to `batch_units` units, so
short clips and the windows of many files fill a batch together. Every item of a batch is
computed independently of the others (convolutions, group norms and attention all act within one
item), so a clip's latents do not depend on what it was batched with, up to float rounding
(batched kernels may sum in another order): `encode_many` gives each clip the latents
`Codec.encode_file` gives it.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import torch

from m2l.errors import M2LError

if TYPE_CHECKING:
    from m2l.codec import Codec
    from m2l.formats import LatentFile

K = TypeVar("K")


@dataclass
class EncodePass:
    """One encoder pass of one clip.

    Attributes:
        key: passes with equal keys have inputs of one shape and may share a batch.
        items: inputs this pass stacks.
        units: cost of the pass (latent frames of all its items for v1, chunks for v2).
        make_input: () -> the model input [items, *shape] on the codec's device and dtype.
        place: takes the encoder's output for these items [items, ...] (float32, CPU).
        progress: units of the clip's progress this pass completes.
    """

    key: tuple[int, ...]
    items: int
    units: int
    make_input: Callable[[], torch.Tensor]
    place: Callable[[torch.Tensor], None]
    progress: int = 1


@dataclass
class EncodePlan:
    """A clip's encoder passes and `finish()`, which returns its latents once all have run."""

    passes: list[EncodePass]
    finish: Callable[[], torch.Tensor]

    @property
    def total_progress(self) -> int:
        """Progress units of the whole clip (the sum over its passes)."""
        return sum(p.progress for p in self.passes)


@dataclass
class _Open:
    """A clip whose passes have not all run yet."""

    key: Any
    wave: torch.Tensor
    rate: int
    plan: EncodePlan
    left: int


class Batchable(Protocol):
    """A pass that may share a batch with neighbours of an equal `key` (see `EncodePass`)."""

    @property
    def key(self) -> tuple[int, ...]:
        """Passes of equal keys have inputs of one shape."""

    @property
    def items(self) -> int:
        """Inputs of the pass."""

    @property
    def units(self) -> int:
        """Cost of the pass."""


P = TypeVar("P", bound=Batchable)


def consecutive_batches(passes: list[P], codec: Codec) -> Iterator[list[P]]:
    """Passes in order, neighbours of one key grouped into batches of at most `codec.batch_units`
    units and `codec.batch_size` inputs (a pass larger than that runs alone). The limits are read
    as each batch is filled: batches planned after an out-of-memory lowering follow it."""
    batch: list[P] = []
    for p in passes:
        units, items = sum(q.units for q in batch) + p.units, sum(q.items for q in batch) + p.items
        if batch and (p.key != batch[0].key or units > codec.batch_units or items > codec.batch_size):
            yield batch
            batch = []
        batch.append(p)
    if batch:
        yield batch


def halving_on_oom(
    codec: Codec, batch: list[P], run: Callable[[list[P]], None], limit: int | None = None
) -> None:
    """`run(batch)`, in consecutive parts of at most `limit` inputs when one is given; when the
    device runs out of memory, a part runs in parts of half its inputs instead (and halves of
    those, as long as they do not fit), with `codec.batch_size` lowered to what fitted, with a
    warning: the rest of the batch runs in parts of that size (and so do the batches planned
    after it). `run` must have changed nothing when it fails.

    Raises:
        M2LError: a single pass does not fit in the device's memory.
    """
    _run_in_parts(codec, batch, run, limit)


def _run_in_parts(
    codec: Codec, batch: list[P], run: Callable[[list[P]], None], limit: int | None
) -> int | None:
    """Run `batch` in consecutive parts of at most `limit` inputs (None: whole), a part that runs
    out of memory in smaller parts; returns the limit the last part ran under."""
    rest = batch
    while rest:
        count = len(rest) if limit is None else _leading(rest, limit)
        part, rest = rest[:count], rest[count:]
        try:
            run(part)
            continue
        except torch.OutOfMemoryError:
            pass  # split below, outside the handler: its traceback holds the failed pass's tensors
        if len(part) == 1:
            raise single_pass_error(codec, part[0].units)
        limit = lower_batch_size(
            codec, sum(p.items for p in part), sum(p.items for p in part[: len(part) // 2])
        )
        limit = _run_in_parts(codec, part, run, limit)
    return limit


def lower_batch_size(codec: Codec, tried: int, fits: int) -> int:
    """After running out of device memory with `tried` inputs in one pass: frees the device's
    cached memory and lowers `codec.batch_size` to `fits` (at least 1) with a warning, if it was
    larger; returns `fits`."""
    if codec.device.type == "cuda":
        torch.cuda.empty_cache()
    fits = max(1, fits)
    if codec.batch_size > fits:
        warnings.warn(
            f"out of {codec.device} memory with {tried} inputs in one pass: "
            f"batch_size lowered from {codec.batch_size} to {fits} (--batch-size sets it)",
            stacklevel=2,
        )
        codec.batch_size = fits
    return fits


def single_pass_error(codec: Codec, units: int) -> M2LError:
    """The one-line error for a single pass of `units` units that does not fit in device memory."""
    if codec.device.type == "cuda":
        torch.cuda.empty_cache()
    return M2LError(
        f"out of {codec.device} memory for a single pass of {units} {codec.unit_name}; "
        f"lower the window (--window) or the batch size (--batch-size)"
    )


def _leading(passes: list[P], limit: int) -> int:
    """How many leading passes hold at most `limit` inputs together (at least one)."""
    total = 0
    for count, p in enumerate(passes):
        total += p.items
        if count and total > limit:
            return count
    return len(passes)


def run_batch(
    codec: Codec, passes: list[EncodePass], features: bool = False, limit: int | None = None
) -> None:
    """Run passes of one input shape as one encoder batch (or parts of at most `limit` inputs)
    and hand each its outputs (out of device memory: in halves, see `halving_on_oom`)."""
    halving_on_oom(codec, passes, lambda batch: _run_batch(codec, batch, features), limit)


@torch.inference_mode()
def _run_batch(codec: Codec, passes: list[EncodePass], features: bool) -> None:
    x = passes[0].make_input() if len(passes) == 1 else torch.cat([p.make_input() for p in passes])
    z = codec.encoder_pass(x, features=features)
    start = 0
    for p in passes:
        p.place(z[start : start + p.items])
        start += p.items


def encode_many(
    codec: Codec,
    clips: Iterable[tuple[K, torch.Tensor, int]],
    *,
    batch_units: int | None = None,
    max_open: int | None = None,
) -> Iterator[tuple[K, LatentFile | M2LError]]:
    """Encode many clips, batching the passes of different clips together.

    Args:
        codec: the codec (`m2l.load`).
        clips: (key, waveform [channels, samples] at the codec's rate, the rate the audio had
            before it was resampled), consumed lazily.
        batch_units: most units per batch (default `codec.batch_units`).
        max_open: most clips in flight (default: 2 * batch_size + 2); when more are open, the
            passes of the oldest are run in a partial batch, which bounds memory and delay.

    Yields:
        (key, its `LatentFile`) as clips finish (not necessarily in input order), or
        (key, M2LError) for a clip that cannot be encoded (the others go on). Autograd is
        off inside each batch only, never across a yield.
    """
    capacity = max(1, batch_units or codec.batch_units)
    limit = max(1, max_open or 2 * codec.batch_size + 2)
    batches = _Batches(codec, capacity)
    open_clips: OrderedDict[int, _Open] = OrderedDict()
    buckets: dict[Hashable, list[tuple[int, EncodePass]]] = {}
    serial = 0
    for key, wave, rate in clips:
        try:
            rows, _ = codec.model_rows(codec.coded_channels(codec.checked_clip(wave)))
            plan = codec.encode_plan(rows)
        except M2LError as err:
            yield key, err
            continue
        serial += 1
        open_clips[serial] = _Open(key, wave, rate, plan, len(plan.passes))
        for p in plan.passes:
            if p.key in buckets and batches.over(buckets[p.key], p):
                yield from _run(batches, buckets.pop(p.key), open_clips)
            buckets.setdefault(p.key, []).append((serial, p))
            if batches.full(buckets[p.key]):
                yield from _run(batches, buckets.pop(p.key), open_clips)
        while len(open_clips) > limit:
            yield from _run(batches, _oldest_bucket(buckets, open_clips), open_clips)
    while buckets:  # the rest, oldest clip first
        yield from _run(batches, _oldest_bucket(buckets, open_clips), open_clips)


class _Batches:
    """The limits of `encode_many`'s batches: `capacity` units, and once running out of device
    memory lowered `codec.batch_size` (see `halving_on_oom`), at most that many inputs."""

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
    batches: _Batches, bucket: list[tuple[int, EncodePass]], open_clips: OrderedDict[int, _Open]
) -> Iterator[tuple[Any, LatentFile]]:
    """Run one bucket (in parts, once out of memory lowered the batch size); yield the clips it
    finished."""
    codec = batches.codec
    run_batch(codec, [p for _, p in bucket], limit=batches.max_items)
    for serial, _ in bucket:
        clip = open_clips[serial]
        clip.left -= 1
        if clip.left == 0:
            del open_clips[serial]
            yield clip.key, codec.latent_file(clip.wave, clip.plan.finish(), clip.rate)
