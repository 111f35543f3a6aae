"""Music2Latent2 learns through the same trainer: a tiny v2 model trained for 100 steps reconstructs
held-out crops far better than its untrained self. (A file of its own: the test suite runs
files in parallel, and this test is about as long as the v1 learning tests together.)"""

import pytest
from train_testing import LEARNING_STEPS, learning_config, make_trainer


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*unreadable")
def test_tiny_v2_learns_to_reconstruct_held_out_crops(audio_dirs, tmp_path):
    """Music2Latent2 through the same trainer (pairs of chunks, one sigma per chunk). Measured with
    sigma_cond = 0: with the default 0.4 the untrained model's output is the re-noised previous
    chunk, noise at about the signal's level, which flatters it on log-mel distances."""
    from m2l.evaluate.metrics import mel_distance, stft_distance
    from m2l.loading import make_codec

    cfg = learning_config(model="m2l-v2-tiny", crop_frames=128, val_every=10 * LEARNING_STEPS)
    t = make_trainer(audio_dirs, tmp_path / "run", cfg)
    crops = t.validator.crops

    def scores() -> tuple[float, float]:
        codec = make_codec(t.validator.ema_model(), model_id="v2", device="cpu")
        rec = codec.decode(codec.encode(crops), seed=0, length=crops.shape[-1], sigma_cond=0.0)
        return float(mel_distance(rec, crops, 44100).mean()), float(stft_distance(rec, crops).mean())

    untrained = scores()
    t.train()
    trained = scores()
    assert trained[0] < 0.5 * untrained[0]
    # STFT distance: 0.64x the untrained model's with 2 torch threads on one 2-core AMD VM (the
    # result depends on the thread count and CPU), below 0.6x elsewhere; 0.75x still asks for a
    # clear improvement.
    assert trained[1] < 0.75 * untrained[1], (trained, untrained)
