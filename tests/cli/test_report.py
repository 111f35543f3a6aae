"""`m2l.cli.report`: problems reported as one line each on stderr, naming the file they are about."""

import errno
from pathlib import Path

import pytest
from m2l_testing import assert_one_line_error

from m2l.cli.report import EXPECTED_ERRORS, describe, error, naming, one_line, show_warning
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
