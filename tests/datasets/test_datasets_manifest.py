"""Reading and checking manifest.jsonl files; the `m2l data` command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from m2l.cli import main
from m2l.datasets import data_root, manifest_files, manifest_rows, read_manifest
from m2l.errors import M2LError

GOOD = {
    "path": "music/train/pkg/a.ogg",
    "duration": 12.5,
    "sample_rate": 44100,
    "channels": 2,
    "licence": "GPL-2+",
    "source": "pkg",
}
NOTE = {
    **GOOD,
    "path": "notes/train/p001-piano/n060-v080.wav",
    "program": 1,
    "instrument": "Piano",
    "family": "Piano",
    "pitch": 60,
    "pitch_class": 0,
    "velocity": 80,
    "split": "train",
}


def _write(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_reads_common_and_note_entries(tmp_path: Path) -> None:
    extra = {**GOOD, "path": "music/train/pkg/b.ogg", "duration": 3, "comment": "kept"}
    path = _write(tmp_path / "manifest.jsonl", json.dumps(GOOD), "", json.dumps(NOTE), json.dumps(extra))
    assert read_manifest(path) == [GOOD, NOTE, extra]
    assert read_manifest(_write(tmp_path / "empty.jsonl")) == []


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "duration"}), "missing field 'duration'"),
        (json.dumps({**GOOD, "sample_rate": "44100"}), "field 'sample_rate' must be a positive integer"),
        (json.dumps({**GOOD, "channels": True}), "field 'channels'"),
        (json.dumps({**GOOD, "channels": 0}), "field 'channels'"),
        (json.dumps({**GOOD, "duration": -1}), "field 'duration'"),
        (json.dumps({**GOOD, "path": "/abs/a.ogg"}), "field 'path'"),
        (json.dumps({**GOOD, "path": "music/../../etc/passwd"}), "field 'path'"),
        (json.dumps({**GOOD, "licence": ""}), "field 'licence'"),
        (json.dumps({**GOOD, "pitch": 60}), "missing field 'program'"),
        (json.dumps({**NOTE, "pitch_class": 1}), "pitch_class 1 is not pitch 60 % 12"),
        (json.dumps({**NOTE, "split": "dev"}), "field 'split' must be one of train, val, test"),
        (json.dumps({**NOTE, "program": 0}), "field 'program' must be an integer in 1..128"),
    ],
)
def test_malformed_lines_are_one_line_errors_naming_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    path = _write(tmp_path / "manifest.jsonl", json.dumps(GOOD), line)
    with pytest.raises(M2LError) as info:
        read_manifest(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}:2: ") and message in text


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(M2LError, match="no such manifest"):
        read_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(M2LError, match="is a directory"):
        read_manifest(tmp_path)
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(json.dumps({**GOOD, "source": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(M2LError, match="not a UTF-8 text file"):
        read_manifest(latin1)


def test_rows_split_on_newlines_only(tmp_path: Path) -> None:
    odd = {**GOOD, "path": "music/train/pkg/a\u2028b\x85c.ogg"}  # json.dumps leaves both unescaped
    path = tmp_path / "manifest.jsonl"
    path.write_text(json.dumps(GOOD) + "\r\n" + json.dumps(odd, ensure_ascii=False) + "\n", encoding="utf-8")
    assert manifest_rows(path) == [(f"{path}:1", GOOD), (f"{path}:2", odd)]
    assert read_manifest(path) == [GOOD, odd]


def test_data_root(tmp_path: Path) -> None:
    assert data_root(tmp_path / "notes/manifest.jsonl") == tmp_path
    assert data_root(tmp_path / "speech/val/manifest.jsonl") == tmp_path
    assert data_root(tmp_path / "excerpts/manifest.jsonl") == tmp_path
    with pytest.raises(M2LError, match="not DATA_DIR"):
        data_root(tmp_path / "elsewhere/manifest.jsonl")


def test_manifest_files_resolve_own_folder_then_data_root(tmp_path: Path) -> None:
    data = tmp_path / "DATA"
    (data / "music/train/pkg").mkdir(parents=True)
    (data / "music/train/pkg/a.ogg").write_bytes(b"")
    (data / "music/train/local.wav").write_bytes(b"")
    manifest = _write(
        data / "music/train/manifest.jsonl",
        json.dumps(GOOD),
        json.dumps({"path": "./local.wav"}),
        json.dumps({"path": str(tmp_path / "abs" / "b.wav")}),
        json.dumps({"path": "music/train/pkg/gone.ogg"}),
    )
    files = manifest_files(manifest)
    assert [f.where for f in files] == [f"{manifest}:{n}" for n in (1, 2, 3, 4)]
    assert [f.name for f in files] == [
        "music/train/pkg/a.ogg",
        "local.wav",
        (tmp_path / "abs/b.wav").as_posix().lstrip("/"),
        "music/train/pkg/gone.ogg",
    ]
    assert files[0].path == data / "music/train/pkg/a.ogg"  # DATA_DIR of the fetched layout
    assert files[1].path == data / "music/train/local.wav"  # the manifest's own folder
    assert files[2].path == tmp_path / "abs/b.wav"
    assert files[3].path == data / "music/train/music/train/pkg/gone.ogg"  # missing: the first place
    assert manifest_files(_write(tmp_path / "empty.jsonl", "")) == []


@pytest.mark.parametrize(
    "row, message",
    [
        ({"path": ""}, "field 'path' must be a file path"),
        ({"path": 3}, "field 'path' must be a file path"),
        ({"duration": 3}, "missing field 'path'"),
        ({"path": "a/../../etc/passwd"}, "must not contain '..'"),
        ({"path": "/"}, "must name a file"),
    ],
)
def test_manifest_files_refuse_bad_paths_naming_the_line(tmp_path: Path, row: dict, message: str) -> None:
    path = _write(tmp_path / "list.jsonl", json.dumps({"path": "ok.wav"}), json.dumps(row))
    with pytest.raises(M2LError) as info:
        manifest_files(path)
    assert str(info.value).startswith(f"{path}:2: ") and message in str(info.value)


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["data", "fetch", str(tmp_path), "--what", "music,video"]) == 2
    assert "--what" in capsys.readouterr().err
    assert main(["data"]) == 2


def test_cli_reports_missing_tools_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["data", "fetch", str(tmp_path / "data"), "--what", "speech", "-q"]) == 1
    out, err = capsys.readouterr()
    assert err.strip() == (
        "m2l: error: apt-get not found: `m2l data fetch` needs a Debian or Ubuntu "
        "system (apt-get and dpkg-deb)"
    )
    assert out == ""
