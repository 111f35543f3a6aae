"""What every codec shares beneath its interface: how it frames audio (padding, units, batches of
rows, seams, progress counting), the batches it runs in halves when the device runs out of memory
(`Framing`, which `m2l.codec.Codec` inherits; its numbers come from the model config), and the
checks of the codec API's arguments.

A clip of N samples is padded with `left_pad` samples before it (default n_fft - hop, hop the
STFT hop, so that every sample of the clip is covered by a full set of overlapping STFT frames)
and zeros after it up to m * samples_per_unit + n_fft - hop samples, m = `num_units(N)` (units:
see `m2l.codec.Codec`; latent frames for v1, chunks for v2; at least 1). Decoding overlap-adds
the frames and cuts [left_pad, left_pad + N) back out. `left_pad=0` reproduces the alignment of
the authors' package (which crops instead of padding).

Checks. The public API's arguments are checked with `checked_int`, `checked_flag` and
`checked_latents` (also by `m2l.authors_api`): a value of the wrong type or range becomes a
one-line `M2LError` naming the argument, never a traceback deep inside torch.

Memory. A codec runs its network on pieces (v1: one window of some rows; v2: rows of chunks)
grouped into batches (`batches`); a batch that runs out of device memory is run in halves, and
halves of those, with `batch_size` lowered to what fitted (`halving_on_oom`, the one place both
codecs and `m2l.packing.encode_many` recover from a full device).
"""

from __future__ import annotations

import secrets
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

import numpy as np
import torch

from m2l.config import ModelConfig
from m2l.errors import M2LError

Progress = Callable[[str, int, int], None]
"""`progress(task, done, total)`: how far an `encode` or `decode` call (or the clip `encode_many` is
at) is (see `Codec.progress`)."""


# ----------------------------------------------------------------------------- checked arguments
def checked_latents(z: object, shape_ok: Callable[[torch.Tensor], bool], expected: str) -> torch.Tensor:
    """A float32 CPU tensor from a tensor or array, or a one-line error (shape, dtype, NaN/Inf)."""
    if isinstance(z, np.ndarray):
        z = torch.from_numpy(np.ascontiguousarray(z))
    if not isinstance(z, torch.Tensor):
        raise M2LError(f"latents: expected a tensor or array, got {type(z).__name__}")
    if not shape_ok(z):
        raise M2LError(f"latents: expected shape {expected}, got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise M2LError(f"latents: expected floating point values, got {z.dtype}")
    z = z.detach().float().cpu()
    if not torch.isfinite(z).all():
        raise M2LError("latents: contain NaN or Inf")
    return z


def checked_int(value: object, name: str, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int in [low, high], or a one-line M2LError (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise M2LError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f"in [{low}, {high}]"
            if None not in (low, high)
            else f">= {low}"
            if high is None
            else f"<= {high}"
        )
        raise M2LError(f"{name} must be {bounds}, got {value}")
    return value


def checked_flag(value: object, name: str) -> bool:
    """`value` as a bool, or a one-line M2LError (a string such as "no" is not taken as True)."""
    if not isinstance(value, bool | np.bool_):
        raise M2LError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def auto_device() -> str:
    """The best available torch device: cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


# ----------------------------------------------------------------------------- framing
class Batchable(Protocol):
    """A piece of work that may share a network pass with neighbours of an equal `key`."""

    @property
    def key(self) -> tuple[int, ...]:
        """Pieces of equal keys have inputs of one shape."""

    @property
    def items(self) -> int:
        """Inputs the piece stacks."""

    @property
    def units(self) -> int:
        """Cost of the piece (latent frames of all its items for v1, chunks for v2)."""


P = TypeVar("P", bound=Batchable)


class Framing(ABC):
    """The framing arithmetic of a codec, over the attributes `m2l.codec.Codec` sets: `cfg` (the
    model config), `samples_per_unit`, `default_left_pad`, `batch_size`, `device`, `progress`,
    `unit_name`; a sibling codec tells where its seams fall (`seam_units`, `seam_spacing`) and how
    many units a batch holds (`batch_units`)."""

    cfg: ModelConfig
    samples_per_unit: int
    default_left_pad: int
    batch_size: int
    device: torch.device
    progress: Progress | None
    unit_name: str

    @property
    @abstractmethod
    def batch_units(self) -> int:
        """Units (v1 latent frames, v2 chunks) one batch holds at most."""

    def num_units(self, samples: int, left_pad: int | None = None) -> int:
        """Units (latent frames for v1, chunks for v2) for a clip of `samples` samples."""
        pad = self.default_left_pad if left_pad is None else left_pad
        tail = self.cfg.spectral.n_fft - self.cfg.spectral.hop_length
        return max(1, -(-(samples + pad - tail) // self.samples_per_unit))

    def padded_length(self, units: int) -> int:
        """Samples of the padded waveform that `units` units cover."""
        return units * self.samples_per_unit + self.cfg.spectral.n_fft - self.cfg.spectral.hop_length

    def pad_rows(self, rows: torch.Tensor, left_pad: int | None) -> tuple[torch.Tensor, int]:
        """[..., samples] -> (float waveforms padded to whole units with `left_pad` samples in
        front, number of units)."""
        pad = self.default_left_pad if left_pad is None else left_pad
        m = self.num_units(rows.shape[-1], pad)
        return torch.nn.functional.pad(rows.float(), (pad, self.padded_length(m) - pad - rows.shape[-1])), m

    def row_slices(self, count: int, span: int | None = None, budget: int | None = None) -> Iterator[slice]:
        """Slices of `count` rows in batches of `batch_size` rows, or fewer: when one row's pass
        covers `span` units, at most `budget` // `span` rows (at least one), so that a stereo
        file (two rows) takes the memory of a mono one (one window's worth of units per pass)."""
        per_pass = self.batch_size
        if span is not None and budget is not None:
            per_pass = min(per_pass, max(1, budget // max(span, 1)))
        for i in range(0, count, per_pass):
            yield slice(i, min(i + per_pass, count))

    def progress_counter(self, task: str, total: int) -> Callable[[int], None]:
        """Report `task` at 0 of `total` units to `progress` now; returns `advance(n)`, which
        reports n more units done (does nothing when `progress` is None)."""
        hook = self.progress
        if hook is None:
            return lambda n=1: None
        done = 0
        hook(task, 0, total)

        def advance(n: int = 1) -> None:
            nonlocal done
            done += n
            hook(task, done, total)

        return advance

    def seam_positions(self, samples: int) -> list[int]:
        """Where pieces processed apart are joined in a clip of `samples` samples: sample offsets
        in (0, samples), at the default left pad."""
        pad = self.default_left_pad
        starts, step = self.seam_units(self.num_units(samples)), self.samples_per_unit
        return [s * step - pad for s in starts if 0 < s * step - pad < samples]

    def decode_span(
        self, units: int, steps: int, length: int | None, left_pad: int | None, seed: int | None
    ) -> tuple[int, int, int]:
        """Check decoding options -> (left pad, output length, seed)."""
        checked_int(steps, "steps", 1)
        pad = self.checked_left_pad(left_pad)
        available = self.padded_length(units) - pad
        length = available if length is None else checked_int(length, "length")
        if not 1 <= length <= available:
            raise M2LError(
                f"length {length} is outside what {units} {self.unit_name} cover (1..{available} samples)"
            )
        return pad, length, secrets.randbits(63) if seed is None else checked_int(seed, "seed", 0, 2**63 - 1)

    def checked_left_pad(self, left_pad: object) -> int:
        """The padding before the audio: the codec default if None, else an int in
        [0, samples_per_unit]."""
        if left_pad is None:
            return self.default_left_pad
        return checked_int(left_pad, "left_pad", 0, self.samples_per_unit)

    @abstractmethod
    def seam_units(self, units: int) -> list[int]:
        """Unit indices where pieces processed apart are joined, for `units` units."""

    @property
    @abstractmethod
    def seam_spacing(self) -> int:
        """Samples between two seams (a window of latents for v1, a chunk for v2)."""

    # ----------------------------------------------------------------------------- memory
    def batches(self, pieces: list[P]) -> Iterator[list[P]]:
        """`pieces` in order, neighbours of one key grouped into batches of at most `batch_units`
        units and `batch_size` inputs (a piece larger than that runs alone). The limits are read
        as each batch is filled: batches made after an out-of-memory lowering follow it."""
        batch: list[P] = []
        for p in pieces:
            units, items = sum(q.units for q in batch) + p.units, sum(q.items for q in batch) + p.items
            if batch and (p.key != batch[0].key or units > self.batch_units or items > self.batch_size):
                yield batch
                batch = []
            batch.append(p)
        if batch:
            yield batch

    def halving_on_oom(
        self,
        items: Sequence[int],
        run: Callable[[slice], None],
        too_large: Callable[[int], M2LError],
        limit: int | None = None,
    ) -> int | None:
        """`run(part)` over consecutive parts of some pieces, whose inputs are `items`: all of
        them at once, or parts of at most `limit` inputs when one is given. A part that runs out
        of device memory runs in halves (and halves of those, as long as they do not fit), with
        `batch_size` lowered to what fitted, with a warning: the rest then runs in parts of that
        size. `run` must have changed nothing when it fails.

        Args:
            items: the inputs of each piece.
            run: runs the pieces of a slice of piece indices.
            too_large: the error for one piece (its index) that does not fit alone.
            limit: the most inputs per part (None: all pieces in one part first).

        Returns:
            The limit the last part ran under (None if nothing ran out of memory).

        Raises:
            M2LError: `too_large` of a single piece that does not fit in the device's memory.
        """
        start = 0
        while start < len(items):
            stop = len(items) if limit is None else start + leading(items[start:], limit)
            try:
                run(slice(start, stop))
                start = stop
                continue
            except torch.OutOfMemoryError:
                pass  # split below, outside the handler: its traceback holds the failed part's tensors
            if stop - start == 1:
                self.free_device_cache()
                raise too_large(start)
            part = items[start:stop]
            limit = self.lower_batch_size(sum(part), sum(part[: len(part) // 2]))
            limit = self.halving_on_oom(
                part, lambda sub, at=start: run(slice(at + sub.start, at + sub.stop)), too_large, limit
            )
            start = stop
        return limit

    def run_pieces(self, batch: list[P], run: Callable[[list[P]], None], limit: int | None = None) -> None:
        """`run(batch)` for a batch of pieces (or parts of at most `limit` inputs), in halves when
        the device runs out of memory (`halving_on_oom`; a single piece that does not fit is
        `single_pass_error`)."""
        self.halving_on_oom(
            [p.items for p in batch],
            lambda part: run(batch[part]),
            lambda k: self.single_pass_error(batch[k].units),
            limit,
        )

    def lower_batch_size(self, tried: int, fits: int) -> int:
        """After running out of device memory with `tried` inputs in one pass: frees the device's
        cached memory and lowers `batch_size` to `fits` (at least 1) with a warning, if it was
        larger; returns `fits`."""
        self.free_device_cache()
        fits = max(1, fits)
        if self.batch_size > fits:
            warnings.warn(
                f"out of {self.device} memory with {tried} inputs in one pass: "
                f"batch_size lowered from {self.batch_size} to {fits} (--batch-size sets it)",
                stacklevel=3,
            )
            self.batch_size = fits
        return fits

    def single_pass_error(self, units: int) -> M2LError:
        """The one-line error for a single pass of `units` units that does not fit in memory."""
        return M2LError(
            f"out of {self.device} memory for a single pass of {units} {self.unit_name}; "
            f"lower the window (--window) or the batch size (--batch-size)"
        )

    def free_device_cache(self) -> None:
        """Give the device's cached memory back (after running out of it)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ----------------------------------------------------------------------------- former names
    def num_latents(self, samples: int, left_pad: int | None = None) -> int:
        """Deprecated: `num_units` (for v2 the number of chunks, not of latents)."""
        warnings.warn(
            "Codec.num_latents is deprecated: use Codec.num_units", DeprecationWarning, stacklevel=2
        )
        return self.num_units(samples, left_pad)

    @property
    def hop_length(self) -> int:
        """Deprecated: `samples_per_unit` (not the STFT hop, which is `cfg.spectral.hop_length`)."""
        warnings.warn(
            "Codec.hop_length is deprecated: use Codec.samples_per_unit", DeprecationWarning, stacklevel=2
        )
        return self.samples_per_unit

    @hop_length.setter
    def hop_length(self, value: int) -> None:
        """Deprecated: sets `samples_per_unit`."""
        warnings.warn(
            "Codec.hop_length is deprecated: use Codec.samples_per_unit", DeprecationWarning, stacklevel=2
        )
        self.samples_per_unit = value


def leading(items: Sequence[int], limit: int) -> int:
    """How many leading pieces hold at most `limit` inputs together (at least one)."""
    total = 0
    for count, n in enumerate(items):
        total += n
        if count and total > limit:
            return count
    return len(items)
