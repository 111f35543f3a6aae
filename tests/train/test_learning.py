"""The trainer really learns: a tiny model trained for 100 steps on a few seconds of signal
reconstructs held-out crops far better than its untrained self."""

import pytest
from train_testing import LEARNING_STEPS, learning_config, make_trainer

from m2l.train.config import apply_overrides


@pytest.fixture(scope="module")
def trained_scores(audio_dirs, tmp_path_factory):
    """Held-out scores of the untrained tiny model and of it trained LEARNING_STEPS steps per recipe."""
    scores = {}
    for recipe in ("published", "fast"):
        cfg = apply_overrides(learning_config(val_every=LEARNING_STEPS), [f"recipe={recipe}"])
        t = make_trainer(audio_dirs, tmp_path_factory.mktemp(recipe), cfg)
        scores["untrained"] = t.validator.run(0)
        t.train()
        scores[recipe] = t.validator.run(LEARNING_STEPS)
    return scores


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*unreadable")
@pytest.mark.parametrize("recipe", ["published", "fast"])
def test_tiny_model_learns_to_reconstruct_held_out_crops(trained_scores, recipe):
    untrained, trained = trained_scores["untrained"], trained_scores[recipe]
    # (the consistency loss itself is no progress measure: its weight depends on the teacher gap,
    # which the schedules change; reconstruction distances are)
    assert trained["mel_distance"] < 0.5 * untrained["mel_distance"]
    assert trained["stft_distance"] < 0.6 * untrained["stft_distance"]


@pytest.mark.filterwarnings("ignore:.*unreadable")
def test_fast_recipe_reconstructs_better_than_the_published_one_at_equal_steps(trained_scores):
    fast, published = trained_scores["fast"], trained_scores["published"]
    assert fast["stft_distance"] < 0.9 * published["stft_distance"], (fast, published)
    assert fast["mel_distance"] < published["mel_distance"], (fast, published)
