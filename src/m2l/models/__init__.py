"""Model architectures: v1 (Music2Latent) and v2 (Music2Latent2).

`create` is the one builder of networks from configs, untrained or holding checked weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from m2l.config import ModelConfig, V2Config
from m2l.errors import M2LError


def create(
    config: ModelConfig, state: dict[str, torch.Tensor] | None = None, *, source: str = "weights"
) -> nn.Module:
    """The model of the architecture `config` describes: untrained, or holding `state`.

    Args:
        config: the architecture.
        state: weights to load strictly (every name, every shape); they are checked against the
            config (`check_state`) before anything is allocated. None: the untrained model (drawn
            from torch's global generator).
        source: where `state` came from (a file), named in errors.

    Raises:
        M2LError: the config passes its field checks but its layers cannot be built (a channel
            count that no GroupNorm grouping divides, for instance), or `state` does not fit it.
    """
    if state is not None:
        check_state(config, state, source)
    try:
        if isinstance(config, V2Config):
            from m2l.models.v2 import Music2Latent2

            model: nn.Module = Music2Latent2(config)
        else:
            from m2l.models.v1 import Music2Latent

            model = Music2Latent(config)
    except (ValueError, RuntimeError, TypeError, ZeroDivisionError) as err:
        if isinstance(err, M2LError):
            raise
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise M2LError(f"config {config.name}: cannot build the model ({reason})") from None
    if state is not None:
        model.load_state_dict(state)
    return model


def state_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the state dict of `create(config)`, found by building the
    model on the meta device: nothing is allocated, however large the config.

    Raises:
        M2LError: the model cannot be built (see `create`).
    """
    with torch.device("meta"):
        skeleton = create(config)
    return {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}


def check_state(config: ModelConfig, state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights that do not fit `config` exactly (every name, every shape), before the model
    is built: the expected shapes come from a meta-device skeleton (`state_shapes`), so a config
    that asks for far more parameters than the file holds costs nothing.

    Args:
        config: the architecture the weights are for.
        state: the weights.
        source: where they came from (a file), named in errors.

    Raises:
        M2LError: the config cannot be built, or the tensors differ from what it needs.
    """
    try:
        ours = state_shapes(config)
    except M2LError as err:
        raise M2LError(f"{source}: {err}") from None
    missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
    wrong = [k for k in sorted(state) if k in ours and tuple(state[k].shape) != ours[k]]
    if missing or unexpected:
        detail = f"{len(missing)} missing, {len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]}"
    elif wrong:
        detail = f"tensor {wrong[0]} has shape {tuple(state[wrong[0]].shape)}, expected {ours[wrong[0]]}"
    else:
        return
    need = sum(math.prod(shape) for shape in ours.values())
    held = sum(t.numel() for t in state.values())
    raise M2LError(
        f"{source}: weights do not fit {config.name}: its config needs {need:,} values in {len(ours)} "
        f"tensors, the file holds {held:,} values in {len(state)} ({detail})"
    )
