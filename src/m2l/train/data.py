"""Training data: weighted audio sources, a cached file index, and deterministic random crops.

Crop number j of a run is a pure function of (seed, j): which source (by weight), which file (by
duration, so time is sampled uniformly), which offset. Step s of a run with global batch B uses
crops s * B ... s * B + B - 1, and rank r of W takes its contiguous share. So the data position of
a run is its step, resuming replays nothing and skips nothing, and any number of ranks sees the
same global batches.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from m2l.audio.io import AUDIO_EXTENSIONS, declared_frames, resample
from m2l.errors import M2LError
from m2l.files import walk_files, warn_skipped, write_text

INDEX_VERSION = 1
_MAX_TRIES = 50
SILENCE_DRAWS = 200
"""Crops drawn from a source before it is called silent (see `CropDataset.check_audible`)."""


@dataclass(frozen=True)
class Source:
    """A folder of audio (searched recursively) and its sampling weight."""

    root: Path
    weight: float = 1.0


def parse_source(spec: str) -> Source:
    """'DIR' or 'DIR:WEIGHT' -> Source."""
    root, weight = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            root, weight = head, float(tail)
        except ValueError:
            root = spec
    path = Path(root).expanduser()
    if not path.is_dir():
        raise M2LError(f"{root}: data source is not a folder")
    if not (weight > 0 and math.isfinite(weight)):
        raise M2LError(f"{spec}: source weight must be a finite number > 0")
    return Source(path.resolve(), weight)


@dataclass(frozen=True)
class FileEntry:
    path: str
    frames: int
    sample_rate: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def _scan(root: Path) -> tuple[list[FileEntry], list[str]]:
    good, bad = [], []
    # what is not a regular file (a FIFO or a device would block the read) is left out, with a warning
    for path in walk_files(root, frozenset(AUDIO_EXTENSIONS), on_skip=warn_skipped):
        try:
            info = sf.info(str(path))
            if info.frames < 1 or info.samplerate < 1:
                raise ValueError("empty")
            if (declared_frames(path) or 0) > info.frames:  # libsndfile counts what is left
                raise ValueError("truncated")
            good.append(FileEntry(str(path), int(info.frames), int(info.samplerate), int(info.channels)))
        except Exception:  # noqa: BLE001 - any unreadable file is skipped and counted
            bad.append(str(path))
    return good, bad


def _held_out(path: str, fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "big")
    return h / 2**64 < fraction


def build_index(
    sources: list[Source], cache: Path, *, val_sources: list[Source] | None = None, val_fraction: float = 0.02
) -> dict:
    """Scan the sources once (cached in `cache`); split files into train and validation.

    Returns:
        {"train": [[FileEntry...] per source], "weights": [...], "val": [FileEntry...],
         "unreadable": [paths]}
    """
    key = json.dumps(
        {
            "v": INDEX_VERSION,
            "sources": [[str(s.root), s.weight] for s in sources],
            "val": [str(s.root) for s in val_sources or []],
            "frac": val_fraction,
        }
    )
    if cache.is_file():
        try:
            data = json.loads(cache.read_text())
            if data.get("key") == key:
                return _index_from_json(data)
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            pass
    train, val, bad = [], [], []
    for src in sources:
        good, unreadable = _scan(src.root)
        bad += unreadable
        if val_sources:
            train.append(good)
        else:
            train.append([e for e in good if not _held_out(e.path, val_fraction)])
            val += [e for e in good if _held_out(e.path, val_fraction)]
    for src in val_sources or []:
        good, unreadable = _scan(src.root)
        val += good
        bad += unreadable
    if not val:  # too few files to hold any out: take the shortest training file of the first source
        pool = [e for files in train for e in files]
        if len(pool) >= 2:
            pick = min(pool, key=lambda e: (e.frames, e.path))
            train = [[e for e in files if e != pick] for files in train]
            val = [pick]
    index = {"train": train, "weights": [s.weight for s in sources], "val": val, "unreadable": bad}
    _check_index(index, sources)
    data = {
        "key": key,
        "train": [[e.__dict__ for e in f] for f in train],
        "weights": index["weights"],
        "val": [e.__dict__ for e in val],
        "unreadable": bad,
    }
    write_text(cache, json.dumps(data), force=True)
    for path in bad:
        warnings.warn(f"{path}: unreadable audio file, skipped", stacklevel=2)
    return index


def _index_from_json(data: dict) -> dict:
    return {
        "train": [[FileEntry(**e) for e in f] for f in data["train"]],
        "weights": data["weights"],
        "val": [FileEntry(**e) for e in data["val"]],
        "unreadable": data["unreadable"],
    }


def _check_index(index: dict, sources: list[Source]) -> None:
    for src, files in zip(sources, index["train"], strict=True):
        if not files:
            raise M2LError(f"{src.root}: no readable audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")


class CropDataset(Dataset):
    """Item j = crop j of the run: float32 [channels, crop_samples] at the model rate.

    Unreadable files are skipped (warned once per process) and another crop is drawn; crops with
    RMS below `min_rms` are redrawn too, up to 50 times (`check_audible` refuses a source that is
    silent throughout before training starts).
    """

    def __init__(
        self,
        files: list[list[FileEntry]],
        weights: list[float],
        *,
        crop_samples: int,
        sample_rate: int,
        channels: int,
        seed: int,
        min_rms: float = 1e-3,
    ) -> None:
        self.files = [f for f in files if f]
        self.kept = [i for i, f in enumerate(files) if f]  # the sources with files
        w = np.array([wt for f, wt in zip(files, weights, strict=True) if f], dtype=np.float64)
        self.source_p = w / w.sum()
        self.file_p = [np.array([e.seconds for e in f]) / sum(e.seconds for e in f) for f in self.files]
        self.crop_samples, self.sample_rate, self.channels = crop_samples, sample_rate, channels
        self.seed, self.min_rms = seed, min_rms
        self.bad: set[str] = set()

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, j: int) -> tuple[torch.Tensor, int]:
        """-> (crop [channels, crop_samples], files newly found unreadable while drawing it)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0, int(j)]))
        crop, known_bad = None, len(self.bad)
        for _ in range(_MAX_TRIES):
            s = rng.choice(len(self.files), p=self.source_p)
            entry = self.files[s][rng.choice(len(self.files[s]), p=self.file_p[s])]
            crop = self.read_crop(entry, rng)
            if crop is not None and float(crop.pow(2).mean().sqrt()) >= self.min_rms:
                break
        if crop is None:
            crop = torch.zeros(self.channels, self.crop_samples)
        return crop, len(self.bad) - known_bad

    def check_audible(self, roots: list[Path], draws: int = SILENCE_DRAWS) -> None:
        """Refuse a source from which `draws` crops (a fixed sample) are all quieter than
        `min_rms`: training would redraw forever, or learn from silence.

        Args:
            roots: the folder of each source (for the message), in the order given to the
                constructor.
            draws: crops to try per source.

        Raises:
            M2LError: naming the first silent (or unreadable) source folder.
        """
        bad = set(self.bad)  # files found unreadable here are found (and counted) again later
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for s, files in enumerate(self.files):
                    rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2, s]))
                    if not any(self._loud(files, self.file_p[s], rng) for _ in range(draws)):
                        raise M2LError(
                            f"{roots[self.kept[s]]}: none of {draws} crops is louder than RMS "
                            f"{self.min_rms:g}; the audio looks silent or unreadable (check it, or "
                            f"lower --set min_rms)"
                        )
        finally:
            self.bad = bad

    def _loud(self, files: list[FileEntry], p: np.ndarray, rng: np.random.Generator) -> bool:
        crop = self.read_crop(files[rng.choice(len(files), p=p)], rng)
        return crop is not None and float(crop.pow(2).mean().sqrt()) >= self.min_rms

    def read_crop(self, entry: FileEntry, rng: np.random.Generator) -> torch.Tensor | None:
        """A random crop of one file (zero-padded when the file is shorter), or None if unreadable."""
        need = int(np.ceil(self.crop_samples * entry.sample_rate / self.sample_rate)) + 64
        start = int(rng.integers(0, max(entry.frames - need, 0) + 1))
        if entry.path in self.bad:
            return None
        try:
            with sf.SoundFile(entry.path) as f:
                f.seek(start)
                data = f.read(min(need, entry.frames - start), dtype="float32", always_2d=True)
        except Exception:  # noqa: BLE001 - corrupt data must not stop a training run
            self.bad.add(entry.path)
            warnings.warn(f"{entry.path}: unreadable audio, skipped for the rest of the run", stacklevel=2)
            return None
        wave = torch.from_numpy(np.ascontiguousarray(data.T))
        if not torch.isfinite(wave).all():
            self.bad.add(entry.path)
            return None
        wave = _match_channels(wave, self.channels)
        if entry.sample_rate != self.sample_rate:
            wave = resample(wave, entry.sample_rate, self.sample_rate)
        out = torch.zeros(self.channels, self.crop_samples)
        n = min(self.crop_samples, wave.shape[-1])
        at = int(rng.integers(0, self.crop_samples - n + 1))
        out[:, at : at + n] = wave[:, :n]
        return out


def _match_channels(wave: torch.Tensor, channels: int) -> torch.Tensor:
    if wave.shape[0] == channels:
        return wave
    if channels == 1:
        return wave.mean(0, keepdim=True)
    return wave[:1].expand(channels, -1).clone() if wave.shape[0] == 1 else wave[:channels]


class StepSampler(Sampler[list[int]]):
    """Batches of crop numbers for one rank, from `start_step` on (see module docstring)."""

    def __init__(self, batch_size: int, rank: int, world: int, start_step: int, steps: int) -> None:
        if batch_size % world:
            raise M2LError(f"global batch {batch_size} is not divisible by {world} processes")
        self.batch, self.local = batch_size, batch_size // world
        self.rank, self.start, self.steps = rank, start_step, steps

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            first = step * self.batch + self.rank * self.local
            yield list(range(first, first + self.local))

    def __len__(self) -> int:
        return max(self.steps - self.start, 0)


def _ignore_stop_signals(_worker_id: int) -> None:
    """Loader workers leave SIGINT/SIGTERM to the trainer: Ctrl-C, `timeout`, SLURM and docker
    signal the whole process group, and a worker dying first would crash the run before the
    trainer saves. The trainer shuts its workers down when it stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(dataset: CropDataset, sampler: StepSampler, workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        worker_init_fn=_ignore_stop_signals if workers else None,
    )


def validation_crops(
    files: list[FileEntry], *, items: int, seconds: float, sample_rate: int, channels: int, seed: int
) -> torch.Tensor:
    """A fixed validation set [items, channels, samples]: crops spread over the held-out files."""
    if not files:
        raise M2LError("no validation files (give --val DIR or more training files)")
    samples = int(round(seconds * sample_rate))
    ds = CropDataset(
        [files],
        [1.0],
        crop_samples=samples,
        sample_rate=sample_rate,
        channels=channels,
        seed=seed + 1,
        min_rms=1e-3,
    )
    crops = torch.stack([ds[j][0] for j in range(items)])
    if not bool((crops.pow(2).mean(dim=(1, 2)).sqrt() >= 1e-3).any()):
        folder = os.path.commonpath([e.path for e in files])
        raise M2LError(
            f"{folder}: every validation crop is quieter than RMS 0.001; the validation audio looks "
            f"silent (give --val DIR with audible audio)"
        )
    return crops
