import json

import pytest

from m2l.errors import M2LError
from m2l.train.config import (
    TRAIN_PRESETS,
    TrainConfig,
    apply_overrides,
    load_train_config,
    model_config,
    train_config_to_dict,
)


def test_presets_build_and_name_models_that_exist():
    from m2l.config import PRESETS

    for name, make in TRAIN_PRESETS.items():
        cfg = make()
        assert cfg.name == name and cfg.model in PRESETS
    paper = TRAIN_PRESETS["paper"]()
    assert (paper.lr, paper.batch_size, paper.warmup_steps, paper.ema_decay) == (1e-4, 16, 10_000, 0.9999)
    v2 = TRAIN_PRESETS["paper-v2"]()  # the Music2Latent2 paper: 67,072-sample pairs, 1M steps
    assert (v2.model, v2.crop_frames, v2.steps, v2.lr, v2.min_lr) == ("m2l-v2", 128, 1_000_000, 1e-4, 1e-6)


def test_overrides_parse_with_the_field_type():
    cfg = apply_overrides(
        TrainConfig(), ["lr=3e-4", "batch_size=32", "compile=true", "steps=1e3", "precision=bf16"]
    )
    assert (cfg.lr, cfg.batch_size, cfg.compile, cfg.steps, cfg.precision) == (3e-4, 32, True, 1000, "bf16")
    for bad in ["nope=1", "lr", "batch_size=many", "compile=maybe", "precision=fp8"]:
        with pytest.raises(M2LError):
            apply_overrides(TrainConfig(), [bad])


def test_a_later_override_of_a_field_wins():
    """`train_argv` relies on it: its fixed `--set`s are refined by the ones a test passes."""
    cfg = apply_overrides(TrainConfig(), ["batch_size=2", "lr=1e-3", "batch_size=4"])
    assert (cfg.batch_size, cfg.lr) == (4, 1e-3)
    assert apply_overrides(TrainConfig(), ["batch_size=4", "batch_size=2"]).batch_size == 2


def test_config_file_round_trip(tmp_path):
    cfg = apply_overrides(TRAIN_PRESETS["tiny"](), ["lr=5e-4"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(train_config_to_dict(cfg)))
    assert load_train_config(str(path)) == cfg
    path.write_text(json.dumps({"lr": 1, "bogus": 2}))
    with pytest.raises(M2LError, match="bogus"):
        load_train_config(str(path))
    with pytest.raises(M2LError, match="neither"):
        load_train_config(str(tmp_path / "missing.json"))


def test_paper_is_the_published_recipe_and_recipe_bundles_apply_before_single_options():
    from m2l.train.config import RECIPES

    paper = TRAIN_PRESETS["paper"]()
    assert (paper.recipe, paper.teacher, paper.weighting, paper.spectral_weight) == (
        "published",
        "index_delta",
        "inverse_gap",
        0.0,
    )
    fast = apply_overrides(paper, ["spectral_weight=3", "recipe=fast"])  # order does not matter
    assert fast.recipe == "fast" and fast.teacher == RECIPES["fast"]["teacher"]
    assert fast.weighting == RECIPES["fast"]["weighting"] and fast.spectral_weight == 3.0
    back = apply_overrides(fast, ["recipe=published"])
    assert {k: getattr(back, k) for k in RECIPES["published"]} == RECIPES["published"]
    for name in ("small", "tiny", "small-v2", "tiny-v2"):  # the CPU presets learn with `fast`
        cfg = TRAIN_PRESETS[name]()
        assert cfg.recipe == "fast" and {k: getattr(cfg, k) for k in RECIPES["fast"]} == RECIPES["fast"]
    assert TRAIN_PRESETS["paper-v2"]().recipe == "published"
    for bad in [
        "recipe=turbo",
        "teacher=ema",
        "weighting=none",
        "gap_min=0",
        "spectral_weight=-1",
        "gap_stage_steps=0",
    ]:
        with pytest.raises(M2LError):
            apply_overrides(paper, [bad])


def test_an_unknown_override_suggests_the_closest_field_and_lists_them_all():
    with pytest.raises(M2LError) as err:
        apply_overrides(TrainConfig(), ["batchsize=4"])
    message = str(err.value)
    assert "unknown field batchsize (did you mean batch_size?); fields: name, model, crop_frames" in message
    assert "\n" not in message and "tensorboard" in message and "extensions" not in message
    with pytest.raises(M2LError, match="expected FIELD=VALUE; fields: name, model"):
        apply_overrides(TrainConfig(), ["lr"])


@pytest.mark.parametrize(
    "override,says",
    [
        ("lr=-1", "lr must be > 0, got -1.0"),
        ("lr=nan", "lr must be a finite number, got nan"),
        ("lr=inf", "lr must be a finite number"),
        ("min_lr=1", "min_lr must be <= lr"),
        ("workers=-1", "workers must be >= 0, got -1"),
        ("ema_decay=1", r"ema_decay must be in \[0, 1\), got 1.0"),
        ("ema_decay=-0.5", r"ema_decay must be in \[0, 1\)"),
        ("seed=-3", "seed must be >= 0"),
        ("val_items=0", "val_items must be >= 1"),
        ("val_fraction=1", r"val_fraction must be in \[0, 1\)"),
        ("model=m2l-v1-tiyn", r"model must be a model preset .*'m2l-v1-tiyn' \(did you mean m2l-v1-tiny\?\)"),
        ("extensions=1", "extensions is a record that `m2l train --extend` writes"),
        ("phase_weight=-1", "need phase_weight, coherence_weight, level_weight and rollout_weight >= 0"),
        ("coherence_weight=-1", "need phase_weight, coherence_weight"),
        ("rollout_sigma_min=0", "need 0 < rollout_sigma_min <= rollout_sigma_max"),
        ("aux_fade_steps=0", "need aux_fade_start >= 0 and aux_fade_steps >= 1"),
        ("aux_fade_terms=spectral,levle", "aux_fade_terms takes a comma list of spectral, phase"),
        ("model_set=haeds=3", r"model_set item 'haeds=3': unknown field haeds \(did you mean heads\?\)"),
        ("model_set=heads", "model_set item 'heads': expected FIELD=VALUE"),
        ("model_set=name=x", "unknown field name"),
        ("model_set=heads=many", "model_set heads=many: not a valid int"),
        ("model_set=heads=0", r"config m2l-v1-tiny\+heads=0: heads must be"),
    ],
)
def test_override_values_are_checked(override, says):
    with pytest.raises(M2LError, match=says):
        apply_overrides(TRAIN_PRESETS["tiny"](), [override])


def test_a_config_file_with_a_bad_value_is_named_and_the_extensions_record_round_trips(tmp_path):
    path = tmp_path / "config.json"
    data = train_config_to_dict(TRAIN_PRESETS["tiny"]())
    path.write_text(json.dumps({**data, "ema_decay": 1.5}))
    with pytest.raises(M2LError, match=rf"^{path}: training config: ema_decay must be in"):
        load_train_config(str(path))
    path.write_text(json.dumps({**data, "steps": 9000, "extensions": [[1200, 3000], [5000, 6000]]}))
    cfg = load_train_config(str(path))
    assert cfg.extensions == ((1200, 3000), (5000, 6000))
    assert load_train_config(str(path)) == cfg and json.loads(json.dumps(train_config_to_dict(cfg))) == {
        **data,
        "steps": 9000,
        "extensions": [[1200, 3000], [5000, 6000]],
    }
    for bad in ([[5000, 3000]], [[1200, 9000]], [[0, 3000]], "x"):  # past its steps, beyond the run...
        path.write_text(json.dumps({**data, "steps": 9000, "extensions": bad}))
        with pytest.raises(M2LError, match="extensions must be"):
            load_train_config(str(path))


def test_two_step_loss_needs_a_term_to_score_with_and_one_step_decodes():
    with pytest.raises(M2LError, match="rollout_weight scores with the spectral, phase, coherence or level"):
        apply_overrides(TRAIN_PRESETS["tiny"](), ["spectral_weight=0", "rollout_weight=1"])
    with pytest.raises(M2LError, match="need spectral_share = 0"):
        apply_overrides(TRAIN_PRESETS["tiny"](), ["spectral_share=0.5", "phase_weight=1"])


def test_model_set_changes_the_preset_and_names_the_change(tmp_path):
    from m2l.config import config_from_dict, config_to_dict, preset

    cfg = apply_overrides(TRAIN_PRESETS["tiny-v2"](), ["model_set=dim=96, depth=3,channels=8/16/32/32/64/64"])
    model = model_config(cfg)
    assert (model.dim, model.depth, model.channels) == (96, 3, (8, 16, 32, 32, 64, 64))
    assert model.name == "m2l-v2-tiny+dim=96,depth=3,channels=8/16/32/32/64/64"
    assert config_from_dict(config_to_dict(model)) == model  # what a checkpoint records
    assert model_config(TRAIN_PRESETS["tiny-v2"]()) == preset("m2l-v2-tiny")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(train_config_to_dict(cfg)))
    assert model_config(load_train_config(str(path))) == model
    stereo = model_config(TRAIN_PRESETS["small-v2-stereo"]())
    assert stereo == preset("m2l-v2-small-stereo") and stereo.audio_channels == 2
