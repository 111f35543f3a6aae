import numpy as np
import pytest
import torch

from m2l.errors import M2LError
from m2l.train import data
from m2l.train.data import CropDataset, StepSampler, build_index, parse_source, validation_crops


def test_parse_source(audio_dirs):
    src = parse_source(f"{audio_dirs['train']}:2.5")
    assert src.root == audio_dirs["train"].resolve() and src.weight == 2.5
    assert parse_source(str(audio_dirs["train"])).weight == 1.0
    with pytest.raises(M2LError, match="not a folder"):
        parse_source("/no/such/folder")
    with pytest.raises(M2LError, match="weight"):
        parse_source(f"{audio_dirs['train']}:0")


def test_index_counts_unreadable_files_and_is_cached(audio_dirs, tmp_path, monkeypatch):
    sources = [parse_source(str(audio_dirs["train"]))]
    val = [parse_source(str(audio_dirs["val"]))]
    with pytest.warns(UserWarning, match="broken.wav"):
        index = build_index(sources, tmp_path / "index.json", val_sources=val)
    assert [p.endswith("broken.wav") for p in index["unreadable"]] == [True]
    assert len(index["train"][0]) == 4 and len(index["val"]) == 1

    def no_scan(root):
        raise AssertionError("the index should come from the cache")

    monkeypatch.setattr(data, "_scan", no_scan)
    again = build_index(sources, tmp_path / "index.json", val_sources=val)
    assert again["train"] == index["train"]


def test_a_truncated_file_is_counted_unreadable_not_indexed_short(audio_dirs, tmp_path):
    import shutil

    folder = tmp_path / "corpus"
    folder.mkdir()
    good = sorted(p for p in audio_dirs["train"].rglob("*.wav") if p.name != "broken.wav")[0]
    shutil.copy(good, folder / "good.wav")
    shutil.copy(good, folder / "cut.wav")
    with open(folder / "cut.wav", "r+b") as f:
        f.truncate(good.stat().st_size // 2)
    with pytest.warns(UserWarning, match="cut.wav: unreadable audio file, skipped"):
        val = [parse_source(str(audio_dirs["val"]))]  # no held-out split: good.wav stays in train
        index = build_index([parse_source(str(folder))], tmp_path / "index.json", val_sources=val)
    assert [p.endswith("cut.wav") for p in index["unreadable"]] == [True]
    assert [e.path.endswith("good.wav") for f in index["train"] for e in f] == [True]


def test_held_out_split_without_a_validation_folder(audio_dirs, tmp_path):
    with pytest.warns(UserWarning):
        index = build_index([parse_source(str(audio_dirs["train"]))], tmp_path / "i.json")
    train = {e.path for e in index["train"][0]}
    val = {e.path for e in index["val"]}
    assert val and train and not train & val


def _dataset(audio_dirs, tmp_path, *dirs, crop=20000, seed=0):
    sources = [parse_source(str(audio_dirs[d])) for d in dirs]
    with pytest.warns(UserWarning):
        index = build_index(sources, tmp_path / "i.json", val_sources=[parse_source(str(audio_dirs["val"]))])
    return CropDataset(
        index["train"], index["weights"], crop_samples=crop, sample_rate=44100, channels=1, seed=seed
    )


def test_crops_are_exact_deterministic_and_loud_enough(audio_dirs, tmp_path):
    ds = _dataset(audio_dirs, tmp_path, "train")
    crops = [ds[j][0] for j in range(12)]
    assert all(c.shape == (1, 20000) for c in crops)
    assert all(torch.equal(a, ds[j][0]) for j, a in enumerate(crops))
    assert not all(torch.equal(crops[0], c) for c in crops[1:])
    assert all(float(c.pow(2).mean().sqrt()) >= 1e-3 for c in crops)


def test_silent_source_is_skipped_by_the_rms_rule(audio_dirs, tmp_path):
    ds = _dataset(audio_dirs, tmp_path, "silent", "train")
    rms = [float(ds[j][0].pow(2).mean().sqrt()) for j in range(10)]
    assert min(rms) >= 1e-3


def test_a_named_pipe_in_a_data_folder_is_skipped_with_a_warning_not_read(audio_dirs, tmp_path):
    import os
    import shutil

    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(audio_dirs["train"] / "a.wav", folder / "a.wav")
    os.mkfifo(folder / "pipe.wav")  # sf.info on it would block forever
    with pytest.warns(UserWarning, match=r"pipe.wav: is a named pipe \(FIFO\)"):
        val = [parse_source(str(audio_dirs["val"]))]
        index = build_index([parse_source(str(folder))], tmp_path / "index.json", val_sources=val)
    assert [e.path.endswith("a.wav") for f in index["train"] for e in f] == [True]


def test_unreadable_file_found_while_reading_is_skipped_and_counted(audio_dirs, tmp_path):
    ds = _dataset(audio_dirs, tmp_path, "train")
    entry = ds.files[0][0]
    ds.files[0][0] = type(entry)(str(tmp_path / "vanished.wav"), entry.frames, entry.sample_rate, 1)
    with pytest.warns(UserWarning, match="vanished"):
        counts = [ds[j][1] for j in range(40)]
    assert sum(counts) == 1 and all(ds[j][0].shape == (1, 20000) for j in range(3))


def test_step_sampler_splits_the_global_batch_over_ranks():
    single = list(StepSampler(4, 0, 1, 3, 5))
    ranks = [list(StepSampler(4, r, 2, 3, 5)) for r in range(2)]
    assert single == [[12, 13, 14, 15], [16, 17, 18, 19]]
    assert [a + b for a, b in zip(*ranks, strict=True)] == single
    with pytest.raises(M2LError, match="divisible"):
        StepSampler(5, 0, 2, 0, 1)


def test_validation_crops_are_fixed(audio_dirs, tmp_path):
    with pytest.warns(UserWarning):
        index = build_index(
            [parse_source(str(audio_dirs["train"]))],
            tmp_path / "i.json",
            val_sources=[parse_source(str(audio_dirs["val"]))],
        )
    a = validation_crops(index["val"], items=3, seconds=0.5, sample_rate=44100, channels=1, seed=0)
    b = validation_crops(index["val"], items=3, seconds=0.5, sample_rate=44100, channels=1, seed=0)
    assert a.shape == (3, 1, 22050) and torch.equal(a, b) and np.isfinite(a.numpy()).all()


def test_a_silent_source_is_refused_up_front_naming_its_folder(audio_dirs, tmp_path):
    ds = _dataset(audio_dirs, tmp_path, "train", "silent")
    roots = [audio_dirs["train"], audio_dirs["silent"]]
    with pytest.raises(M2LError, match=f"^{audio_dirs['silent']}: none of 200 crops is louder than RMS 0.00"):
        ds.check_audible(roots)
    assert not ds.bad  # the probe leaves the dataset as it was
    _dataset(audio_dirs, tmp_path / "t", "train").check_audible(roots[:1])
    val = [
        parse_source(str(audio_dirs["val"]))
    ]  # without it, 2% of paths would hold s.wav out for validation
    silent = build_index([parse_source(str(audio_dirs["silent"]))], tmp_path / "s.json", val_sources=val)[
        "train"
    ][0]
    with pytest.raises(M2LError, match=f"^{silent[0].path}: every validation crop is quieter"):
        validation_crops(silent, items=2, seconds=0.5, sample_rate=44100, channels=1, seed=0)


def test_a_source_weight_must_be_finite(audio_dirs):
    for weight in ("inf", "nan", "-1"):
        with pytest.raises(M2LError, match="weight must be a finite number > 0"):
            parse_source(f"{audio_dirs['train']}:{weight}")
