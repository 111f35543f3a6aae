"""`m2l.latents.pack`: a folder of .m2l files -> a dataset; manifest rows matched to files."""

from __future__ import annotations

import json

import pytest
import torch
from latents_testing import random_folder, random_latent_file
from m2l_testing import assert_one_line_error

from m2l.errors import M2LError
from m2l.formats import load_latents
from m2l.latents.index import read_index
from m2l.latents.pack import manifest_lookup, pack_folder
from m2l.latents.store import LatentStore


def _manifest(path, paths):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"path": p, "licence": f"licence-{i}", "source": "pkg", "duration": 1.0} for i, p in enumerate(paths)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_packed_folder_holds_every_file_in_path_order(tmp_path):
    paths = random_folder(tmp_path / "latents", "v2", frames=(5, 9, 3, 7))
    summary = pack_folder(tmp_path / "latents", tmp_path / "dataset", shard_bytes=20_000)
    entries = read_index(tmp_path / "dataset")
    assert [e.source for e in entries] == sorted(
        p.relative_to(tmp_path / "latents").as_posix() for p in paths
    )
    assert summary.files == 4 and summary.shards == len({e.shard for e in entries}) > 1
    assert summary.units == sum(e.frames * e.channels for e in entries)
    store = LatentStore(tmp_path / "dataset")
    for number, entry in enumerate(entries):
        original = load_latents(tmp_path / "latents" / entry.source).latents
        for row in range(entry.channels):
            assert torch.equal(store.read(number, row, 0, entry.frames), original[row])


def test_manifest_rows_are_matched_by_path_without_extension(tmp_path):
    manifest = _manifest(
        tmp_path / "DATA" / "music" / "train" / "manifest.jsonl",
        ["music/train/file0.flac", "music/train/sub/file1.wav", "music/train/sub/other.wav"],
    )
    find = manifest_lookup(manifest)
    assert find("file0.m2l")["licence"] == "licence-0"  # encoded from DATA/music/train
    assert find("music/train/sub/file1.m2l")["licence"] == "licence-1"  # encoded from DATA
    assert find("sub/file3.m2l") is None
    random_folder(tmp_path / "latents", frames=(4, 4, 4, 4))
    summary = pack_folder(tmp_path / "latents", tmp_path / "dataset", manifest=manifest)
    rows = {e.source: e.manifest for e in read_index(tmp_path / "dataset")}
    assert rows["file0.m2l"]["path"] == "music/train/file0.flac" and rows["sub/file1.m2l"]["source"] == "pkg"
    assert summary.unmatched == ["file2.m2l", "sub/file3.m2l"] and rows["file2.m2l"] is None


def test_ambiguous_or_pathless_manifest_rows_are_refused(tmp_path):
    find = manifest_lookup(_manifest(tmp_path / "m.jsonl", ["a/x.flac", "b/x.wav"]))
    with pytest.raises(M2LError) as err:
        find("x.m2l")
    assert_one_line_error(err, "m.jsonl", "2 rows match x.m2l", "m.jsonl:1", "m.jsonl:2")
    assert find("a/x.m2l")["path"] == "a/x.flac"
    (tmp_path / "bad.jsonl").write_text('{"path": "a.flac"}\n{"licence": "x"}\n')
    with pytest.raises(M2LError) as err:
        manifest_lookup(tmp_path / "bad.jsonl")
    assert_one_line_error(err, "bad.jsonl:2", "'path'")


def test_pack_refuses_bad_folders_before_writing(tmp_path):
    with pytest.raises(M2LError) as err:
        pack_folder(tmp_path / "missing", tmp_path / "out")
    assert_one_line_error(err, "missing", "no such folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(M2LError) as err:
        pack_folder(tmp_path / "empty", tmp_path / "out")
    assert_one_line_error(err, "empty", "no .m2l files")
    random_folder(tmp_path / "mixed", frames=(4, 4))
    random_latent_file(model_id="other@2").save(tmp_path / "mixed" / "zz.m2l")
    with pytest.raises(M2LError) as err:
        pack_folder(tmp_path / "mixed", tmp_path / "out")
    assert_one_line_error(err, "zz.m2l", "other@2", "one model")
    with pytest.raises(M2LError) as err:
        pack_folder(tmp_path / "mixed", tmp_path / "mixed")
    assert_one_line_error(err, "must not be the folder")
    assert not (tmp_path / "out").exists()
