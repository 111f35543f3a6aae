"""Model architectures: v1 (Music2Latent) and v2 (Music2Latent2)."""

from __future__ import annotations

from torch import nn

from m2l.config import ModelConfig, V2Config


def create(config: ModelConfig) -> nn.Module:
    """An untrained model of the architecture `config` describes."""
    if isinstance(config, V2Config):
        from m2l.models.v2 import Music2Latent2

        return Music2Latent2(config)
    from m2l.models.v1 import Music2Latent

    return Music2Latent(config)
