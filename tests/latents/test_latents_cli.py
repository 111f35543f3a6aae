"""`m2l pack` and `m2l stats` on the command line: outputs, summaries, one-line errors."""

from __future__ import annotations

import json

import pytest
from cli_testing import run
from latents_testing import flip_byte, random_folder, random_latent_file
from m2l_testing import assert_one_line_error

from m2l.latents.index import read_index
from m2l.latents.stats import LatentStats, compute_stats


@pytest.fixture
def latents(tmp_path):
    random_folder(tmp_path / "latents", frames=(20, 35, 8, 50))
    return tmp_path / "latents"


def test_pack_then_stats(capsys, tmp_path, latents):
    code, out, err = run(capsys, "pack", latents, "-o", tmp_path / "ds", "--shard-mb", "0.02", "-q")
    assert code == 0 and out == ""
    assert err.startswith("m2l: packed 4 files (198 units, 0.0 MB) into 3 shards: ") and "index.jsonl" in err
    assert len(read_index(tmp_path / "ds")) == 4
    code, out, err = run(capsys, "stats", tmp_path / "ds")
    assert code == 0 and err == "" and "198 latent vectors" in out
    assert LatentStats.load(tmp_path / "ds" / "stats.json") == compute_stats(tmp_path / "ds")
    code, out, _ = run(capsys, "stats", latents, "-o", tmp_path / "folder-stats.json")
    assert code == 0 and LatentStats.load(tmp_path / "folder-stats.json").vectors == 198


def test_existing_outputs_need_force(capsys, tmp_path, latents):
    assert run(capsys, "pack", latents, "-o", tmp_path / "ds", "-q")[0] == 0
    code, _, err = run(capsys, "pack", latents, "-o", tmp_path / "ds", "-q")
    assert code == 1
    assert_one_line_error(err, str(tmp_path / "ds" / "index.jsonl"), "already exists", "--force")
    assert run(capsys, "pack", latents, "-o", tmp_path / "ds", "-q", "--force")[0] == 0
    assert run(capsys, "stats", tmp_path / "ds")[0] == 0
    code, _, err = run(capsys, "stats", tmp_path / "ds")
    assert code == 1
    assert_one_line_error(err, "stats.json", "already exists")
    assert run(capsys, "stats", tmp_path / "ds", "--force")[0] == 0
    assert run(capsys, "pack", latents, "-o", tmp_path / "ds", "-q", "--force")[0] == 0
    assert not (tmp_path / "ds" / "stats.json").exists()  # the old dataset's statistics went with it


def test_bad_inputs_are_one_line_errors(capsys, tmp_path, latents):
    (tmp_path / "empty").mkdir()
    random_latent_file(model_id="other@9").save(latents / "zz-other.m2l")
    cases = [
        (("pack", tmp_path / "missing", "-o", tmp_path / "o1"), ["missing", "no such folder"]),
        (("pack", tmp_path / "empty", "-o", tmp_path / "o2"), ["empty", "no .m2l files"]),
        (("pack", latents, "-o", tmp_path / "o3"), ["zz-other.m2l", "other@9", "one model"]),
        (("pack", tmp_path / "empty", "-o", latents / "zz-other.m2l"), ["zz-other.m2l", "not a directory"]),
        (("stats", tmp_path / "missing"), ["missing", "no such folder"]),
        (("stats", tmp_path / "empty"), ["empty", "no .m2l files"]),
        (("stats", latents), ["zz-other.m2l", "one model"]),
    ]
    for argv, fragments in cases:
        code, out, err = run(capsys, *argv)
        assert code == 1 and out == "", argv
        assert_one_line_error(err, *fragments)
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3"))
    assert not (tmp_path / "empty" / "stats.json").exists()
    code, _, err = run(capsys, "pack", latents, "-o", tmp_path / "o4", "--shard-mb", "0")
    assert code == 2 and "--shard-mb" in err


def test_stats_refuses_a_damaged_shard(capsys, tmp_path, latents):
    assert run(capsys, "pack", latents, "-o", tmp_path / "ds", "-q")[0] == 0
    shard = tmp_path / "ds" / "shard-000000.safetensors"
    flip_byte(shard)
    code, _, err = run(capsys, "stats", tmp_path / "ds")
    assert code == 1
    assert_one_line_error(err, str(shard), "does not match its checksum")
    assert not (tmp_path / "ds" / "stats.json").exists()


def test_pack_copies_manifest_rows_and_warns_about_files_without_one(capsys, tmp_path, latents):
    manifest = tmp_path / "manifest.jsonl"
    rows = [{"path": "music/train/file0.flac", "licence": "CC-BY-4.0"}, {"path": "music/train/sub/file1.ogg"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = run(capsys, "pack", latents, "-o", tmp_path / "ds", "--manifest", manifest, "-q")
    assert code == 0
    warning, summary = err.strip().splitlines()
    assert warning.startswith("m2l: warning: ") and "no row for 2 of 4 files (e.g. file2.m2l)" in warning
    assert summary.startswith("m2l: packed 4 files")
    copied = [e.manifest for e in read_index(tmp_path / "ds")]
    assert copied == [rows[0], None, rows[1], None]


def test_info_describes_a_shard_and_refuses_a_damaged_one(capsys, tmp_path, latents):
    assert run(capsys, "pack", latents, "-o", tmp_path / "ds", "-q")[0] == 0
    shard = tmp_path / "ds" / "shard-000000.safetensors"
    code, out, err = run(capsys, "info", shard, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["type"] == "latent-shard" and info["files"] == 4 and info["units"] == 198
    assert info["kind"] == "v1" and info["shape"] == [198, 64] and info["model_id"] == "rand@1"
    code, out, _ = run(capsys, "info", shard)
    assert code == 0 and "m2l latent dataset shard" in out and "198 latent frames" in out
    flip_byte(shard)
    code, _, err = run(capsys, "info", shard)
    assert code == 1
    assert_one_line_error(err, str(shard), "does not match its checksum")
