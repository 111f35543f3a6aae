"""Precision: what a precision choice means on a device, decided in one place.

The codec commands' `--precision` and the training config's `precision` field take the same
choices (`PRECISIONS`), and `resolve_precision` turns a choice into the dtype the networks
autocast to (None: no autocast, the model's own dtype). The choices:

- "fp32": no autocast.
- "bf16": bfloat16 autocast.
- "fp16": float16 autocast. Training needs a CUDA device for it (its gradient scaler is CUDA's).
- "auto": the use decides, given as the resolver's `training` argument:
  - inference (`training=False`): bf16 on a CUDA GPU that supports it, else no autocast; it never
    picks fp16 by itself, whose narrow range is a risk a user opts into with "fp16";
  - training (`training=True`): on a CUDA GPU, bf16 where supported, else fp16 (trained with a
    gradient scaler); on any other device no autocast.

Torch is imported only when a choice is resolved, so that the command line can offer the choices
without it (`m2l --help` imports no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from m2l.errors import M2LError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""The precision choices, in the order help texts and errors list them."""


def check_precision(choice: object) -> None:
    """Refuse a choice that is not one of `PRECISIONS`.

    Raises:
        M2LError: naming the choices.
    """
    if choice not in PRECISIONS:
        raise M2LError(f"precision must be {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}, got {choice!r}")


def resolve_precision(choice: str, device: torch.device, *, training: bool = False) -> torch.dtype | None:
    """The autocast dtype of a precision choice on `device` (see the module docstring).

    Args:
        choice: one of `PRECISIONS`.
        device: the device the networks run on.
        training: resolve for training (what "auto" picks on a CUDA GPU without bf16, and
            whether fp16 needs CUDA) instead of for inference.

    Returns:
        torch.bfloat16 or torch.float16 for autocast, or None for none (float32). A training run
        that gets torch.float16 needs a gradient scaler.

    Raises:
        M2LError: an unknown choice, or fp16 for training on a device other than CUDA.
    """
    import torch

    check_precision(choice)
    on_cuda = device.type == "cuda"
    if choice == "auto":
        if not on_cuda:
            return None
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if training else None
    if choice == "fp16" and training and not on_cuda:
        raise M2LError("precision=fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]
