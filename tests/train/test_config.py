import json

import pytest

from m2l.errors import M2LError
from m2l.train.config import (
    TRAIN_PRESETS,
    TrainConfig,
    apply_overrides,
    load_train_config,
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
    assert (v2.model, v2.crop_frames, v2.steps, v2.lr, v2.min_lr) == ("m2l2", 128, 1_000_000, 1e-4, 1e-6)


def test_overrides_parse_with_the_field_type():
    cfg = apply_overrides(
        TrainConfig(), ["lr=3e-4", "batch_size=32", "compile=true", "steps=1e3", "precision=bf16"]
    )
    assert (cfg.lr, cfg.batch_size, cfg.compile, cfg.steps, cfg.precision) == (3e-4, 32, True, 1000, "bf16")
    for bad in ["nope=1", "lr", "batch_size=many", "compile=maybe", "precision=fp8"]:
        with pytest.raises(M2LError):
            apply_overrides(TrainConfig(), [bad])


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
