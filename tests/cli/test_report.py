"""`m2l.cli.report`: problems reported as one line each on stderr, naming the file they are about."""

import errno
from pathlib import Path

import pytest
from m2l_testing import assert_one_line_error

from m2l.cli.report import (
    EXPECTED_ERRORS,
    audio_rate,
    describe,
    error,
    naming,
    one_line,
    show_warning,
    summary_line,
)
from m2l.errors import M2LError


def test_one_line_collapses_every_whitespace_run():
    assert one_line("  a\nb \t c\r\n\nd  ") == "a b c d"
    assert one_line(M2LError("x:\n  y")) == "x: y"
    assert one_line("") == ""


def test_error_prints_one_prefixed_line_on_stderr(capsys):
    error("bad.wav: cannot read audio\n(truncated header)")
    out, err = capsys.readouterr()
    assert out == "" and err == "m2l: error: bad.wav: cannot read audio (truncated header)\n"
    assert_one_line_error(err, "bad.wav", "(truncated header)")


def test_show_warning_prints_one_prefixed_line_on_stderr(capsys):
    show_warning(UserWarning("3 files\nunreadable"), UserWarning, "somewhere.py", 12)
    out, err = capsys.readouterr()
    assert out == "" and err == "m2l: warning: 3 files unreadable\n"


@pytest.mark.parametrize(
    "err,expected",
    [
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/a.wav"),
            "/x/a.wav: No such file or directory",
        ),
        (PermissionError(errno.EACCES, "Permission denied"), "[Errno 13] Permission denied"),  # no file name
        (OSError("disk\non fire"), "disk on fire"),
        (M2LError("a.m2l: not a latent file,\n  expected ..."), "a.m2l: not a latent file, expected ..."),
        (M2LError(""), "M2LError"),
    ],
)
def test_describe_gives_one_line_for_an_expected_error(err, expected):
    assert isinstance(err, EXPECTED_ERRORS)
    assert describe(err) == expected


def test_naming_prefixes_the_file_unless_the_message_names_one():
    a, b = Path("in/a.wav"), Path("out/a.m2l")
    assert naming("cannot read audio", a, b) == "in/a.wav: cannot read audio"
    assert naming("out/a.m2l: already exists", a, b) == "out/a.m2l: already exists"
    assert naming("in/a.wav: too short", a) == "in/a.wav: too short"


def test_the_summary_line_counts_each_kind_of_input_not_written():
    line = summary_line("encoded", 6, 1, 2.0, 1.0, "out", 1, existed=2, unreadable=1)
    assert line == (
        "m2l: encoded 1 of 6 files, 1 skipped (already done), 2 already existed, "
        "1 skipped (not a regular file), 1 failed into out: 2.0 s of audio in 1.0 s (2.0x real time)"
    )
    assert summary_line("decoded", 1, 0, 0.5, 1.0, "o.wav").startswith("m2l: decoded 1 of 1 file into o.wav:")


def test_every_command_words_an_existing_output_the_same_way(tmp_path, capsys, tiny_checkpoint):
    from cli_testing import run, write_tone
    from train_testing import save_micro_state

    model = ["--model", str(tiny_checkpoint), "--device", "cpu", "-q"]
    tone = write_tone(tmp_path / "in.wav", seconds=0.3)
    assert run(capsys, "encode", tone, "-o", tmp_path / "in.m2l", *model)[0] == 0
    state = tmp_path / "state.safetensors"
    save_micro_state(state)
    taken = tmp_path / "taken"
    commands = {
        "encode": ["encode", tone, "-o", taken.with_suffix(".m2l"), *model],
        "decode": ["decode", tmp_path / "in.m2l", "-o", taken.with_suffix(".wav"), *model],
        "reconstruct": ["reconstruct", tone, "-o", taken.with_suffix(".flac"), *model],
        "convert": ["convert", tiny_checkpoint, taken.with_suffix(".safetensors")],
        "export": ["export", state, taken.with_suffix(".ckpt")],
        "probe": ["probe", "--notes", tmp_path / "n.jsonl", "--out", tmp_path, "--tasks", "pitch"],
    }
    outputs = {
        name: argv[3] if name in ("encode", "decode", "reconstruct") else argv[2]
        for name, argv in commands.items()
    }
    outputs["probe"] = tmp_path / "probe.json"
    for name, argv in commands.items():
        out = Path(outputs[name])
        out.write_text("the user's file")
        code, _, err = run(capsys, *argv)
        assert code == 1, name
        assert err == f"m2l: error: {out}: already exists (pass --force to overwrite)\n", name
        assert out.read_text() == "the user's file", name
    code, _, err = run(capsys, "eval", "--model", tiny_checkpoint, "--data", tone, "--out", tmp_path, "-q")
    assert code == 1
    assert err == f"m2l: error: {tmp_path}: already exists and is not empty (pass --force to overwrite)\n"


def test_every_command_words_a_file_where_a_folder_belongs_the_same_way(tmp_path, capsys, tiny_checkpoint):
    from cli_testing import run, write_tone

    write_tone(tmp_path / "in" / "a.wav", seconds=0.3)
    taken = tmp_path / "taken"
    taken.write_text("a file")
    model = ["--model", str(tiny_checkpoint), "--device", "cpu", "-q"]
    commands = [
        ["encode", tmp_path / "in", "-o", taken, *model],
        ["eval", "--model", tiny_checkpoint, "--data", tmp_path / "in", "--out", taken, "-q"],
        ["probe", "--notes", tmp_path / "n.jsonl", "--out", taken, "--tasks", "pitch"],
    ]
    for argv in commands:
        code, _, err = run(capsys, *argv)
        assert code == 1, argv[0]
        assert err == f"m2l: error: {taken}: exists and is not a directory (output folder expected)\n", argv[
            0
        ]


def test_the_bars_speak_the_units_of_the_summary_line():
    assert audio_rate(7.5, 5.0) == "7.5 s of audio, 1.5x real time"
    assert audio_rate(0.0, 0.0) == "0.0 s of audio, 0.0x real time"
    assert "(1.5x real time)" in summary_line("encoded", 1, 0, 7.5, 5.0, "out")
