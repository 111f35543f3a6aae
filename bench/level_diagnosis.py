"""Where a model's one-step decode loses level: in the network's output spectrogram or in the
inverse STFT, in which frequency bands, and in which bins (loud or quiet).

For the first N test-split tracks, a centred crop of 256 STFT frames (mono mix) is noised to
sigma_max and decoded in one step; printed per track and as means:
- spec: energy of the network's output spectrogram (decompressed magnitudes) vs the input's, dB;
- wave: energy of the decoded waveform vs the input waveform, dB;
- bands: the decoded waveform's energy per band (Hz edges below) vs the input's, dB;
- logmean / logweighted: per-bin log-power error (STFT 2048 / 512), plain mean and weighted
  by the input's power (so the loud bins count most), dB.

    python bench/level_diagnosis.py --data DATA/music/test/manifest.jsonl [--model default] [--tracks 8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import m2l
from m2l.audio.spectral import num_samples

BANDS_HZ = (0, 100, 300, 1000, 3000, 8000, 22050)


def db(a: float, b: float) -> float:
    return 10 * float(np.log10(a / b))


def spectrogram_energy(spec: torch.Tensor, alpha: float, beta: float) -> float:
    """Energy of a compressed spectrogram [N, 2, F, T] once its magnitudes are decompressed."""
    mag = spec.square().sum(1).sqrt()
    return float(((mag / beta) ** (1 / alpha)).square().sum())


def power(x: torch.Tensor) -> torch.Tensor:
    return torch.stft(x, 2048, 512, window=torch.hann_window(2048), return_complex=True).abs().square()


def diagnose(model: torch.nn.Module, audio: torch.Tensor, rate: int) -> list[float]:
    """[spec, wave, bands..., logmean, logweighted] of one mono crop [1, 1, samples]."""
    cc, spc = model.cfg.consistency, model.cfg.spectral
    with torch.no_grad():
        x0 = model.prepare(audio)
        sigma = torch.full((1,), cc.sigma_max)
        torch.manual_seed(0)
        y = model.denoise(model.add_noise(x0, torch.randn_like(x0), sigma), sigma, model.conditioning(x0))
        wx, wy = model.to_waveform(x0).flatten(), model.to_waveform(y).flatten()
    row = [
        db(spectrogram_energy(y, spc.alpha, spc.beta), spectrogram_energy(x0, spc.alpha, spc.beta)),
        db(float(wy.square().sum()), float(wx.square().sum())),
    ]
    fx, fy = (np.abs(np.fft.rfft(w.numpy())) ** 2 for w in (wx, wy))
    freqs = np.fft.rfftfreq(len(wx), 1 / rate)
    for lo, hi in zip(BANDS_HZ, BANDS_HZ[1:], strict=False):
        band = (freqs >= lo) & (freqs < hi)
        row.append(db(fy[band].sum(), fx[band].sum()))
    px, py = power(wx), power(wy)
    keep = px > px.max() * 1e-6
    err = 10 * (py[keep].log10() - px[keep].log10())
    row += [float(err.mean()), float((err * px[keep]).sum() / px[keep].sum())]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a test-split manifest.jsonl")
    ap.add_argument("--model", default="default")
    ap.add_argument("--tracks", type=int, default=8)
    args = ap.parse_args()
    model = m2l.load(args.model).model.float().eval()
    frames = num_samples(256, model.cfg.spectral)
    items = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()][: args.tracks]
    head = ["spec", "wave"] + [f"{lo}-{hi}Hz" for lo, hi in zip(BANDS_HZ, BANDS_HZ[1:], strict=False)]
    head += ["logmean", "logweighted"]
    print("track".ljust(28), " ".join(h.rjust(11) for h in head))
    rows = []
    for item in items:
        path = args.data.parent.parent.parent / item["path"]
        info = sf.info(path)
        wave, rate = sf.read(
            path, start=max(0, info.frames // 2 - frames // 2), frames=frames, dtype="float32"
        )
        audio = torch.from_numpy(np.atleast_2d(wave.T).mean(0))[None, None]
        rows.append(diagnose(model, audio, rate))
        print(Path(item["path"]).stem[:28].ljust(28), " ".join(f"{v:11.2f}" for v in rows[-1]))
    print("mean".ljust(28), " ".join(f"{v:11.2f}" for v in np.mean(rows, 0)))


if __name__ == "__main__":
    main()
