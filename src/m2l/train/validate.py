"""Periodic validation with the EMA weights on a fixed set of held-out crops."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from m2l.audio.io import save_audio
from m2l.evaluate.fidelity import fidelity_scores
from m2l.evaluate.images import spectrogram_peak, spectrogram_png
from m2l.evaluate.metrics import mel_distance, si_sdr, stft_distance
from m2l.loading import make_codec
from m2l.train.config import TrainConfig
from m2l.train.objective import ConsistencyObjective, sample_seeds
from m2l.train.state import EMA


class OnDevice(Protocol):
    """Where training runs (`m2l.train.loop.DistributedContext` is one)."""

    device: torch.device


class Training(Protocol):
    """What validation reads of the running trainer (`m2l.train.loop.Trainer` is one), named
    here so that this module does not import the loop, which imports it."""

    cfg: TrainConfig
    ema: EMA
    dist: OnDevice
    autocast: torch.dtype | None
    run_dir: Path

    def build_model(self) -> torch.nn.Module:
        """A fresh model of the run's preset on the run's device."""

    def crop_samples(self) -> int:
        """Samples of one training crop."""


def fidelity_means(rec: torch.Tensor, ref: torch.Tensor, sample_rate: int) -> dict[str, float]:
    """Mean level difference (dB) of reconstructions [items, channels, samples], and for stereo
    items their mean L/R correlation and balance errors (`m2l.evaluate.fidelity`; NaN where
    undefined)."""
    scores = [fidelity_scores(r, o, sample_rate) for r, o in zip(rec, ref, strict=True)]
    means = {}
    stereo = ("level_db", "lr_correlation_error", "balance_error")
    for key in stereo if ref.shape[1] == 2 else ("level_db",):
        values = [s[key] for s in scores if s[key] is not None]
        means[key] = sum(values) / len(values) if values else float("nan")
    return means


class Validator:
    """Consistency loss, SI-SDR, mel and STFT distances and level (stereo: L/R correlation
    error) of one-step reconstructions, mel distance and level at two steps; `select`
    is the distance the best checkpoint is chosen by (for a codec that re-noises its decoding
    context, v2: the mel distance at sigma_cond 0).

    Args:
        trainer: the running trainer (model builder, EMA, config, run folder): a `Training`.
        crops: [items, channels, samples] fixed validation audio.
    """

    def __init__(self, trainer: Training, crops: torch.Tensor) -> None:
        self.trainer = trainer
        self.crops = crops
        self.seeds = sample_seeds(trainer.cfg.seed + 7, 0, 0, crops.shape[0])

    def ema_model(self) -> torch.nn.Module:
        model = self.trainer.build_model()
        model.load_state_dict(self.trainer.ema.state)
        return model.eval()

    @torch.no_grad()
    def run(self, step: int) -> dict[str, float]:
        """Evaluate the current EMA weights; saves a few reconstructions under val/step-N/."""
        cfg, model = self.trainer.cfg, self.ema_model()
        sr = model.cfg.spectral.sample_rate
        device = self.trainer.dist.device
        objective = ConsistencyObjective(model, cfg, self.trainer.autocast)
        crops = self.crops[..., : self.trainer.crop_samples()].to(device)
        loss = float(objective(crops, self.seeds, cfg.steps).mean())
        codec = make_codec(model, model_id=f"{model.cfg.name}@step{step}", device=device)
        ref = self.crops
        z = codec.encode(ref.to(device))
        rec = codec.decode(z, seed=0, length=ref.shape[-1]).cpu()
        metrics = {
            "loss": loss,
            "si_sdr": float(si_sdr(rec, ref).mean()),
            "mel_distance": float(mel_distance(rec, ref, sr).mean()),
            "stft_distance": float(stft_distance(rec, ref).mean()),
        }
        metrics.update(fidelity_means(rec, ref, sr))
        two = codec.decode(z, seed=0, length=ref.shape[-1], steps=2).cpu()  # must not be worse
        metrics["mel_distance_2step"] = float(mel_distance(two, ref, sr).mean())
        metrics["level_db_2step"] = fidelity_means(two, ref, sr)["level_db"]
        metrics["select"] = metrics["mel_distance"]
        if codec.default_sigma_cond is not None:  # also without re-noised context (see below)
            plain = codec.decode(z, seed=0, length=ref.shape[-1], sigma_cond=0.0).cpu()
            metrics["mel_distance_cond0"] = float(mel_distance(plain, ref, sr).mean())
            # at sigma_cond 0.4 an untrained model's output is re-noised context, noise near the
            # signal's level that log-mel distances flatter: the best checkpoint is chosen at 0
            metrics["select"] = metrics["mel_distance_cond0"]
        folder = self.trainer.run_dir / "val" / f"step-{step:09d}"
        for i in range(min(cfg.val_audio, ref.shape[0])):
            peak = spectrogram_peak(ref[i])  # one dB scale for the original and its reconstruction
            for tag, audio in (("original", ref[i]), ("reconstruction", rec[i])):
                save_audio(folder / f"item{i}-{tag}.wav", audio, sr, force=True)
                png = folder / f"item{i}-{tag}.png"
                spectrogram_png(audio, png, sample_rate=sr, reference_peak=peak, axes=True)
        return metrics
