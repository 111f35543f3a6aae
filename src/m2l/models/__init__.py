"""Model architectures: v1 (Music2Latent) and v2 (Music2Latent2)."""

from __future__ import annotations

import torch
from torch import nn

from m2l.config import ModelConfig, V2Config
from m2l.errors import M2LError


def create(config: ModelConfig) -> nn.Module:
    """An untrained model of the architecture `config` describes.

    Raises:
        M2LError: the config passes its field checks but its layers cannot be built (a channel
            count that no GroupNorm grouping divides, for instance).
    """
    try:
        if isinstance(config, V2Config):
            from m2l.models.v2 import Music2Latent2

            return Music2Latent2(config)
        from m2l.models.v1 import Music2Latent

        return Music2Latent(config)
    except (ValueError, RuntimeError, TypeError, ZeroDivisionError) as err:
        if isinstance(err, M2LError):
            raise
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise M2LError(f"config {config.name}: cannot build the model ({reason})") from None


def state_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the state dict of `create(config)`, found by building the
    model on the meta device: nothing is allocated, however large the config.

    Raises:
        M2LError: the model cannot be built (see `create`).
    """
    with torch.device("meta"):
        skeleton = create(config)
    return {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
