"""Latents in and out of the generator: normalised with the corpus statistics of `m2l stats`.

The generator works on v1 rows [64, frames] with zero mean and unit variance per latent dimension
(so that the data and the unit noise of the flow have the same scale). These helpers check that
the statistics fit the generator and call `LatentStats.normalize` / `denormalize`; a
`LatentCropDataset` made with `stats=` serves training crops already normalised.
"""

from __future__ import annotations

import torch

from m2l.errors import M2LError
from m2l.generate.model import GeneratorConfig
from m2l.latents.stats import LatentStats

KIND = "v1"
"""The latent layout the generator models: v1 rows, [64, frames]."""


def check_stats(stats: LatentStats, cfg: GeneratorConfig) -> None:
    """Refuse statistics of another layout or width than the generator's latents.

    Raises:
        M2LError: stats of v2 latents, or of another number of latent dimensions.
    """
    if stats.kind != KIND or stats.latent_dim != cfg.latent_dim:
        raise M2LError(
            f"statistics of {stats.model_id} ({stats.kind}, {stats.latent_dim} dimensions) do not fit "
            f"generator {cfg.name} ({KIND} rows of {cfg.latent_dim} dimensions)"
        )


def to_generator(latents: torch.Tensor, stats: LatentStats, cfg: GeneratorConfig) -> torch.Tensor:
    """Codec latents -> the generator's normalised latents, per latent dimension.

    Args:
        latents: [..., D, frames] v1 latents (a row, a file's rows [channels, D, frames], a batch).
        stats: the corpus statistics.
        cfg: the generator's config (checked against `stats`).

    Returns:
        [..., D, frames] normalised latents.
    """
    check_stats(stats, cfg)
    return stats.normalize(latents, "dims")


def from_generator(z: torch.Tensor, stats: LatentStats, cfg: GeneratorConfig) -> torch.Tensor:
    """The generator's normalised latents [..., D, frames] -> codec latents [..., D, frames]
    (the inverse of `to_generator`, before decoding)."""
    check_stats(stats, cfg)
    return stats.denormalize(z, "dims")
