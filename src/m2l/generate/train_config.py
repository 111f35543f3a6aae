"""The generator's training settings: one frozen dataclass, fixed per run (`RUN/config.json`).

`--set key=value` changes a field (parsed with the type of its default, as `m2l train --set`);
`context_mix` takes three weights separated by commas (none, prefix, gap), `label_column` the
name of a manifest column or "" for none. `precision` is "fp32" or "bf16" (the forward pass and
loss of training and validation under `torch.autocast` in bfloat16; weights, gradients, AdamW and
the EMA stay float32).

Fields added after the first runs (`ADDED_FIELDS`) read as their defaults when a run's
`config.json` or training state lacks them, so older runs resume; any other missing or unknown
field is refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from m2l.errors import M2LError, did_you_mean
from m2l.train.config import parse_value


@dataclass(frozen=True)
class GenTrainConfig:
    """How a generator is trained (AdamW with linear warm-up then cosine decay to lr / 10, an EMA
    of the weights, random context masks; see `m2l.generate.training`)."""

    lr: float = 3e-4
    batch_size: int = 32
    steps: int = 20_000
    warmup: int = 500
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    context_mix: tuple[float, float, float] = (0.5, 0.3, 0.2)  # none / prefix / gap
    label_dropout: float = 0.1  # the share of labels dropped (classifier-free guidance)
    label_column: str = ""  # a manifest column to condition on ("": unconditional)
    val_share: float = 0.1  # the share of segments (file rows) held out for validation
    val_batches: int = 4
    val_every: int = 500
    ckpt_every: int = 1000
    keep_last: int = 3
    log_every: int = 50
    seed: int = 0
    precision: str = "fp32"  # "fp32" or "bf16" (autocast of the forward pass and loss)

    def __post_init__(self) -> None:
        positive = ("batch_size", "steps", "val_batches", "val_every", "ckpt_every", "keep_last", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise M2LError(f"generator training: {name} must be a positive integer, got {value!r}")
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**62 and self.warmup >= 0):
            raise M2LError("generator training: seed must be in [0, 2**62) and warmup >= 0")
        shares = {"label_dropout": self.label_dropout, "ema_decay": self.ema_decay}
        for name, value in {**shares, "val_share": self.val_share}.items():
            if not 0 <= value < 1:
                raise M2LError(f"generator training: {name} must be in [0, 1), got {value!r}")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.grad_clip > 0):
            raise M2LError("generator training: lr and grad_clip must be > 0, weight_decay >= 0")
        mix = self.context_mix
        if len(mix) != 3 or min(mix) < 0 or sum(mix) <= 0:
            raise M2LError(f"generator training: context_mix must be 3 non-negative weights, got {mix!r}")
        if self.precision not in PRECISIONS:
            known = ", ".join(PRECISIONS)
            raise M2LError(f"generator training: precision must be one of {known}, got {self.precision!r}")


PRECISIONS = ("fp32", "bf16")
"""The values of `GenTrainConfig.precision`."""
ADDED_FIELDS = ("precision",)
"""Fields a run's config may lack (they came later): read as their defaults."""


def gen_train_config_to_dict(cfg: GenTrainConfig) -> dict[str, Any]:
    """The JSON-ready fields of `cfg`."""
    data = dataclasses.asdict(cfg)
    data["context_mix"] = list(cfg.context_mix)
    return data


def gen_train_config_from_dict(data: dict[str, Any], origin: str) -> GenTrainConfig:
    """The config of a run's `config.json` or a training state (every field checked).

    Raises:
        M2LError: unknown or missing fields, or bad values (naming `origin`).
    """
    fields = {f.name for f in dataclasses.fields(GenTrainConfig)}
    if isinstance(data, dict):
        defaults = GenTrainConfig()
        data = {**{name: getattr(defaults, name) for name in ADDED_FIELDS}, **data}
    if not isinstance(data, dict) or set(data) != fields:
        differ = sorted(set(data) ^ fields) if isinstance(data, dict) else "all"
        raise M2LError(f"{origin}: malformed generator training config (fields {differ} differ)")
    mix = data["context_mix"]
    try:
        return GenTrainConfig(**{**data, "context_mix": tuple(float(w) for w in mix)})
    except (TypeError, ValueError, M2LError) as err:
        raise M2LError(f"{origin}: malformed generator training config ({err})") from None


def apply_gen_overrides(cfg: GenTrainConfig, overrides: list[str]) -> GenTrainConfig:
    """`cfg` with the `field=value` strings of `--set` applied.

    Raises:
        M2LError: an unknown field (with the closest name), a value of the wrong type.
    """
    fields = [f.name for f in dataclasses.fields(GenTrainConfig)]
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            what = f"unknown field {key}{did_you_mean(key, fields)}" if sep else "expected FIELD=VALUE"
            raise M2LError(f"override {item!r}: {what}; fields: {', '.join(fields)}")
        if key == "context_mix":
            parts = raw.split(",")
            changes[key] = tuple(parse_value(key, part.strip(), float) for part in parts)
        else:
            changes[key] = parse_value(key, raw.strip(), type(getattr(cfg, key)))
    return dataclasses.replace(cfg, **changes) if changes else cfg
