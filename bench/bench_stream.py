"""Streaming decode: how soon playback can start, and whether it stays ahead of real time.

For each model, 60 s of stereo music-like noise (or a file) is encoded once, then decoded with
`codec.decode_stream` (the pieces a player would queue) in the same process, and timed:

- first audio: seconds from the call to the first piece (what a listener waits);
- real-time factor: audio seconds per wall second over the whole decode (> 1: faster than
  real time);
- underruns: pieces that arrive after a player started at the first piece would have reached
  them, and the smallest slack (seconds of audio still queued when a piece arrives; negative:
  an underrun). "Keeps ahead of real time" means no underrun.

    OMP_NUM_THREADS=2 python bench/bench_stream.py --model default --model preset:m2l-v2-small-stereo \
        --seconds 60 [--steps 1] [--audio FILE] [--out bench/results/stream_cpu.json]

`preset:NAME` times the untrained preset (decoding costs the same whatever the weights are).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def load_codec(model: str):  # noqa: ANN201 (bench script)
    import m2l

    if model.startswith("preset:"):
        from m2l.config import preset
        from m2l.loading import make_codec, untrained

        name = model.removeprefix("preset:")
        return make_codec(untrained(preset(name)), model_id=f"{name}@untrained", device="cpu")
    return m2l.load(model, device="cpu")


def test_audio(seconds: float, rate: int, path: str | None) -> torch.Tensor:
    """[2, samples]: the file (its first `seconds`), or two decorrelated noise channels."""
    if path:
        import m2l

        wave = m2l.load().load_audio(path)[..., : int(seconds * rate)]
        return wave if wave.shape[0] == 2 else wave.expand(2, -1)
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.standard_normal((2, int(seconds * rate))).astype(np.float32) * 0.1)


def time_stream(codec, z: torch.Tensor, steps: int, rate: int) -> dict:  # noqa: ANN001
    """Arrival time and length of every piece of one streamed decode."""
    arrivals, lengths = [], []
    start = time.perf_counter()
    for piece in codec.decode_stream(z, steps=steps, seed=0):
        arrivals.append(time.perf_counter() - start)
        lengths.append(piece.shape[-1])
    total = time.perf_counter() - start
    queued_before = np.concatenate([[0], np.cumsum(lengths)[:-1]]) / rate  # audio before each piece
    slack = arrivals[0] + queued_before - np.array(arrivals)  # where playback is when it arrives
    return {
        "first_audio_s": round(arrivals[0], 3),
        "decode_s": round(total, 3),
        "audio_s": round(sum(lengths) / rate, 3),
        "realtime_factor": round(sum(lengths) / rate / total, 2),
        "pieces": len(lengths),
        "underruns": int((slack < 0).sum()),
        "min_slack_s": round(float(slack[1:].min()), 3) if len(slack) > 1 else None,  # the first: 0
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--audio", help="a music file to stream instead of noise")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = []
    for model in args.model:
        codec = load_codec(model)
        rate = codec.sample_rate
        z = codec.encode(test_audio(args.seconds, rate, args.audio))
        codec.decode(z[..., :2] if codec.version == "v1" else z[:, :1], seed=0)  # warm-up
        row = {"model": model, "model_id": codec.model_id, "steps": args.steps}
        row["threads"] = torch.get_num_threads()
        row.update(time_stream(codec, z, args.steps, rate))
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"seconds": args.seconds, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
