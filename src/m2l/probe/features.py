"""Labelled notes in, one feature vector per note out, cached on disk.

Manifest: JSON lines, one note per line, with at least "path" (relative to the manifest's folder
or to its parent, i.e. DATA for DATA/notes/manifest.jsonl; absolute paths work too), "split"
("train", "val" or "test") and the label of every probed task: "pitch" (MIDI number),
"pitch_class" (0-11; derived from "pitch" when absent) and "program" (the General MIDI program,
the label of the "instrument" task). Other fields are ignored.

Feature kinds (one clip vector per note, the papers' MIR protocol; the pooling is the codec's
`clip_vector`):

- "features": the encoder's features for MIR. v1: `encode(features=True)` is
  [channels, feature_dim, frames], averaged over frames and channels; v2: `encode(features=True)`
  is already averaged over chunks, [rows, K * dim], averaged over rows.
- "latents": the plain latents. v1 [channels, 64, frames] averaged over frames and channels; v2
  [rows, chunks, K, 64] averaged over chunks and rows, the K x 64 kept (flattened).
- "logmel": mean and standard deviation over time of 128 log10 Slaney mel bands (44.1 kHz,
  2048-point Hann STFT, hop 512; `m2l.evaluate.metrics`), 256 numbers.

With `--pool meanstd` (the default for excerpts) "features" and "latents" are followed by their
standard deviation over time (`time_std`; v2 features have no time axis and stay the mean).

The cache holds one safetensors file per (model id, kind, manifest SHA-256), checksummed and
written atomically; a file that cannot be read or does not match is recomputed with a warning.
It is keyed by the manifest's bytes: replace audio files under an unchanged manifest and the
cache must be deleted by hand.
"""

from __future__ import annotations

import hashlib
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from tqdm import tqdm

from m2l.audio.io import load_audio
from m2l.checksummed import atomic_save, read_safetensors, seal
from m2l.codec import Codec
from m2l.config import ModelConfig, config_hash
from m2l.datasets import SPLITS, manifest_bytes, manifest_rows
from m2l.errors import M2LError
from m2l.evaluate.metrics import mel_filterbank, stft_magnitude
from m2l.loading import UNTRAINED_SEED
from m2l.probe import SET_TASKS, TASK_FIELDS, TEXT_TASKS

CACHE_FORMAT, CACHE_VERSION = "m2l-probe-features", 2
LOGMEL_RATE, LOGMEL_FFT, LOGMEL_HOP, LOGMEL_BANDS, LOGMEL_FLOOR = 44100, 2048, 512, 128, 1e-5
POOLINGS = ("mean", "meanstd")
"""How codec outputs are pooled over time (`codec_extractor`); excerpts default to "meanstd"."""
LOGMEL_ID = f"logmel-{LOGMEL_RATE}hz-fft{LOGMEL_FFT}-hop{LOGMEL_HOP}-mels{LOGMEL_BANDS}"
"""The cache's model id of the log-mel statistics baseline."""

T = TypeVar("T")
Extractor = Callable[[Path, Sequence[str]], dict[str, np.ndarray]]
"""(audio path, kinds) -> {kind: clip vector}."""


# ----------------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class NoteSet:
    """The notes of a manifest, in manifest order.

    Attributes:
        manifest: the manifest file.
        sha256: SHA-256 of its bytes (part of the cache key).
        paths: resolved audio file of each note.
        splits: "train" / "val" / "test" per note.
        labels: task -> integer label per note (only the tasks asked for); text labels
            (`TEXT_TASKS`) are numbered in sorted order.
    """

    manifest: Path
    sha256: str
    paths: list[Path]
    splits: np.ndarray
    labels: dict[str, np.ndarray]
    kind: str = "notes"
    """"notes", or "excerpts" when the manifest's rows carry a "key" (`SET_TASKS`)."""
    classes: dict[str, list[str]] | None = None
    """Task -> the class names of the integer labels, for tasks with text labels."""

    def __len__(self) -> int:
        return len(self.paths)

    def count(self, split: str) -> int:
        """Number of notes in `split`."""
        return int((self.splits == split).sum())


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _label(row: dict, task: str, where: str) -> int | str:
    field = TASK_FIELDS[task]
    value = row.get(field)
    if value is None and task == "pitch_class" and _is_int(row.get("pitch")):
        return int(row["pitch"]) % 12
    if value is None:
        raise M2LError(f"{where}: no {field!r} field (the label of the {task!r} task)")
    if task in TEXT_TASKS and isinstance(value, str) and value.strip():
        return value
    if not _is_int(value):
        what = "an integer or a non-empty string" if task in TEXT_TASKS else "an integer"
        raise M2LError(f"{where}: {field!r} must be {what}, got {value!r}")
    return int(value)


def _encode(values: list[int | str]) -> tuple[np.ndarray, list[str] | None]:
    """Integer labels, and the class names when some labels are text (numbered in sorted order)."""
    if all(isinstance(v, int) for v in values):
        return np.array(values, dtype=np.int64), None
    names = sorted({str(v) for v in values})
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[str(v)] for v in values], dtype=np.int64), names


def _resolve(manifest: Path, rel: str, where: str) -> Path:
    """The audio file of a manifest row: relative to the manifest's folder, else to its parent."""
    candidates = [manifest.parent / rel, manifest.parent.parent / rel]
    for path in candidates:
        if path.is_file():
            return path
    raise M2LError(
        f"{where}: audio file {rel!r} not found (looked in {manifest.parent} and {manifest.parent.parent})"
    )


def manifest_kind(rows: Sequence[tuple[str, dict]]) -> str:
    """ "excerpts" when the first row has a "key" label, else "notes"."""
    return "excerpts" if rows and "key" in rows[0][1] else "notes"


def read_notes(manifest: str | Path, tasks: Sequence[str] | None = None) -> NoteSet:
    """Read and check a labelled manifest (isolated notes or music excerpts).

    Args:
        manifest: the JSON-lines file.
        tasks: the tasks whose labels must be present (keys of `TASK_FIELDS`); None: the default
            tasks of the manifest's kind (`SET_TASKS`, `manifest_kind`).

    Returns:
        The notes, with every audio file checked to exist.

    Raises:
        M2LError: one line naming the manifest (and the line) for a missing or malformed file, a
            missing or non-integer label, an unknown split, a missing audio file, or a split with
            no notes.
    """
    path = Path(manifest)
    data = manifest_bytes(path)
    paths: list[Path] = []
    splits: list[str] = []
    rows = manifest_rows(path, data)
    kind = manifest_kind(rows)
    tasks = SET_TASKS[kind] if tasks is None else tasks
    labels: dict[str, list[int | str]] = {task: [] for task in tasks}
    for where, row in rows:
        rel, split = row.get("path"), row.get("split")
        if not isinstance(rel, str) or not rel:
            raise M2LError(f"{where}: 'path' must be a non-empty string, got {rel!r}")
        if split not in SPLITS:
            raise M2LError(f"{where}: 'split' must be one of {', '.join(SPLITS)}, got {split!r}")
        for task in tasks:
            labels[task].append(_label(row, task, where))
        paths.append(_resolve(path, rel, where))
        splits.append(split)
    if not paths:
        raise M2LError(f"{path}: no notes in the manifest")
    for split in SPLITS:
        if split not in splits:
            raise M2LError(f"{path}: no notes in the {split!r} split (probes need train, val and test)")
    encoded = {task: _encode(values) for task, values in labels.items()}
    return NoteSet(
        manifest=path,
        sha256=hashlib.sha256(data).hexdigest(),
        paths=paths,
        splits=np.array(splits),
        labels={t: codes for t, (codes, _) in encoded.items()},
        kind=kind,
        classes={t: names for t, (_, names) in encoded.items() if names is not None},
    )


# ----------------------------------------------------------------------------- cache
def cache_file(cache_dir: Path, model_id: str, kind: str, manifest_sha: str) -> Path:
    """Where the features of (model, kind, manifest) are cached."""
    key = f"{model_id}|{kind}|{manifest_sha}|{CACHE_VERSION}"
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)[:80]
    return cache_dir / f"{readable}.{kind}.{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"


def read_cache(path: Path, model_id: str, kind: str, manifest_sha: str, rows: int) -> np.ndarray | None:
    """Cached features [rows, dim], or None when absent; unusable files give a warning."""
    if not path.exists():
        return None
    try:
        tensors, meta = read_safetensors(path, CACHE_FORMAT, CACHE_VERSION)
        feats = tensors.get("features")
        expected = {
            "model_id": model_id,
            "kind": kind,
            "manifest_sha256": manifest_sha,
            "version": str(CACHE_VERSION),
        }
        wrong = [k for k, v in expected.items() if meta.get(k) != v]
        if wrong:
            raise M2LError(f"{path}: cache entry for another {wrong[0]} ({meta.get(wrong[0])!r})")
        if feats is None or feats.dim() != 2 or feats.shape[0] != rows:
            shape = None if feats is None else list(feats.shape)
            raise M2LError(f"{path}: cached features have shape {shape}, expected [{rows}, dim]")
    except (M2LError, OSError) as err:
        warnings.warn(f"unusable feature cache ({err}); recomputing", stacklevel=2)
        return None
    return feats.numpy().copy()  # own the memory: the file may be memory-mapped and replaced later


def write_cache(path: Path, feats: np.ndarray, model_id: str, kind: str, manifest_sha: str) -> None:
    """Store features atomically; a cache that cannot be written only costs a warning."""
    tensors = {"features": torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))}
    meta = {
        "format": CACHE_FORMAT,
        "version": str(CACHE_VERSION),
        "model_id": model_id,
        "kind": kind,
        "manifest_sha256": manifest_sha,
    }
    try:
        atomic_save(tensors, seal(tensors, meta), path, force=True)
    except OSError as err:
        warnings.warn(f"{path}: cannot write the feature cache ({err.strerror or err})", stacklevel=2)
    except M2LError as err:  # a full disk, a read-only folder... (`m2l.files`); the message names path
        warnings.warn(f"{err} (feature cache not written)", stacklevel=2)


def cached_features(
    notes: NoteSet,
    cache_dir: Path,
    model_id: str,
    kinds: Sequence[str],
    make_extractor: Callable[[], Extractor],
    desc: str,
    quiet: bool = False,
) -> dict[str, np.ndarray]:
    """Features of every note for each kind, from the cache or computed (and then cached).

    Args:
        notes: the notes.
        cache_dir: the cache folder.
        model_id: identifies the weights (or the baseline) in the cache key.
        kinds: feature kinds to return.
        make_extractor: builds the extractor; only called when something must be computed.
        desc: label of the progress bar.
        quiet: no progress bar.

    Returns:
        kind -> float32 [notes, dim].
    """
    found: dict[str, np.ndarray] = {}
    for kind in kinds:
        arr = read_cache(
            cache_file(cache_dir, model_id, kind, notes.sha256), model_id, kind, notes.sha256, len(notes)
        )
        if arr is not None:
            found[kind] = arr
    todo = [k for k in kinds if k not in found]
    if todo:
        extractor = make_extractor()
        rows: dict[str, list[np.ndarray]] = {k: [] for k in todo}
        for path in tqdm(
            notes.paths, desc=desc, unit="note", file=sys.stderr, disable=quiet, dynamic_ncols=True
        ):
            out = extractor(path, todo)
            for kind in todo:
                rows[kind].append(out[kind])
        for kind in todo:
            found[kind] = np.stack(rows[kind]).astype(np.float32)
            write_cache(
                cache_file(cache_dir, model_id, kind, notes.sha256), found[kind], model_id, kind, notes.sha256
            )
    return {k: found[k] for k in kinds}


# ----------------------------------------------------------------------------- extractors
def clip_vector(codec: Codec, wave: torch.Tensor, kind: str) -> np.ndarray:
    """Encode one note and average the output to a clip vector (see the module doc).

    Args:
        codec: the m2l codec (v1 or v2).
        wave: [channels, samples] audio at the codec's rate.
        kind: "features" or "latents".

    Returns:
        [dim] (v1), [K * dim] (v2) float64.
    """
    features = kind == "features"
    return codec.clip_vector(codec.encode(wave, features=features), features=features).double().numpy()


def time_std(out: torch.Tensor) -> torch.Tensor:
    """The spread over time of `encode`'s output for one clip (the "meanstd" pooling's second half).

    Args:
        out: v1 [channels, dim, frames] -> std over frames, mean over channels, [dim]; v2 latents
            [rows, chunks, K, dim] -> std over chunks, mean over rows, [K * dim]; v2 features
            [rows, K * dim] have no time axis (the encoder averages its chunks) -> [0].
    """
    if out.dim() == 3:
        return out.std(dim=2, correction=0).mean(0)
    if out.dim() == 4:
        return out.std(dim=1, correction=0).mean(0).flatten()
    return out.new_zeros(0)


def codec_extractor(codec: Codec, pool: str = "mean") -> Extractor:
    """Extractor of the "features" and "latents" kinds of an m2l codec (`Codec1` or `Codec2`).

    Args:
        codec: the codec.
        pool: "mean" (`clip_vector`, the papers' protocol) or "meanstd" (the mean, then `time_std`:
            for longer clips, whose rhythm lives in how the frames change).
    """
    if pool not in POOLINGS:
        raise M2LError(f"unknown pooling {pool!r} (known: {', '.join(POOLINGS)})")

    def extract(path: Path, kinds: Sequence[str]) -> dict[str, np.ndarray]:
        wave = codec.load_audio(path, downmix=True)
        if pool == "mean":
            return {kind: clip_vector(codec, wave, kind) for kind in kinds}
        found = {}
        for kind in kinds:
            out = codec.encode(wave, features=kind == "features")
            mean = codec.clip_vector(out, features=kind == "features")
            found[kind] = torch.cat([mean, time_std(out)]).double().numpy()
        return found

    return extract


def logmel_stats(wave: torch.Tensor) -> np.ndarray:
    """Mean and std over time of the log-mel bands of a mono waveform [samples] at 44.1 kHz.

    Returns:
        [2 * LOGMEL_BANDS] float64: the band means, then the band standard deviations.
    """
    bank = mel_filterbank(LOGMEL_RATE, LOGMEL_FFT, LOGMEL_BANDS, dtype=torch.float64)
    mel = bank @ stft_magnitude(wave.to(torch.float64), LOGMEL_FFT, LOGMEL_HOP)
    logmel = torch.log10(mel + LOGMEL_FLOOR)
    return torch.cat([logmel.mean(-1), logmel.std(-1, correction=0)]).numpy()


def logmel_extractor() -> Extractor:
    """Extractor of the "logmel" kind."""

    def extract(path: Path, kinds: Sequence[str]) -> dict[str, np.ndarray]:
        wave, _ = load_audio(path, LOGMEL_RATE, downmix=True)
        return {"logmel": logmel_stats(wave.mean(0))}

    return extract


def untrained_id(cfg: ModelConfig) -> str:
    """Model id of the untrained (seeded) encoder of an architecture."""
    return f"{cfg.name}@untrained-seed{UNTRAINED_SEED}-{config_hash(cfg)}"


def seeded(build: Callable[[], T]) -> T:
    """Run `build` with torch's global generator seeded to `UNTRAINED_SEED`, restoring it after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        return build()
