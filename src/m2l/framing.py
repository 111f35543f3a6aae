"""How a codec frames audio: padding, units, batches of rows, seams and progress counting
(`Framing`, which `m2l.codec.Codec` inherits; its numbers come from the model config).

A clip of N samples is padded with `left_pad` samples before it (default n_fft - hop, so
that every sample of the clip is covered by a full set of overlapping STFT frames) and zeros after
it up to m * hop_length + n_fft - hop samples, m = number of units (latent frames for v1, chunks
for v2; at least 1). Decoding overlap-adds the frames and cuts [left_pad, left_pad + N) back out.
`left_pad=0` reproduces the alignment of the authors' package (which crops instead of padding).
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

import torch

from m2l.checks import checked_int
from m2l.config import ModelConfig
from m2l.errors import M2LError

Progress = Callable[[str, int, int], None]
"""`progress(task, done, total)`: how far an `encode` or `decode` call (or the clip `encode_many` is
at) is (see `Codec.progress`)."""


class Framing(ABC):
    """The framing arithmetic of a codec, over the attributes `m2l.codec.Codec` sets: `cfg` (the
    model config), `hop_length`, `default_left_pad`, `batch_size`, `progress`, `unit_name`; a
    sibling codec tells where its seams fall (`seam_units`, `seam_spacing`)."""

    cfg: ModelConfig
    hop_length: int
    default_left_pad: int
    batch_size: int
    progress: Progress | None
    unit_name: str

    def num_latents(self, samples: int, left_pad: int | None = None) -> int:
        """Units (latent frames for v1, chunks for v2) for a clip of `samples` samples."""
        pad = self.default_left_pad if left_pad is None else left_pad
        tail = self.cfg.spectral.n_fft - self.cfg.spectral.hop_length
        return max(1, -(-(samples + pad - tail) // self.hop_length))

    def padded_length(self, units: int) -> int:
        """Samples of the padded waveform that `units` units cover."""
        return units * self.hop_length + self.cfg.spectral.n_fft - self.cfg.spectral.hop_length

    def pad_rows(self, rows: torch.Tensor, left_pad: int | None) -> tuple[torch.Tensor, int]:
        """[..., samples] -> (float waveforms padded to whole units with `left_pad` samples in
        front, number of units)."""
        pad = self.default_left_pad if left_pad is None else left_pad
        m = self.num_latents(rows.shape[-1], pad)
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
        starts = self.seam_units(self.num_latents(samples))
        return [s * self.hop_length - pad for s in starts if 0 < s * self.hop_length - pad < samples]

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
        """The padding before the audio: the codec default if None, else an int in [0, hop_length]."""
        if left_pad is None:
            return self.default_left_pad
        return checked_int(left_pad, "left_pad", 0, self.hop_length)

    @abstractmethod
    def seam_units(self, units: int) -> list[int]:
        """Unit indices where pieces processed apart are joined, for `units` units."""

    @property
    @abstractmethod
    def seam_spacing(self) -> int:
        """Samples between two seams (a window of latents for v1, a chunk for v2)."""
