"""Corpus benchmark: encoding a folder of mixed audio with m2l vs a loop over the authors' package.

One run makes a corpus (FILES files of 2-60 s, rates 22.05/32/44.1/48 kHz, mono and stereo,
WAV and FLAC; seeded), then times each case in a fresh child process on identical random weights
of the released-size v1 network, saved in the authors' checkpoint format:

- authors: for each file, soundfile read + soxr resample to 44.1 kHz (their package does not
  resample) + `EncoderDecoder.encode` + `np.save` of the latents;
- m2l-one-at-a-time: for each file, `codec.encode_file(path)` + `save_latents` (m2l's API, one
  file after the other, reading in the same process);
- m2l-corpus: `m2l encode CORPUS -o OUT` (passes of several files in shared batches, outputs
  written as they finish, inputs read ahead in a worker process where the default gives one: on
  a GPU, not on a CPU whose cores all run torch's threads); also with `--precision bf16`, and
  with `--workers 0` / `--workers 1` (m2l-corpus-w0 / -w1);
  The m2l-corpus cases also report `phases_s`: seconds spent loading the model, waiting for the
  next input, in encoder batches, writing outputs (in the writer thread, beside the rest) and
  waiting for writes to finish (the rest is the command's own work);
- network: the encoder alone on the same audio already decoded and resampled in memory
  (`m2l.packing.encode_many` with no reading or writing): the throughput I/O could at best hide
  behind.

A case name ending in `+retain` runs with `m2l.runtime.retain_freed_memory()` on (glibc keeps
freed memory for reuse; opt-in, no m2l command uses it), e.g. `--cases authors+retain m2l-corpus+retain`.

A smaller network shows what reading, writing and the command's own work cost when the network
is fast (a CPU's stand-in for a GPU): `--m2l-preset m2l-v1-tiny` runs the m2l cases on a seeded
untrained model of that preset (the authors' cases need their architecture, so they are refused).

    python bench/bench_corpus.py --files 200 --out bench/out/corpus.json
    python bench/bench_corpus.py --files 200 --m2l-preset m2l-v1-tiny --cases network m2l-corpus \
        --out bench/out/corpus200/corpus_tiny.json
    python bench/bench_corpus.py --window-batches --out bench/out/window_batches.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from bench_codec import make_checkpoint, matmul_rate
from child import RETAIN, apply_retain, cpu_model, peak_rss_mb, report, run_child

RATES = (22050, 32000, 44100, 48000)
RELEASED = "the released-size v1 (random weights)"
CASES = ("authors", "m2l-one-at-a-time", "m2l-corpus", "m2l-corpus-bf16", "network")
EXTRA_CASES = ("authors-bf16", "m2l-cli-start", "m2l-corpus-w0", "m2l-corpus-w1")
"""authors-bf16: their loop under torch.autocast (bf16), for GPUs. m2l-cli-start: `m2l encode` of
the corpus's first file alone, what the m2l-corpus case's clock holds besides the corpus (imports,
device start-up, loading the model)."""


def make_corpus(folder: Path, files: int, seed: int = 0) -> float:
    """Write `files` music-like clips (harmonic notes + a little noise); returns their seconds."""
    rng = np.random.default_rng(seed)
    total = 0.0
    for i in range(files):
        seconds, rate, channels = rng.uniform(2, 60), RATES[i % 4], 1 + (i // 4) % 2
        t = np.arange(int(seconds * rate)) / rate
        notes = 110 * 2 ** (rng.integers(0, 36, size=8) / 12)
        wave = sum(0.1 / k * np.sin(2 * np.pi * f * k * t) for f in notes[:4] for k in (1, 2, 3))
        wave = wave * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
        data = np.stack([wave + 0.01 * rng.standard_normal(t.size) for _ in range(channels)], axis=1)
        path = folder / f"d{i % 7}" / f"clip{i:03d}.{'flac' if i % 3 == 0 else 'wav'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.5 * data / np.abs(data).max()).astype(np.float32), rate)
        total += t.size / rate
    return total


def make_m2l_checkpoint(path: Path, name: str) -> None:
    """An untrained m2l model of preset `name` (seeded), saved as an m2l checkpoint."""
    from m2l.config import preset
    from m2l.formats import save_checkpoint
    from m2l.models import create

    torch.manual_seed(0)
    model = create(preset(name))
    save_checkpoint(path, model.state_dict(), model.cfg)


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".wav", ".flac"))


def time_cli_phases() -> dict[str, float]:
    """Patch the corpus encoder's steps to add up their seconds into the returned dict: loading
    the model (`load`), waiting for the read-ahead's next input (`wait_input`), the encoder batches
    (`network`: `run_batch`, which hands its outputs to the CPU, so a GPU's work is inside),
    writing outputs (`write`, in the writer thread while the rest goes on) and waiting for the
    writes (`wait_write`). Where a GPU corpus run's time goes, next to the network-alone case."""
    import m2l.cli.codec as codec_cli
    import m2l.cli.jobs as jobs
    import m2l.formats as formats
    import m2l.packing as packing

    spent = {"load": 0.0, "wait_input": 0.0, "network": 0.0, "write": 0.0, "wait_write": 0.0}

    def timing(name, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t

        return timed

    def waiting(name, source):
        while True:
            t = time.perf_counter()
            item = next(source, None)
            spent[name] += time.perf_counter() - t
            if item is None:
                return
            yield item

    def read_ahead(*args, **kwargs):
        return waiting("wait_input", jobs_read_ahead(*args, **kwargs))

    class TimedWrites(codec_cli.WriteBehind):
        def submit(self, key, write):
            return waiting("wait_write", super().submit(key, write))

        def drain(self):
            return waiting("wait_write", super().drain())

    jobs_read_ahead = jobs.read_ahead
    codec_cli.WriteBehind = TimedWrites
    jobs.read_ahead = read_ahead
    jobs.load_codec = timing("load", jobs.load_codec)
    packing.run_batch = timing("network", packing.run_batch)
    formats.save_latents = timing("write", formats.save_latents)
    return spent


def child(case: str, corpus: str, ckpt: str, out: str, device: str) -> dict:
    """Runs in a subprocess: one case over the whole corpus, timed."""
    import contextlib
    import warnings

    warnings.simplefilter("ignore")
    case = apply_retain(case)
    files, out_dir = audio_files(Path(corpus)), Path(out)
    start = time.perf_counter()
    if case.startswith("authors"):
        import music2latent.inference as inf
        import soxr

        inf.download_model = lambda: None
        ed = inf.EncoderDecoder(ckpt, device=device)
        half = case.endswith("bf16")
        autocast = torch.autocast(device.split(":")[0], torch.bfloat16) if half else contextlib.nullcontext()
        start = time.perf_counter()
        for path in files:
            audio, rate = sf.read(path, dtype="float32", always_2d=True)
            if rate != 44100:
                audio = soxr.resample(audio, rate, 44100)
            audio = np.ascontiguousarray(audio.T)  # [channels, samples]: what their encode takes
            with autocast:
                z = ed.encode(audio[0] if audio.shape[0] == 1 else audio)
            target = out_dir / path.relative_to(corpus).with_suffix(".npy")
            target.parent.mkdir(parents=True, exist_ok=True)
            np.save(target, np.asarray(z.float().cpu() if hasattr(z, "cpu") else z))
    elif case == "m2l-one-at-a-time":
        import m2l
        from m2l.formats import save_latents

        codec = m2l.load(ckpt, device=device)
        start = time.perf_counter()
        for path in files:
            target = out_dir / path.relative_to(corpus).with_suffix(".m2l")
            target.parent.mkdir(parents=True, exist_ok=True)
            save_latents(target, codec.encode_file(path))
    elif case.startswith("m2l-corpus") or case == "m2l-cli-start":
        from m2l.cli import main

        extra = ["--precision", "bf16"] if case.endswith("bf16") else []
        extra += ["--workers", case[-1]] if case[-3:] in ("-w0", "-w1") else []
        source = str(files[0]) if case == "m2l-cli-start" else corpus
        target = out
        if case == "m2l-cli-start":
            Path(out).mkdir(parents=True, exist_ok=True)
            target = str(Path(out) / "first.m2l")
        phases = time_cli_phases() if case.startswith("m2l-corpus") else None
        code = main(["encode", source, "-o", target, "--model", ckpt, "--device", device, "--quiet", *extra])
        assert code == 0
        if phases is not None:
            wall = time.perf_counter() - start
            return {"wall_s": wall, "peak_rss_mb": peak_rss_mb(), "phases_s": phases}
    else:  # network
        import m2l
        from m2l.audio.io import load_audio, resample
        from m2l.packing import encode_many

        codec = m2l.load(ckpt, device=device)
        clips = []
        for path in files:
            wave, rate = load_audio(path)
            clips.append((path, resample(wave, rate, codec.sample_rate), rate))
        start = time.perf_counter()
        assert len(list(encode_many(codec, iter(clips)))) == len(files)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return {"wall_s": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def resumed(path: Path, fresh: dict) -> dict:
    """The results of an interrupted run at `path` when it measured the same corpus on the same
    device and torch (else `fresh`): its finished cases are kept."""
    if not path.exists():
        return fresh
    old = json.loads(path.read_text())
    same = ("torch", "threads", "device", "files", "audio_s", "network")
    old.setdefault("network", RELEASED)  # runs before --m2l-preset existed

    def differs(key: str) -> bool:  # audio_s: summed in another order when the corpus was made
        a, b = old.get(key), fresh[key]
        return not math.isclose(a, b, rel_tol=1e-9) if isinstance(b, float) and a is not None else a != b

    if any(differs(k) for k in same):
        recorded = {k: old.get(k) for k in same}
        sys.exit(f"{path}: another corpus, device or torch ({recorded}); not resuming it")
    old["cases"] = [c for c in old.get("cases", []) if "wall_s" in c]
    return old


def compare_outputs(work: Path) -> dict:
    """How far the corpus encoder's latents are from one-file-at-a-time (max abs difference)
    and bf16 autocast's from fp32 (relative L2 per file, mean and max)."""
    from m2l.formats import load_latents

    def latents(case: str) -> dict[str, torch.Tensor]:
        out = work / f"out-{case}"
        return {p.relative_to(out).as_posix(): load_latents(p).latents for p in sorted(out.rglob("*.m2l"))}

    alone, packed, half = (latents(c) for c in ("m2l-one-at-a-time", "m2l-corpus", "m2l-corpus-bf16"))
    result: dict = {}
    if alone and packed.keys() == alone.keys():
        result["corpus_vs_one_at_a_time_max_abs"] = max(
            (packed[k] - alone[k]).abs().max().item() for k in alone
        )
    if half and packed.keys() == half.keys():
        rel = [((half[k] - packed[k]).norm() / packed[k].norm()).item() for k in packed]
        result["bf16_vs_fp32_relative_l2"] = {"mean": sum(rel) / len(rel), "max": max(rel)}
    return result


def window_batches(ckpt: str, repeats: int = 2) -> dict:
    """Seconds for 4 full windows of the released-size encoder as one batch of 4, two of 2 and
    four of 1 (same inputs, best of `repeats`): is packing several windows worth it here?"""
    import m2l
    from m2l.audio.spectral import to_spectrogram

    codec = m2l.load(ckpt, device="cpu")
    spc = codec.cfg.spectral
    x = torch.randn(4, codec.pass_units * codec.samples_per_unit + spc.n_fft - spc.hop_length) * 0.1
    with torch.inference_mode():
        spec = to_spectrogram(x, spc)
        codec.encoder_pass(spec[:1])  # warm up
        best: dict[str, float] = {}
        for _ in range(repeats):
            for size in (4, 2, 1):
                start = time.perf_counter()
                for i in range(0, 4, size):
                    codec.encoder_pass(spec[i : i + size])
                wall = time.perf_counter() - start
                best[f"batches of {size}"] = min(best.get(f"batches of {size}", wall), wall)
    return {"threads": torch.get_num_threads(), "seconds_for_4_windows": best}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=200)
    names = [c + r for c in CASES + EXTRA_CASES for r in ("", RETAIN)]
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=names)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--make-only", action="store_true", help="only write the corpus (and checkpoint)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/corpus.json"))
    ap.add_argument("--window-batches", action="store_true", help="only time window batches of 4, 2, 1")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="keep the finished cases of an interrupted run in --out (same corpus and device) and run the "
        "others: a run longer than one sitting (each case records its CPU and the sgemm rate it started at)",
    )
    ap.add_argument(
        "--m2l-preset", help="the m2l cases on an untrained model of this preset (no authors cases)"
    )
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    if args.window_batches:
        ckpt = args.out.parent / "random_authors.pt"
        if not ckpt.exists():
            args.out.parent.mkdir(parents=True, exist_ok=True)
            make_checkpoint(ckpt)
        report(window_batches(str(ckpt)), args.out)
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    work = args.out.parent / "corpus_work"
    ckpt = args.out.parent / "random_authors.pt"
    if args.m2l_preset:
        if any(case.startswith("authors") for case in args.cases):
            ap.error("--m2l-preset runs m2l's cases only (the authors' package has one architecture)")
        ckpt = args.out.parent / f"random_{args.m2l_preset}.safetensors"
        if not ckpt.exists():
            make_m2l_checkpoint(ckpt, args.m2l_preset)
    elif not ckpt.exists():
        make_checkpoint(ckpt)
    corpus = work / f"corpus-{args.files}"
    outputs = work / f"outputs-{args.m2l_preset}" if args.m2l_preset else work
    if not corpus.exists():
        seconds = make_corpus(corpus, args.files)
    else:
        seconds = sum(sf.info(p).duration for p in audio_files(corpus))
    if args.make_only:
        print(f"{corpus}: {args.files} files, {seconds / 60:.1f} min of audio")
        return
    results = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
        "files": args.files,
        "audio_s": seconds,
        "network": args.m2l_preset or RELEASED,
        "cases": [],
    }
    if args.resume:
        results = resumed(args.out, results)
    done = {c["case"] for c in results["cases"] if "wall_s" in c}
    print(f"{args.files} files, {seconds / 60:.1f} min of audio", file=sys.stderr, flush=True)
    for case in args.cases:
        if case in done:
            print(f"{case}: kept from the interrupted run", file=sys.stderr, flush=True)
            continue
        out = outputs / f"out-{case}"
        if out.exists():
            for p in sorted(out.rglob("*"), reverse=True):
                p.rmdir() if p.is_dir() else p.unlink()
        sgemm = matmul_rate() / 1e9 if args.device == "cpu" else None  # the machine's speed now
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        r = run_child(__file__, case, corpus, ckpt, out, args.device)
        r["case"], r["sgemm_gflops_before"], r["started"], r["cpu"] = case, sgemm, started, cpu_model()
        if "wall_s" in r:
            r["audio_s_per_s"] = seconds / r["wall_s"]
        results["cases"].append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")  # kept if a later case is stopped
    walls = {c["case"]: c.get("wall_s") for c in results["cases"]}
    if walls.get("m2l-corpus"):
        results["ratios"] = {
            f"m2l-corpus vs {k}": v / walls["m2l-corpus"] for k, v in walls.items() if v and k != "m2l-corpus"
        }
    results["latents"] = compare_outputs(outputs)
    report(results, args.out)


if __name__ == "__main__":
    main()
