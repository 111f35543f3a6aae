"""Latent generation: a small flow-matching transformer over normalised v1 latents.

Music2Latent latents (about 10.8 frames/s x 64 dimensions per audio channel) are compact enough
for a small generative model to learn. This package holds one: `model` (`GeneratorConfig`, its
presets and the network: a 1-D DiT-style transformer over latent frames, adaLN-Zero on the flow
time and an optional class), `flow` (the rectified-flow loss with context masks for continuation
and inpainting, and the Euler / Heun ODE steps), `edm` (the alternative objective: EDM-style
preconditioned diffusion on the same network, `GeneratorConfig.objective`), `sampling` (the seeded
samplers of either objective, `sample` for one window and `sample_long` for clips of any length)
and `normalize` (latents to and from the generator's scale with the
corpus statistics of `m2l stats`); `checkpoint` (the generator's file, `load_generator`),
`data`, `train_config` and `training` (`m2l gen train`), `make` and `cli` (`m2l generate`),
`evaluate` and `report` (`m2l gen eval`).

The generator models one latent row [64, frames] at a time (a stereo clip's mid and side rows are
generated apart for now). The names below resolve on first access, so that importing the package
does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from m2l.lazy import lazy_attribute, lazy_names

if TYPE_CHECKING:
    from m2l.generate.checkpoint import GeneratorFile, load_generator, save_generator
    from m2l.generate.edm import edm_loss
    from m2l.generate.flow import context_masks, flow_loss
    from m2l.generate.model import GENERATOR_PRESETS, Generator, GeneratorConfig, generator_preset
    from m2l.generate.normalize import from_generator, to_generator
    from m2l.generate.sampling import sample, sample_long

_LAZY = {
    "GENERATOR_PRESETS": "m2l.generate.model",
    "Generator": "m2l.generate.model",
    "GeneratorFile": "m2l.generate.checkpoint",
    "load_generator": "m2l.generate.checkpoint",
    "save_generator": "m2l.generate.checkpoint",
    "GeneratorConfig": "m2l.generate.model",
    "context_masks": "m2l.generate.flow",
    "edm_loss": "m2l.generate.edm",
    "flow_loss": "m2l.generate.flow",
    "from_generator": "m2l.generate.normalize",
    "generator_preset": "m2l.generate.model",
    "sample": "m2l.generate.sampling",
    "sample_long": "m2l.generate.sampling",
    "to_generator": "m2l.generate.normalize",
}

__all__ = [
    "GENERATOR_PRESETS",
    "Generator",
    "GeneratorConfig",
    "GeneratorFile",
    "context_masks",
    "edm_loss",
    "flow_loss",
    "from_generator",
    "generator_preset",
    "load_generator",
    "sample",
    "sample_long",
    "save_generator",
    "to_generator",
]


def __getattr__(name: str) -> Any:
    """An exported name, imported from its module on first access."""
    return lazy_attribute(__name__, _LAZY, globals(), name)


def __dir__() -> list[str]:
    return lazy_names(_LAZY, globals())
