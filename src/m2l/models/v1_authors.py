"""Parameter names of the authors' released Music2Latent checkpoint, mapped onto ours.

The release stores {'gen_state_dict': ...} with flat `down_layers` / `up_layers` lists; ours groups
the same tensors by role. The decoder's `bottleneck_layers.*.proj_emb` tensors are never used by
the released forward pass and are dropped on conversion.
"""

from __future__ import annotations

import torch

from m2l.config import V1Config
from m2l.errors import M2LError

_ATTN = {
    "att.mha.in_proj_weight": "att.qkv.weight",
    "att.mha.in_proj_bias": "att.qkv.bias",
    "att.mha.out_proj.weight": "att.proj.weight",
    "att.mha.out_proj.bias": "att.proj.bias",
}
_UNUSED_SUFFIX = ".proj_emb.weight", ".proj_emb.bias"


def _block_map(src: str, dst: str, ours: set[str]) -> dict[str, str]:
    """Map every parameter under module `dst` (ours) to its name under `src` (the authors)."""
    out = {}
    for name in ours:
        if not name.startswith(dst + "."):
            continue
        rest = name[len(dst) + 1 :]
        rest = {v: k for k, v in _ATTN.items()}.get(rest, rest)
        rest = rest.replace("conv.", "c.") if rest.startswith("conv.") else rest
        out[f"{src}.{rest}"] = name
    return out


def authors_key_map(cfg: V1Config, ours: set[str]) -> dict[str, str]:
    """{authors name: our name} for every tensor of our v1 model with config `cfg`."""
    m: dict[str, str] = {}
    levels, n = len(cfg.channels), cfg.unet_blocks
    for i in range(levels):  # encoder: block, down, block, down, ...
        m |= _block_map(f"encoder.down_layers.{2 * i}", f"encoder.blocks.{i}", ours)
        m |= _block_map(f"encoder.down_layers.{2 * i + 1}", f"encoder.downs.{i}", ours)
        m |= _block_map(f"decoder.up_layers.{2 * i}", f"decoder.blocks.{i}", ours)
        m |= _block_map(f"decoder.up_layers.{2 * i + 1}", f"decoder.ups.{i}", ours)
    for j in range(cfg.bottleneck_blocks):
        m |= _block_map(f"encoder.bottleneck_layers.{j + 1}", f"encoder.blocks_1d.{j}", ours)
        m |= _block_map(f"decoder.bottleneck_layers.{j}", f"decoder.blocks_1d.{j}", ours)
    for a, b in [
        ("encoder.gain.scale", "encoder.freq_gain"),
        ("encoder.prenorm_1d_to_2d", "encoder.norm_2d"),
        ("encoder.bottleneck_layers.0", "encoder.proj_in"),
        ("encoder.conv_out", "encoder.proj_out"),
        ("decoder.conv_inp", "decoder.proj_in"),
        ("decoder.conv_out_bottleneck", "decoder.proj_out"),
        ("encoder.conv_inp", "encoder.conv_in"),
        ("encoder.norm_out", "encoder.norm_out"),
    ]:
        m |= {a: b} if b in ours else _block_map(a, b, ours)
    u, per = "denoiser.net", 2 * n + 1  # each UNet level: (cross, block) * n, then resample
    for i in range(levels):
        for b in range(n):
            m |= _block_map(f"down_layers.{i * per + 2 * b}", f"{u}.down_cross.{i}.{b}", ours)
            m |= _block_map(f"down_layers.{i * per + 2 * b + 1}", f"{u}.down_blocks.{i}.{b}", ours)
            k = levels - 1 - i  # up path runs coarsest first
            m |= _block_map(f"up_layers.{k * per + 2 * b}", f"{u}.up_cross.{i}.{b}", ours)
            m |= _block_map(f"up_layers.{k * per + 2 * b + 1}", f"{u}.up_blocks.{i}.{b}", ours)
        if i < levels - 1:
            m |= _block_map(f"down_layers.{i * per + 2 * n}", f"{u}.downs.{i}", ours)
            m |= _block_map(f"up_layers.{(levels - 2 - i) * per + 2 * n}", f"{u}.ups.{i}", ours)
    for a, b in [
        ("emb_proj", "noise_mlp"),
        ("scale_inp", "scale_in"),
        ("scale_out", "scale_out"),
        ("conv_inp", "conv_in"),
        ("conv_decoded", "out_cross"),
        ("norm_out", "norm_out"),
        ("conv_out", "conv_out"),
    ]:
        m |= _block_map(a, f"{u}.{b}", ours)
    return m


def convert_authors_state_dict(
    authors_state: dict[str, torch.Tensor], cfg: V1Config, ours: dict[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """Rename and check the authors' tensors against our model's state dict `ours`.

    Raises:
        M2LError: on missing or unexpected keys, or shape mismatches (never a partial load).
    """
    key_map = authors_key_map(cfg, set(ours))
    unused = {k for k in authors_state if k.startswith("decoder.") and k.endswith(_UNUSED_SUFFIX)}
    missing = sorted(set(key_map) - set(authors_state))
    unexpected = sorted(set(authors_state) - set(key_map) - unused)
    if missing or unexpected:
        parts = [
            f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
        ]
        raise M2LError(
            f"{source}: not a Music2Latent checkpoint for {cfg.name}: " + ", ".join(p for p in parts if p)
        )
    out = {}
    for theirs, mine in key_map.items():
        tensor = authors_state[theirs]
        if tuple(tensor.shape) != tuple(ours[mine].shape):
            raise M2LError(
                f"{source}: tensor {theirs} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(ours[mine].shape)}"
            )
        out[mine] = tensor
    return out
