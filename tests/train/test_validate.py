"""`m2l.train.validate.Validator`: one-step reconstructions of fixed crops with the EMA weights."""

import math

import pytest
import torch
from m2l_testing import randomize
from train_testing import fast_config, make_trainer

pytestmark = pytest.mark.filterwarnings("ignore:.*unreadable")  # the corrupt clip of audio_dirs


@pytest.fixture(scope="module")
def trainer(audio_dirs, tmp_path_factory):
    t = make_trainer(audio_dirs, tmp_path_factory.mktemp("validate") / "run", fast_config(val_items=2))
    yield t
    t.close()


def test_run_gives_finite_metrics_the_same_each_time_and_saves_examples(trainer):
    first = trainer.validator.run(3)
    assert set(first) == {
        "loss",
        "si_sdr",
        "mel_distance",
        "stft_distance",
        "level_db",
        "mel_distance_2step",
        "level_db_2step",
        "select",
    }  # v1 validates mono crops: no stereo image
    assert all(math.isfinite(value) for value in first.values()), first
    assert first["select"] == first["mel_distance"]  # v1 decodes without re-noised context
    assert trainer.validator.run(3) == first  # fixed crops, noise seeds and decoding seed
    folder = trainer.run_dir / "val" / "step-000000003"
    assert sorted(p.name for p in folder.iterdir()) == [
        "item0-original.png",
        "item0-original.wav",
        "item0-reconstruction.png",
        "item0-reconstruction.wav",
    ]  # val_audio=1 of the 2 items


def test_run_evaluates_the_ema_weights_not_the_live_model(trainer):
    live = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    ema = trainer.ema.state
    try:
        base = trainer.validator.run(1)
        randomize(trainer.model, seed=3)  # the zero-initialised layers of the live model change
        assert any(not torch.equal(v, live[k]) for k, v in trainer.model.state_dict().items())
        assert trainer.validator.run(1) == base
        other = randomize(trainer.build_model(), seed=4)
        trainer.ema.state = {k: v.detach().float().clone() for k, v in other.state_dict().items()}
        model = trainer.validator.ema_model()
        assert not model.training
        assert all(torch.equal(model.state_dict()[k].float(), v) for k, v in trainer.ema.state.items())
        changed = trainer.validator.run(1)
        assert changed["loss"] != base["loss"] and changed["mel_distance"] != base["mel_distance"]
    finally:
        trainer.model.load_state_dict(live)
        trainer.ema.state = ema


def test_fidelity_means_skip_undefined_values_and_see_the_stereo_image():
    from m2l.train.validate import fidelity_means

    ref = torch.randn(2, 2, 4096, generator=torch.Generator().manual_seed(0))
    ref[1, 1] = ref[1, 0]  # item 1 is dual-mono
    rec = ref.clone()
    rec[1, 1] = torch.randn(4096, generator=torch.Generator().manual_seed(1))  # decorrelated
    means = fidelity_means(0.5 * rec, ref, 44100)
    assert means["level_db"] == pytest.approx(-6.02, abs=0.2)
    assert means["lr_correlation_error"] == pytest.approx(0.5, abs=0.03)  # (0 + ~1) / 2
    assert means["balance_error"] < 0.2  # unrelated phases, the same band energies: little moves
    ref[0, 1] = 0.0  # item 0 is hard left ...
    rec[0] = ref[0, 0] / 2  # ... and comes back centred
    assert fidelity_means(rec, ref, 44100)["balance_error"] > 0.2  # (0.5 + small) / 2
    assert set(fidelity_means(ref[:, :1], ref[:, :1], 44100)) == {"level_db"}
