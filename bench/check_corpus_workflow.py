"""End-to-end check of the corpus workflow on a folder of real music (issue: latents at scale).

    python bench/check_corpus_workflow.py DATA/music/test --files 6 --work /tmp/corpus-check

Takes the FILES shortest audio files of MUSIC_DIR (linked into WORK/in), then with the default
model and one thread per process: (1) `m2l encode --pack` in one process; (2) a second encode
killed (SIGKILL) once its first output exists, resumed with `--skip-existing`; (3) `torchrun`
with 2 ranks; (4) `m2l stats` and `LatentCropDataset` crops normalised with them; (5) the same
files listed in a manifest (WORK/in/list.jsonl, with a licence column) encoded with `--pack`:
the same latents, and each index row carries its manifest row. Prints one line per step and exits
non-zero when an output differs or a step fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf
import torch

M2L = [sys.executable, "-m", "m2l"]


def latents(folder: Path) -> dict[str, torch.Tensor]:
    from m2l.formats import load_latents

    return {p.relative_to(folder).as_posix(): load_latents(p).latents for p in sorted(folder.rglob("*.m2l"))}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
"""Every run with one thread, as torchrun gives each rank: oneDNN's float sums depend on the
thread count, so outputs are bitwise comparable only at equal thread counts."""


def run(*args: object) -> None:
    started = time.perf_counter()
    subprocess.run([str(a) for a in args], check=True, env=ENV)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def check_manifest(w: Path, chosen: list[Path], one: dict[str, torch.Tensor]) -> bool:
    """Step 5: encode the files as listed in a manifest; True when latents and index rows match."""
    from m2l.latents.index import read_index

    print("5. the same files from a manifest, encode + pack", flush=True)
    rows = [{"path": p.name, "licence": "GPL-2+"} for p in chosen]
    listing = w / "in" / "list.jsonl"
    listing.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    run(*M2L, "encode", listing, "-o", w / "listed", "--pack", w / "dataset-listed", "--quiet")
    same_latents = same(one, latents(w / "listed"))
    entries = read_index(w / "dataset-listed")
    with_rows = all(e.manifest is not None and e.manifest["licence"] == "GPL-2+" for e in entries)
    print(f"  latents identical to the folder's: {same_latents}; index rows with manifest rows: {with_rows}")
    return same_latents and with_rows and len(entries) == len(chosen)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("music_dir", type=Path)
    ap.add_argument("--files", type=int, default=6)
    ap.add_argument("--work", type=Path, default=Path("/tmp/corpus-check"))
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    found = [p for p in args.music_dir.rglob("*") if p.suffix.lower() in (".ogg", ".flac", ".wav", ".mp3")]
    chosen = sorted(found, key=lambda p: sf.info(p).duration)[: args.files]
    (args.work / "in").mkdir(parents=True)
    for p in chosen:
        (args.work / "in" / p.name).symlink_to(p.resolve())
    minutes = sum(sf.info(p).duration for p in chosen) / 60
    print(f"{len(chosen)} files, {minutes:.1f} min of real music", flush=True)
    w = args.work
    print("1. encode + pack, one process", flush=True)
    run(*M2L, "encode", w / "in", "-o", w / "one", "--pack", w / "dataset")
    one = latents(w / "one")

    print("2. encode killed after its first output, then resumed with --skip-existing", flush=True)
    proc = subprocess.Popen([*M2L, "encode", str(w / "in"), "-o", str(w / "killed"), "--quiet"], env=ENV)
    while proc.poll() is None and not any((w / "killed").rglob("*.m2l")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    print(f"  killed with {len(list((w / 'killed').rglob('*.m2l')))} of {len(chosen)} files written")
    run(*M2L, "encode", w / "in", "-o", w / "killed", "--skip-existing")
    resumed_ok = same(one, latents(w / "killed"))
    print(f"  resumed outputs identical to one process: {resumed_ok}")

    print("3. torchrun, 2 ranks", flush=True)
    env_run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    run(*env_run, "-m", "m2l", "encode", w / "in", "-o", w / "two")
    ranks_ok = same(one, latents(w / "two"))
    print(f"  2-rank outputs identical to one process: {ranks_ok}")

    print("4. stats, normalised crops", flush=True)
    run(*M2L, "stats", w / "dataset")
    from m2l.latents import LatentCropDataset

    data = LatentCropDataset(w / "dataset", crop_frames=64, stats=w / "dataset" / "stats.json", items=256)
    crops = torch.stack([data[i] for i in range(len(data))])
    mean, std = crops.mean().item(), crops.std().item()
    print(f"  {len(data)} crops of shape {tuple(crops.shape[1:])}; normalised mean {mean:.3f}, std {std:.3f}")
    listed_ok = check_manifest(w, chosen, one)
    ok = resumed_ok and ranks_ok and listed_ok and abs(mean) < 0.2 and 0.7 < std < 1.3
    print("all checks passed" if ok else "CHECK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
