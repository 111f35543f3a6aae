"""Encoder passes, the plan of a clip's encode that the corpus encoder packs with other clips'
(`m2l.packing.encode_many`): `Codec.encode_plan` gives a clip's `EncodePlan`, a list of
`EncodePass`es, and `run_batch` runs passes of one input shape as one encoder batch, in parts when
the device runs out of memory (`m2l.framing.Framing.halving_on_oom`).

Each pass stacks `items` inputs of one shape (v1: one window of latents per channel row; v2: one
chunk per row and chunk) and puts the encoder's output where it belongs. (`Codec.encode` of one
clip runs the same windows or chunks in a loop of its own.) The codec is seen through
`PassRunner` (what running passes needs of it), so that this module, which `m2l.codec` imports,
does not import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import torch


class PassRunner(Protocol):
    """What running encoder passes needs of a codec (`m2l.codec.Codec` has it all)."""

    def encoder_pass(self, x: torch.Tensor, *, features: bool = False) -> torch.Tensor:
        """The encoder on a batch of inputs -> float32 outputs on the CPU."""

    def run_pieces(
        self, batch: list[EncodePass], run: Callable[[list[EncodePass]], None], limit: int | None = None
    ) -> None:
        """`run(batch)`, in halves when out of memory (`m2l.framing.Framing.run_pieces`)."""


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


def run_batch(
    codec: PassRunner, passes: list[EncodePass], features: bool = False, limit: int | None = None
) -> None:
    """Run passes of one input shape as one encoder batch (or parts of at most `limit` inputs)
    and hand each its outputs (out of device memory: in halves, see `m2l.framing.Framing.run_pieces`)."""
    codec.run_pieces(passes, partial(run_encoder, codec, features=features), limit)


@torch.inference_mode()
def run_encoder(codec: PassRunner, passes: list[EncodePass], *, features: bool) -> None:
    """The encoder on the stacked inputs of `passes`; each gets its outputs."""
    x = passes[0].make_input() if len(passes) == 1 else torch.cat([p.make_input() for p in passes])
    z = codec.encoder_pass(x, features=features)
    start = 0
    for p in passes:
        p.place(z[start : start + p.items])
        start += p.items
