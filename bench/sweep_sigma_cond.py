"""Held-out reconstruction metrics of trained runs, with a sigma_cond sweep for v2 models.

Every model (a run folder: its latest checkpoint, i.e. the state at the end of its budget; or a
checkpoint file) is scored on the same fixed crops of a validation folder, next to its untrained
twin (same preset, initial weights of seed 0). v2 models are decoded once per sigma_cond value;
v1 models once. EMA weights, one evaluation per chunk (steps=1), seed 0.

    python bench/sweep_sigma_cond.py --val /work/data/music/val --runs RUN_V1 RUN_V2 RUN_ORDERED \
        --out bench/results/sweep.json
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch

from m2l.evaluate.metrics import mel_distance, si_sdr, stft_distance
from m2l.formats import list_checkpoints
from m2l.loading import load_model, make_codec
from m2l.models import create
from m2l.train.data import Source, build_index, validation_crops

SIGMAS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def score(codec: object, crops: torch.Tensor, sigma_cond: float | None) -> dict[str, float]:
    sr = codec.sample_rate
    rec = codec.decode(codec.encode(crops), seed=0, length=crops.shape[-1], sigma_cond=sigma_cond)
    return {
        "si_sdr": float(si_sdr(rec, crops).mean()),
        "mel_distance": float(mel_distance(rec, crops, sr).mean()),
        "stft_distance": float(stft_distance(rec, crops).mean()),
    }


def evaluate(model: torch.nn.Module, name: str, crops: torch.Tensor) -> list[dict]:
    codec = make_codec(model, model_id=name, device="cpu")
    if codec.default_sigma_cond is not None:  # v2: sweep the context noise level
        return [{"model": name, "sigma_cond": s, **score(codec, crops, s)} for s in SIGMAS]
    return [{"model": name, "sigma_cond": None, **score(codec, crops, None)}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--val", type=Path, required=True, help="folder of held-out audio")
    ap.add_argument("--runs", nargs="+", type=Path, required=True)
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=6.0, help="crop length (v2: ~8 chunks)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    index = build_index(
        [Source(args.val, 1.0)], args.out.with_suffix(".index.json"), val_sources=[Source(args.val, 1.0)]
    )
    crops = validation_crops(
        index["val"], items=args.items, seconds=args.seconds, sample_rate=44100, channels=1, seed=123
    )  # [items, 1, samples]
    rows = []
    for run in args.runs:
        ckpt = run if run.is_file() else list_checkpoints(run / "checkpoints")[-1][1]
        model, model_id = load_model(ckpt)
        torch.manual_seed(0)
        untrained = create(model.cfg)
        for tag, m in (("trained", model), ("untrained", untrained)):
            for row in evaluate(m, f"{model.cfg.name}:{tag}", crops):
                row.update(run=str(run), checkpoint=str(ckpt), weights=tag)
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"items": args.items, "seconds": args.seconds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
