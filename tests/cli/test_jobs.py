"""`m2l.cli.jobs`: folders walked and mirrored, outputs resolved and guarded, one line per bad input."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_testing import run, without_untrained_warning, write_tone
from m2l_testing import assert_one_line_error

from m2l.audio.extensions import AUDIO_EXTENSIONS
from m2l.cli import main
from m2l.cli.jobs import Job, check_format_conflict, resolve_jobs
from m2l.errors import M2LError
from m2l.latents.index import read_index


def test_reconstruct_tree_mirrors_outputs(tmp_path, capsys, model):
    root = tmp_path / "music"
    write_tone(root / "top.wav")
    write_tone(root / "a" / "x.WAV", channels=2)
    write_tone(root / "a" / "b" / "y.flac", rate=22050)
    (root / "a" / "notes.txt").write_text("not audio")
    write_tone(root / ".hidden" / "z.wav")
    out = tmp_path / "out"
    code, _, err = run(capsys, "reconstruct", root, "-o", out, "--format", "flac", *model)
    assert code == 0, err
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a/b/y.flac", "a/x.flac", "top.flac"]
    for rel, channels in (("top.flac", 1), ("a/x.flac", 2), ("a/b/y.flac", 1)):
        info = sf.info(out / rel)
        assert info.samplerate == 44100 and info.channels == channels
    # the 22.05 kHz input comes back at the model rate with the resampled length
    assert sf.info(out / "a/b/y.flac").frames == 22050


def test_output_folder_inside_input_is_not_walked(tmp_path, capsys, model):
    root = tmp_path / "music"
    write_tone(root / "a.wav")
    code, _, err = run(capsys, "reconstruct", root, "-o", root / "rec", *model)
    assert code == 0, err
    code, _, err = run(capsys, "reconstruct", root, "-o", root / "rec", "--force", *model)
    assert code == 0, err
    assert not (root / "rec" / "rec").exists()


def test_refuses_overwrite_without_force(tmp_path, capsys, model):
    src = write_tone(tmp_path / "a.wav")
    out = tmp_path / "lat"
    assert run(capsys, "encode", src, "-o", out, *model)[0] == 0
    before = (out / "a.m2l").read_bytes()
    code, _, err = run(capsys, "encode", src, "-o", out, *model)
    assert code == 3  # nothing failed, an output in the folder existed (see the test below)
    assert_one_line_error(err, str(out / "a.m2l"))
    assert "--force" in err
    assert (out / "a.m2l").read_bytes() == before
    code, _, err = run(capsys, "encode", src, "-o", out, "--force", *model)
    assert code == 0, err


def test_rerunning_a_folder_job_counts_finished_outputs_as_existing(tmp_path, capsys, model):
    """Re-running an interrupted folder job without --skip-existing: each finished output is one
    line whose hint names --skip-existing, and the summary counts them as "already existed", not
    as failed.

    Exit code: 3 (`EXIT_OUTPUTS_EXIST`) when nothing failed but outputs existed. Not 1, which says
    that an input failed (the user's data is fine), and not 0, since outputs the user asked for
    were not written and are not verified either (they may be from another model or damaged):
    `encode --pack` and `m2l ... && next` must not go on. A real failure in the same run still
    makes it 1.
    """
    for name in ("a", "b", "c"):
        write_tone(tmp_path / "in" / f"{name}.wav", seconds=0.3)
    out = tmp_path / "out"
    assert run(capsys, "encode", tmp_path / "in", "-o", out, *model)[0] == 0
    (out / "c.m2l").unlink()  # as if the first run had been interrupted
    loud = model[:-1]  # not --quiet
    code, _, err = run(capsys, "encode", tmp_path / "in", "-o", out, *loud)
    assert code == 3, err
    lines = err.strip().splitlines()
    hint = "already exists (pass --skip-existing to keep it, --force to overwrite)"
    assert lines[:2] == [f"m2l: error: {out / name}: {hint}" for name in ("a.m2l", "b.m2l")]
    assert lines[-1].startswith(f"m2l: encoded 1 of 3 files, 2 already existed into {out}: "), err
    assert "failed" not in err and (out / "c.m2l").is_file()
    (out / "c.m2l").unlink()
    (tmp_path / "in" / "d.wav").write_bytes(b"RIFF junk")  # a real failure as well
    code, _, err = run(capsys, "encode", tmp_path / "in", "-o", out, *loud)
    assert code == 1, err
    assert ": encoded 1 of 4 files, 2 already existed, 1 failed into " in err.strip().splitlines()[-1]


def test_a_missing_input_is_named_as_missing_whatever_the_output_looks_like(tmp_path, capsys, model):
    tone = write_tone(tmp_path / "tone.wav", seconds=0.3)
    cases = [
        ("reconstruct", "nosuch.wav", "out.wav"),
        ("encode", "nosuch.wav", "x.m2l"),
        ("decode", "nosuch.m2l", "y.wav"),
        ("encode", "nosuch.wav", "folder"),
    ]
    for command, missing, out in cases:
        code, _, err = run(capsys, command, tmp_path / missing, "-o", tmp_path / out, *model)
        assert code == 1, err
        assert err == f"m2l: error: {tmp_path / missing}: no such file or directory\n", command
        assert not (tmp_path / out).exists()
    # next to an input that exists, the missing one is still what is reported
    code, _, err = run(capsys, "encode", tone, tmp_path / "nosuch.wav", "-o", tmp_path / "x.m2l", *model)
    assert code == 1 and err == f"m2l: error: {tmp_path / 'nosuch.wav'}: no such file or directory\n"


def _bad_inputs(tmp_path: Path, make_latents) -> dict[str, tuple[str, Path]]:
    rng = np.random.default_rng(0)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    three = write_tone(tmp_path / "three.wav", channels=3)
    tampered = make_latents("tampered")
    data = bytearray(tampered.read_bytes())
    for i in range(len(data) - 40, len(data) - 20):
        data[i] ^= 0x5A
    tampered.write_bytes(bytes(data))
    truncated = make_latents("truncated")
    truncated.write_bytes(truncated.read_bytes()[:-100])
    return {
        "corrupt": ("encode", corrupt),
        "empty": ("encode", empty),
        "three_channels": ("encode", three),
        "missing": ("encode", tmp_path / "missing.wav"),
        "tampered": ("decode", tampered),
        "truncated": ("decode", truncated),
    }


@pytest.fixture()
def make_latents(tmp_path, capfd, model):
    src = write_tone(tmp_path / "src" / "good.wav", seconds=0.3)

    def make(name: str) -> Path:
        out = tmp_path / f"{name}.m2l"
        assert run(capfd, "encode", src, "-o", out, *model)[0] == 0
        return out

    return make


@pytest.mark.parametrize("case", ["corrupt", "empty", "three_channels", "missing", "tampered", "truncated"])
def test_bad_input_gives_one_line_error(tmp_path, capfd, model, make_latents, case):
    command, path = _bad_inputs(tmp_path, make_latents)[case]
    capfd.readouterr()
    code, out, err = run(capfd, command, path, "-o", tmp_path / "out", *model)
    assert code == 1
    assert_one_line_error(err, str(path))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_file_does_not_stop_the_others(tmp_path, capsys, model):
    root = tmp_path / "in"
    write_tone(root / "a.wav")
    (root / "b.wav").write_bytes(b"RIFF junk")
    write_tone(root / "c.wav")
    code, _, err = run(capsys, "encode", root, "-o", tmp_path / "out", *model)
    assert code == 1
    assert_one_line_error(err, str(root / "b.wav"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.m2l", "c.m2l"]


def test_usage_and_resolution_errors(tmp_path, capsys, model):
    assert main(["encode", str(tmp_path)]) == 2  # no -o
    capsys.readouterr()
    assert main(["decode", "x.m2l", "-o", "o", "--steps", "0"]) == 2
    capsys.readouterr()
    assert main(["nonsense"]) == 2
    capsys.readouterr()
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    code, _, err = run(capsys, "encode", empty_dir, "-o", tmp_path / "out", *model)
    assert code == 1
    assert_one_line_error(err, str(empty_dir))
    # a.wav and a.flac in one folder would both become a.m2l
    write_tone(tmp_path / "clash" / "a.wav")
    write_tone(tmp_path / "clash" / "a.flac")
    code, _, err = run(capsys, "encode", tmp_path / "clash", "-o", tmp_path / "out", *model)
    assert code == 1
    assert_one_line_error(err, "a.m2l")
    assert not (tmp_path / "out").exists()
    # several inputs need an output folder, not a file name
    code, _, err = run(
        capsys,
        "encode",
        tmp_path / "clash" / "a.wav",
        tmp_path / "clash" / "a.flac",
        "-o",
        tmp_path / "both.m2l",
        *model,
    )
    assert code == 1
    assert_one_line_error(err, "both.m2l")
    assert not (tmp_path / "both.m2l").exists()


def test_resolve_jobs_maps_inputs_to_outputs(tmp_path):
    one = write_tone(tmp_path / "in" / "one.wav")
    two = write_tone(tmp_path / "in" / "sub" / "two.flac")
    suffixes = frozenset({".m2l"})
    jobs, errors = resolve_jobs(
        [str(one)], str(tmp_path / "x.m2l"), AUDIO_EXTENSIONS, suffixes, ".m2l", "audio"
    )
    assert errors == [] and jobs == [Job(one, tmp_path / "x.m2l")]
    out = tmp_path / "out"
    jobs, errors = resolve_jobs(
        [str(tmp_path / "in"), str(one)], str(out), AUDIO_EXTENSIONS, suffixes, ".m2l", "audio"
    )
    assert errors == []  # one.wav named twice is done once
    assert jobs == [Job(one, out / "one.m2l"), Job(two, out / "sub" / "two.m2l")]
    jobs, errors = resolve_jobs(
        [str(tmp_path / "missing.wav")], str(out), AUDIO_EXTENSIONS, suffixes, ".m2l", "audio"
    )
    assert jobs == [] and errors == [f"{tmp_path / 'missing.wav'}: no such file or directory"]


def test_an_output_with_an_unknown_audio_suffix_is_refused_not_made_a_folder(tmp_path):
    one = write_tone(tmp_path / "one.wav")
    audio = frozenset({".wav", ".flac"})
    jobs, errors = resolve_jobs(
        [str(one)], str(tmp_path / "out.mp4"), frozenset({".m2l"}), audio, ".wav", ".m2l"
    )
    assert jobs == [] and len(errors) == 1
    assert errors[0].startswith(f"{tmp_path / 'out.mp4'}: unsupported output format '.mp4' (use .flac, .wav;")
    (tmp_path / "take.2").mkdir()  # an existing folder with a dot in its name is still a folder
    jobs, errors = resolve_jobs(
        [str(one)], str(tmp_path / "take.2"), frozenset({".m2l"}), audio, ".wav", ".m2l"
    )
    assert errors == [] and jobs == [Job(one, tmp_path / "take.2" / "one.wav")]


def test_format_conflict_is_refused(tmp_path):
    src = write_tone(tmp_path / "a.wav")
    out = tmp_path / "a.wav.out.wav"
    jobs = [Job(src, out)]
    check_format_conflict(argparse.Namespace(output=str(out), format="wav"), jobs)
    check_format_conflict(argparse.Namespace(output=str(out), format=None), jobs)
    with pytest.raises(M2LError, match="does not match --format flac"):
        check_format_conflict(argparse.Namespace(output=str(out), format="flac"), jobs)


def test_a_folder_with_a_fifo_or_a_link_loop_is_encoded_but_fails_the_run(tmp_path, capsys, model):
    """The job did not encode everything it was given: one error line per input that is not a
    regular file, the summary counts them, exit 1; the regular files are encoded."""
    src = tmp_path / "in"
    write_tone(src / "good.wav", seconds=0.3)
    os.mkfifo(src / "pipe.wav")
    (src / "loop.wav").symlink_to(src / "loop.wav")
    (src / "sub").mkdir()
    (src / "sub" / "up").symlink_to(src, target_is_directory=True)  # a folder loop: not an input
    code, _, err = run(capsys, "encode", src, "-o", tmp_path / "lat", *model[:-1])
    assert code == 1, err
    assert sorted(p.name for p in (tmp_path / "lat").rglob("*.m2l")) == ["good.m2l"]
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("m2l: error: ")]
    assert len(errors) == 2 and not any(line.startswith("m2l: warning: ") for line in lines)
    assert f"{src / 'pipe.wav'}: is a named pipe (FIFO), not a regular file; skipped" in errors[1]
    assert str(src / "loop.wav") in errors[0]
    assert ": encoded 1 of 3 files, 2 skipped (not a regular file) into " in lines[-1], err


def test_a_bar_over_the_windows_of_one_file_on_a_terminal_only(tmp_path, capsys, monkeypatch, model):
    from m2l.cli import report

    src = write_tone(tmp_path / "long.wav", seconds=3.0)
    loud = [*model[:-1], "--window", "1"]  # not --quiet
    heard: list[tuple[str, int, int]] = []
    drawn = report.WithinFileBar.__call__

    def spy(self, task, done, total):
        heard.append((task, done, total))
        drawn(self, task, done, total)

    monkeypatch.setattr(report.WithinFileBar, "__call__", spy)
    code, _, err = run(capsys, "reconstruct", src, "-o", tmp_path / "a.wav", *loud)  # not a terminal
    assert code == 0 and heard == [] and "decoding" not in err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = run(capsys, "reconstruct", src, "-o", tmp_path / "q.wav", *loud, "--quiet")
    assert code == 0 and heard == [] and without_untrained_warning(err) == ""  # --quiet: no bar, no summary
    code, _, err = run(capsys, "reconstruct", src, "-o", tmp_path / "b.wav", *loud)
    assert code == 0, err
    windows = heard[0][2]
    assert windows >= 3 and heard[0] == ("encoding", 0, windows)
    assert [h for h in heard if h[0] == "decoding"] == [("decoding", k, windows) for k in range(windows + 1)]
    assert "encoding:   0%|" in err and f"| 0/{windows} [" in err and "decoding:" in err  # on stderr


def _manifest(path: Path, *paths: str | Path, extra: dict | None = None) -> Path:
    rows = [{"path": str(p), **(extra or {})} for p in paths]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_resolve_jobs_reads_manifests_and_mirrors_their_paths(tmp_path):
    a = write_tone(tmp_path / "lists" / "music" / "a.wav")
    b = write_tone(tmp_path / "elsewhere" / "b.flac")
    listing = _manifest(tmp_path / "lists" / "corpus.jsonl", "music/a.wav", b, "music/gone.wav")
    args = (AUDIO_EXTENSIONS, frozenset({".m2l"}), ".m2l", "audio")
    out = tmp_path / "out"
    jobs, errors = resolve_jobs([str(listing)], str(out), *args, manifests=True)
    assert errors == []
    assert jobs == [
        Job(a, out / "music" / "a.m2l"),
        Job(b, out / b.relative_to(b.anchor).with_suffix(".m2l")),
        Job(tmp_path / "lists" / "music" / "gone.wav", out / "music" / "gone.m2l"),  # fails when run
    ]
    # a manifest always means an output folder; without `manifests` it is just a file
    jobs, errors = resolve_jobs([str(listing)], str(tmp_path / "x.m2l"), *args, manifests=True)
    assert jobs == [] and errors[0].startswith(f"{tmp_path / 'x.m2l'}: looks like a file;")
    assert resolve_jobs([str(listing)], str(tmp_path / "x.m2l"), *args)[0] == [
        Job(listing, tmp_path / "x.m2l")
    ]
    empty = _manifest(tmp_path / "empty.jsonl")
    jobs, errors = resolve_jobs([str(empty), str(listing)], str(out), *args, manifests=True)
    assert errors == [f"{empty}: the manifest lists no files"]


def test_encode_a_manifest_with_a_missing_file_and_a_bad_one(tmp_path, capsys, model):
    write_tone(tmp_path / "set" / "d1" / "a.wav")
    write_tone(tmp_path / "set" / "b.wav", channels=2)
    listing = _manifest(tmp_path / "set" / "list.jsonl", "d1/a.wav", "missing.wav", "b.wav")
    out = tmp_path / "out"
    code, _, err = run(capsys, "encode", listing, "-o", out, *model)
    assert code == 1
    assert_one_line_error(err, str(tmp_path / "set" / "missing.wav"))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.m2l")) == ["b.m2l", "d1/a.m2l"]
    bad = _manifest(tmp_path / "bad.jsonl", "ok.wav", "../up.wav")
    code, _, err = run(capsys, "encode", bad, "-o", tmp_path / "out2", *model)
    assert code == 1
    assert_one_line_error(err, f"{bad}:2", "'..'")
    assert not (tmp_path / "out2").exists()


def test_encode_a_manifest_with_pack_copies_its_rows_into_the_index(tmp_path, capsys, model):
    write_tone(tmp_path / "DATA" / "music" / "test" / "pkg" / "a.wav")
    write_tone(tmp_path / "DATA" / "music" / "test" / "pkg" / "b.flac", rate=22050)
    listing = _manifest(
        tmp_path / "DATA" / "music" / "test" / "manifest.jsonl",
        "music/test/pkg/a.wav",
        "music/test/pkg/b.flac",
        extra={"licence": "CC0"},
    )
    out, dataset = tmp_path / "lat", tmp_path / "ds"
    code, _, err = run(capsys, "encode", listing, "-o", out, "--pack", dataset, *model)
    assert code == 0, err
    assert (out / "music" / "test" / "pkg" / "b.m2l").is_file()
    entries = read_index(dataset)
    assert [(e.source, e.manifest) for e in entries] == [
        ("music/test/pkg/a.m2l", {"path": "music/test/pkg/a.wav", "licence": "CC0"}),
        ("music/test/pkg/b.m2l", {"path": "music/test/pkg/b.flac", "licence": "CC0"}),
    ]
    # reconstruct takes the manifest too, mirroring the same tree
    code, _, err = run(capsys, "reconstruct", listing, "-o", tmp_path / "rec", *model)
    assert code == 0, err
    assert sf.info(tmp_path / "rec" / "music" / "test" / "pkg" / "b.wav").samplerate == 44100
