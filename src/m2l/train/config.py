"""Training configuration: one frozen dataclass, named presets, and `key=value` overrides.

The resolved config is written to `RUN_DIR/config.json`; that file is itself a valid CONFIG
argument of `m2l train`, so a run can be repeated or continued from its own record.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m2l.config import PRESETS, ModelConfig, check_precision, preset, preset_name
from m2l.consistency.loss import WEIGHTINGS
from m2l.errors import M2LError, did_you_mean


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run except the data folders and the run directory."""

    name: str = "paper"
    model: str = "m2l-v1"  # model preset name (a former name reads as the current one)
    crop_frames: int = 64  # STFT frames per training crop (64 -> 34,304 samples for v1)
    batch_size: int = 16  # global batch, split over ranks
    steps: int = 800_000
    # optimiser: RAdam, linear warm-up then cosine decay to min_lr
    lr: float = 1e-4
    min_lr: float = 1e-6
    warmup_steps: int = 10_000
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    ema_decay: float = 0.9999  # with warm-up min(decay, (1 + n) / (10 + n))
    # consistency objective
    p_mean: float = -1.1  # log-normal sigma sampling
    p_std: float = 2.0
    delta_start: float = 0.1  # teacher offset in index space, exponential decay
    delta_end: float = 0.001
    huber_c: float = 0.00054  # pseudo-Huber c = huber_c * sqrt(elements per sample)
    # recipe options (see RECIPES; the defaults are the published recipe)
    recipe: str = "published"  # the bundle the options below came from (a record; see RECIPES)
    teacher: str = "index_delta"  # index_delta: published delta schedule | curriculum: see gap_*
    gap_stage_steps: int = 1000  # curriculum: denoising for this many steps, then gap halves each
    gap_min: float = 1 / 64  # curriculum: smallest relative teacher gap
    weighting: str = "inverse_gap"  # inverse_gap: 1 / (sigma - sigma_teacher) | edm: 1 / c_out
    spectral_weight: float = 0.0  # multi-resolution STFT loss of the one-step decode from sigma_max
    # 0: an extra one-step pass over every sample | p > 0: a fraction p of the samples is drawn at
    # sigma_max and its student output is scored (no extra pass)
    spectral_share: float = 0.0
    # phase-aware terms on the same one-step decodes: complex multi-resolution STFT L1 + waveform
    # L1 (`m2l.train.losses.multires_complex_loss`); needs spectral_share = 0
    phase_weight: float = 0.0
    # phase agreement of the same one-step decodes, blind to their level
    # (`m2l.train.losses.multires_coherence_loss`); needs spectral_share = 0
    coherence_weight: float = 0.0
    # level term on the same one-step decodes: log band energies (`band_level_loss`)
    level_weight: float = 0.0
    # two-step loss: the one-step decode (no gradient) is re-noised to a level drawn log-uniformly
    # in [rollout_sigma_min, rollout_sigma_max], decoded again and scored like the one-step
    # decode (spectral, phase terms), so a second decoding step learns to improve on the first
    rollout_weight: float = 0.0
    rollout_sigma_min: float = 0.05
    rollout_sigma_max: float = 10.0
    # v2 only: the second step as the decoder takes it for every chunk after the first: the left
    # chunk of the first decode re-noised to that level (the decoder's sigma_cond), the right
    # chunk started again from sigma_max beside it (`Codec2` decoding)
    rollout_context: bool = False
    # the auxiliary terms named in aux_fade_terms (a comma list of spectral, phase, coherence,
    # level, rollout) fade linearly to 0 over aux_fade_steps steps from step aux_fade_start (0: never);
    # the others and the consistency objective stay
    aux_fade_start: int = 0
    aux_fade_steps: int = 1000
    aux_fade_terms: str = "spectral,phase,level,rollout"  # as recorded before coherence existed
    # architecture changes to the model preset, for size studies: comma-separated FIELD=VALUE of
    # its config (a tuple as 16/32/64), e.g. "dim=192,depth=6"; the model is then named
    # "<preset>+<model_set>" (`model_config`)
    model_set: str = ""
    # fine-tuning: a model source ("default", a checkpoint, a run folder) of the run's model
    # preset whose weights start the run (and its EMA); "" starts from `seed`
    init: str = ""
    # execution
    precision: str = "auto"  # auto | fp32 | bf16 | fp16: see m2l.precision (training=True)
    compile: bool = False
    channels_last: bool = True
    workers: int = 2  # data loader processes per rank
    seed: int = 0
    min_rms: float = 1e-3  # crops quieter than this are redrawn
    max_nonfinite: int = 20  # stop after this many non-finite losses in a row
    # observability and checkpoints
    log_every: int = 10
    val_every: int = 1000
    val_items: int = 16  # fixed validation crops
    val_seconds: float = 3.0  # length of each validation crop
    val_audio: int = 2  # reconstructions saved as audio + image per validation
    val_fraction: float = 0.02  # files held out when no validation folder is given
    ckpt_every: int = 1000
    keep_last: int = 3
    tensorboard: bool = True  # used when the tensorboard package is installed
    # history, written by `m2l train --extend`, never by --set: (step, steps before) of each
    # extension; the lr and teacher schedules continue from their value at that step
    extensions: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "extensions", _extensions(self.extensions, self.steps))
        _check_values(self)
        if isinstance(self.model, str):
            object.__setattr__(self, "model", preset_name(self.model))
        if self.model not in PRESETS:
            raise M2LError(
                f"training config: model must be a model preset ({', '.join(sorted(PRESETS))}), "
                f"got {self.model!r}{did_you_mean(str(self.model), PRESETS)}"
            )
        check_precision(self.precision)
        model_config(self)  # a bad model_set is refused here, before any run starts
        for key in (
            "batch_size",
            "steps",
            "crop_frames",
            "log_every",
            "val_every",
            "ckpt_every",
            "keep_last",
            "max_nonfinite",
            "val_items",
        ):
            if getattr(self, key) < 1:
                raise M2LError(f"training config: {key} must be >= 1, got {getattr(self, key)}")
        if not 0 < self.delta_end <= self.delta_start <= 1:
            raise M2LError("training config: need 0 < delta_end <= delta_start <= 1")
        choices = {"recipe": tuple(RECIPES), "teacher": TEACHERS, "weighting": WEIGHTINGS}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise M2LError(
                    f"training config: {key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}"
                )
        if not 0 < self.gap_min <= 1 or self.gap_stage_steps < 1 or not self.spectral_weight >= 0:
            raise M2LError(
                "training config: need 0 < gap_min <= 1, gap_stage_steps >= 1 and spectral_weight >= 0"
            )
        if not 0 <= self.spectral_share <= 1:
            raise M2LError("training config: need 0 <= spectral_share <= 1")
        _check_auxiliary(self)


TEACHERS = ("index_delta", "curriculum")
_FIXED_MODEL_FIELDS = ("kind", "name", "spectral", "consistency")  # not for model_set


def model_config(cfg: TrainConfig) -> ModelConfig:
    """The config of the model a run trains: its `model` preset changed by `model_set`.

    Raises:
        M2LError: a `model_set` item that is not FIELD=VALUE of a settable field of the preset's
            config, a value not of that field's type, or a config the preset's checks refuse.
    """
    base = preset(cfg.model)
    if not cfg.model_set:
        return base
    defaults = {
        f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.name not in _FIXED_MODEL_FIELDS
    }
    changes: dict[str, Any] = {}
    for item in cfg.model_set.split(","):
        key, sep, raw = (part.strip() for part in item.partition("="))
        if not sep or key not in defaults:
            what = f"unknown field {key}{did_you_mean(key, defaults)}" if sep else "expected FIELD=VALUE"
            raise M2LError(f"model_set item {item!r}: {what}; fields of {base.name}: {', '.join(defaults)}")
        default = defaults[key]
        if isinstance(default, tuple):
            kind = type(default[0]) if default else int
            changes[key] = tuple(parse_value(f"model_set {key}", v.strip(), kind) for v in raw.split("/"))
        else:
            changes[key] = parse_value(f"model_set {key}", raw, type(default))
    return dataclasses.replace(base, name=f"{base.name}+{cfg.model_set.replace(' ', '')}", **changes)


def _check_auxiliary(cfg: TrainConfig) -> None:
    """The phase, coherence, level, two-step and fading options: in range, and used with
    one-step decodes."""
    fidelity = (cfg.phase_weight, cfg.coherence_weight, cfg.level_weight, cfg.rollout_weight)
    if min(fidelity) < 0:
        raise M2LError(
            "training config: need phase_weight, coherence_weight, level_weight and rollout_weight >= 0"
        )
    if max(fidelity) > 0 and cfg.spectral_share > 0:
        raise M2LError(
            "training config: phase_weight, coherence_weight, level_weight and rollout_weight need "
            "spectral_share = 0"
        )
    if cfg.rollout_weight > 0 and max(fidelity[:3] + (cfg.spectral_weight,)) == 0:
        raise M2LError(
            "training config: rollout_weight scores with the spectral, phase, coherence or level "
            "terms: set one"
        )
    if not 0 < cfg.rollout_sigma_min <= cfg.rollout_sigma_max:
        raise M2LError("training config: need 0 < rollout_sigma_min <= rollout_sigma_max")
    if cfg.aux_fade_start < 0 or cfg.aux_fade_steps < 1:
        raise M2LError("training config: need aux_fade_start >= 0 and aux_fade_steps >= 1")
    unknown = set(cfg.aux_fade_terms.split(",")) - set(AUX_TERMS)
    if unknown:
        raise M2LError(
            f"training config: aux_fade_terms takes a comma list of {', '.join(AUX_TERMS)}, "
            f"got {cfg.aux_fade_terms!r}"
        )


AUX_TERMS = ("spectral", "phase", "coherence", "level", "rollout")


_RULES: dict[str, tuple[str, Any]] = {
    "lr": ("> 0", lambda v: v > 0),
    "min_lr": (">= 0", lambda v: v >= 0),
    "warmup_steps": (">= 0", lambda v: v >= 0),
    "beta1": ("in [0, 1)", lambda v: 0 <= v < 1),
    "beta2": ("in [0, 1)", lambda v: 0 <= v < 1),
    "weight_decay": (">= 0", lambda v: v >= 0),
    "grad_clip": (">= 0 (0 = off)", lambda v: v >= 0),
    "ema_decay": ("in [0, 1)", lambda v: 0 <= v < 1),
    "p_std": ("> 0", lambda v: v > 0),
    "huber_c": ("> 0", lambda v: v > 0),
    "workers": (">= 0", lambda v: v >= 0),
    "seed": (">= 0", lambda v: v >= 0),
    "min_rms": (">= 0", lambda v: v >= 0),
    "val_seconds": ("> 0", lambda v: v > 0),
    "val_audio": (">= 0", lambda v: v >= 0),
    "val_fraction": ("in [0, 1)", lambda v: 0 <= v < 1),
}
"""Value rules of the numeric fields (besides the counts that must be >= 1)."""


def _check_values(cfg: TrainConfig) -> None:
    """Every float finite, every field of `_RULES` in its range, min_lr <= lr."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise M2LError(f"training config: {f.name} must be a finite number, got {value}")
    for key, (rule, ok) in _RULES.items():
        if not ok(getattr(cfg, key)):
            raise M2LError(f"training config: {key} must be {rule}, got {getattr(cfg, key)!r}")
    if cfg.min_lr > cfg.lr:
        raise M2LError(f"training config: min_lr must be <= lr, got min_lr={cfg.min_lr} > lr={cfg.lr}")


def _extensions(value: Any, steps: int) -> tuple[tuple[int, int], ...]:
    """Normalise the `extensions` record (JSON gives lists) and check that it is a history."""
    try:
        pairs = tuple((int(at), int(before)) for at, before in value)
    except (TypeError, ValueError):
        pairs = None
    following = [*(pairs or ())[1:], (math.inf, steps)]  # the next extension (or the end) of each
    ok = pairs is not None and all(
        0 < at <= before < end and at <= next_at
        for (at, before), (next_at, end) in zip(pairs, following, strict=False)
    )
    if not ok:
        raise M2LError(
            f"training config: extensions must be [[step, steps_before], ...] as `m2l train --extend` "
            f"records them, got {value!r}"
        )
    return pairs


RECIPES: dict[str, dict[str, Any]] = {
    # the released Music2Latent recipe: fixed schedule of small teacher offsets, 1 / gap weights
    "published": {
        "teacher": "index_delta",
        "weighting": "inverse_gap",
        "spectral_weight": 0.0,
        "spectral_share": 0.0,
    },
    # learns in CPU-hours (BENCHMARKS.md, recipe study): denoising first, gap halved per stage,
    # EDM weighting, and a multi-resolution spectral loss on the one-step reconstruction
    "fast": {"teacher": "curriculum", "weighting": "edm", "spectral_weight": 8.0, "spectral_share": 0.0},
}
"""Named bundles of the recipe options; `--set recipe=NAME` applies one before other overrides."""


def _small() -> TrainConfig:
    return TrainConfig(
        name="small",
        model="m2l-v1-small",
        batch_size=8,
        steps=100_000,
        lr=2e-4,
        warmup_steps=1000,
        ema_decay=0.999,
        val_every=500,
        ckpt_every=500,
        val_items=8,
        precision="auto",
        gap_stage_steps=800,
        **_fast(),
    )


def _tiny() -> TrainConfig:
    return TrainConfig(
        name="tiny",
        model="m2l-v1-tiny",
        batch_size=8,
        steps=3000,
        lr=1e-3,
        min_lr=1e-5,
        warmup_steps=100,
        ema_decay=0.995,
        val_every=250,
        ckpt_every=250,
        val_items=6,
        val_seconds=2.0,
        workers=1,
        gap_stage_steps=300,
        **_fast(),
    )


def _fast() -> dict[str, Any]:
    """The CPU presets learn with the `fast` recipe (BENCHMARKS.md, recipe study)."""
    return {"recipe": "fast", **RECIPES["fast"]}


def _v2(base: TrainConfig, model: str, name: str = "") -> TrainConfig:
    """Music2Latent2 variant of a recipe: pairs of 64-frame chunks (67,072 samples)."""
    # keeps the base's recipe: `fast` for the CPU presets (checked on tiny-v2 at equal compute,
    # BENCHMARKS.md), `published` for paper-v2
    return dataclasses.replace(base, name=name or f"{base.name}-v2", model=model, crop_frames=128)


TRAIN_PRESETS = {
    "paper": TrainConfig,
    "small": _small,
    "tiny": _tiny,
    # v2: the paper's recipe is v1's (RAdam 1e-4, cosine to 1e-6, EMA 0.9999, batch 16), 1M steps
    "paper-v2": lambda: _v2(TrainConfig(steps=1_000_000), "m2l-v2"),
    "small-v2": lambda: _v2(_small(), "m2l-v2-small"),
    "small-v2-stereo": lambda: _v2(_small(), "m2l-v2-small-stereo", "small-v2-stereo"),
    "tiny-v2": lambda: _v2(_tiny(), "m2l-v2-tiny"),
}


def train_config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as a JSON-ready dict (the content of a run's config.json)."""
    return dataclasses.asdict(cfg)


def train_config_from_dict(data: dict[str, Any], origin: str = "config") -> TrainConfig:
    """Rebuild a config from `train_config_to_dict` output; errors name `origin` (a file)."""
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise M2LError(
            f"{origin}: unknown training config field(s) {', '.join(unknown)}"
            f"{did_you_mean(unknown[0], known) if len(unknown) == 1 else ''}"
        )
    try:
        return TrainConfig(**data)
    except TypeError as err:
        raise M2LError(f"{origin}: malformed training config ({err})") from None
    except M2LError as err:
        raise M2LError(f"{origin}: {err}") from None


def load_train_config(source: str) -> TrainConfig:
    """A preset name (`TRAIN_PRESETS`) or a JSON file written by a previous run."""
    if source in TRAIN_PRESETS:
        return TRAIN_PRESETS[source]()
    path = Path(source)
    if not path.is_file():
        raise M2LError(f"{source}: neither a training preset ({', '.join(TRAIN_PRESETS)}) nor a config file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise M2LError(f"{path}: not a JSON training config ({err})") from None
    if not isinstance(data, dict):
        raise M2LError(f"{path}: not a JSON training config (expected an object)")
    return train_config_from_dict(data, str(path))


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply `field=value` strings; values are parsed with the type of the field's default."""
    changes: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for item in overrides:  # a recipe bundle first, so that single options can refine it
        key, _, raw = item.partition("=")
        if key.strip() == "recipe":
            if raw.strip() not in RECIPES:
                raise M2LError(f"override {item!r}: recipe must be one of {', '.join(RECIPES)}")
            changes.update(RECIPES[raw.strip()], recipe=raw.strip())
    for item in overrides:
        if item.partition("=")[0].strip() == "recipe":
            continue
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            settable = [name for name in fields if name != "extensions"]
            what = f"unknown field {key}{did_you_mean(key, settable)}" if sep else "expected FIELD=VALUE"
            raise M2LError(f"override {item!r}: {what}; fields: {', '.join(settable)}")
        if key == "extensions":
            raise M2LError(f"override {item!r}: extensions is a record that `m2l train --extend` writes")
        changes[key] = parse_value(key, raw.strip(), type(getattr(cfg, key)))
    return dataclasses.replace(cfg, **changes) if changes else cfg


def parse_value(key: str, raw: str, kind: type) -> Any:
    """The text `raw` of the override `key=raw` as a `kind` (bool, int, float or str).

    Raises:
        M2LError: not a valid value of that type.
    """
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(float(raw)) if raw.lower().replace("e", "").isdigit() else int(raw)
        return kind(raw)
    except ValueError:
        raise M2LError(f"override {key}={raw}: not a valid {kind.__name__}") from None
