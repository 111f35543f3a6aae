"""How hard each auxiliary training term pulls: the gradient norm, over the model's parameters, of
each weighted term on one batch of one-step decodes (from sigma_max) of a model.

Choosing a term's weight by its loss value says little (the terms have different scales and
slopes); equal gradient norms say the terms pull about equally. Crops: the mono mix of one 34,304-
sample crop (at 40 % of the file) of every 16th train file, the first `--crops`.

    python bench/aux_grad_norms.py --data DATA [--model default] [--crops 4] \
        [--weights spectral=8,level=16,coherence=1,phase=4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

import m2l
from m2l.train.objective import LOSSES


def crops(train: Path, count: int, samples: int, rate: int) -> torch.Tensor:
    """[count, 1, samples] mono crops of every 16th file of the train split."""
    files = sorted(p for p in train.rglob("*") if p.suffix.lower() in (".ogg", ".flac", ".wav"))
    out = []
    for path in files[::16][:count]:
        info = sf.info(path)
        need = int(samples * info.samplerate / rate) + 1
        x, fs = sf.read(path, start=int(info.frames * 0.4), frames=need, dtype="float32", always_2d=True)
        x = x.mean(1)
        out.append(
            torch.from_numpy(np.ascontiguousarray(soxr.resample(x, fs, rate) if fs != rate else x)[:samples])
        )
    return torch.stack(out)[:, None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--crops", type=int, default=4)
    ap.add_argument("--weights", default="spectral=8,level=16,coherence=1,phase=4")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = m2l.load(args.model).model.float().train().requires_grad_(True)
    audio = crops(args.data / "music" / "train", args.crops, 34304, model.cfg.spectral.sample_rate)
    x0 = model.prepare(audio)
    sigma = torch.full((x0.shape[0], model.sigma_groups), model.cfg.consistency.sigma_max)
    decoded = model.denoise(model.add_noise(x0, torch.randn_like(x0), sigma), sigma, model.conditioning(x0))
    wave, ref = (model.to_waveform(t.float()).flatten(0, -2) for t in (decoded, x0))
    params = list(model.parameters())
    for item in args.weights.split(","):
        name, _, weight = item.partition("=")
        loss = float(weight) * LOSSES[name](wave, ref).mean()
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        norm = float(torch.sqrt(sum(g.square().sum() for g in grads if g is not None)))
        value = float(loss.detach())
        print(f"{name:10s} weight {float(weight):6g}  loss {value:8.4f}  gradient norm {norm:8.3f}")


if __name__ == "__main__":
    main()
