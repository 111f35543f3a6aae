"""Encoder passes: how a codec plans an encode (`EncodePlan`, a list of `EncodePass`es) and runs
passes of one input shape as one encoder batch, in parts when the device runs out of memory.

Each pass stacks `items` inputs of one shape (v1: one window of latents per channel row; v2: one
chunk per row and chunk) and puts the encoder's output where it belongs. `Codec.encode` runs one
clip's passes in batches of up to `batch_units` units of neighbouring passes of one shape (on a
CPU that is one pass at a time: bigger batches are no faster there); `m2l.packing.encode_many`
batches the passes of many clips. The codec is seen through `PassRunner` (what running passes
needs of it), so that this module, which `m2l.codec` imports, does not import it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

import torch

from m2l.errors import M2LError


class PassRunner(Protocol):
    """What running encoder passes needs of a codec (`m2l.codec.Codec` has it all)."""

    device: torch.device
    batch_size: int
    unit_name: str

    @property
    def batch_units(self) -> int:
        """Units one batch holds at most."""

    def encoder_pass(self, x: torch.Tensor, *, features: bool = False) -> torch.Tensor:
        """The encoder on a batch of inputs -> float32 outputs on the CPU."""


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


def consecutive_batches(passes: list[P], codec: PassRunner) -> Iterator[list[P]]:
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
    codec: PassRunner, batch: list[P], run: Callable[[list[P]], None], limit: int | None = None
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
    codec: PassRunner, batch: list[P], run: Callable[[list[P]], None], limit: int | None
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


def lower_batch_size(codec: PassRunner, tried: int, fits: int) -> int:
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


def single_pass_error(codec: PassRunner, units: int) -> M2LError:
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
    codec: PassRunner, passes: list[EncodePass], features: bool = False, limit: int | None = None
) -> None:
    """Run passes of one input shape as one encoder batch (or parts of at most `limit` inputs)
    and hand each its outputs (out of device memory: in halves, see `halving_on_oom`)."""
    halving_on_oom(codec, passes, lambda batch: _run_batch(codec, batch, features), limit)


@torch.inference_mode()
def _run_batch(codec: PassRunner, passes: list[EncodePass], features: bool) -> None:
    x = passes[0].make_input() if len(passes) == 1 else torch.cat([p.make_input() for p in passes])
    z = codec.encoder_pass(x, features=features)
    start = 0
    for p in passes:
        p.place(z[start : start + p.items])
        start += p.items
