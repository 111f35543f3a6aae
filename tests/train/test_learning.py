"""The trainer really learns: a tiny model trained for a few hundred steps on a few seconds of
signal reconstructs held-out crops far better than its untrained self."""

import pytest
from train_testing import fast_config

from m2l.train.data import parse_source
from m2l.train.loop import Trainer

STEPS = 100


@pytest.mark.filterwarnings("ignore:.*unreadable")
def test_tiny_model_learns_to_reconstruct_held_out_crops(audio_dirs, tmp_path):
    cfg = fast_config(steps=STEPS, lr=2e-3, warmup_steps=10, ema_decay=0.95, val_every=STEPS,
                      val_items=4, val_seconds=1.0, log_every=50)
    t = Trainer(cfg, [parse_source(str(audio_dirs["train"]))], tmp_path / "run",
                val_sources=[parse_source(str(audio_dirs["val"]))], device="cpu", show_progress=False)
    untrained = t.validator.run(0)
    t.train()
    trained = t.validator.run(STEPS)
    # (the consistency loss itself is no progress measure: its 1/delta-sigma weight grows as the
    # delta schedule shrinks; reconstruction distances are)
    assert trained["mel_distance"] < 0.5 * untrained["mel_distance"]
    assert trained["stft_distance"] < 0.6 * untrained["stft_distance"]
