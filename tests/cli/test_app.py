"""`m2l.cli.app`: the command registry, exit codes, `python -m m2l`, and --help without torch."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from m2l.cli import COMMANDS


def test_commands_table_is_extensible():
    assert {"encode", "decode", "reconstruct", "info", "convert"} <= set(COMMANDS)
    for cmd in COMMANDS.values():
        assert callable(cmd.add_arguments) and callable(cmd.run)


def test_every_command_with_a_quiet_option_takes_all_its_spellings(capsys):
    """-q/--quiet and --no-progress (what `m2l train` had) are one option wherever either is."""
    from m2l.cli import build_parser, main

    argvs = [[name, "--help"] for name in COMMANDS if name != "data"] + [["data", "fetch", "--help"]]
    with_quiet = []
    for argv in argvs:
        assert main(argv) == 0
        text = " ".join(capsys.readouterr().out.split())
        if "--quiet" in text or "--no-progress" in text:
            with_quiet.append(argv[0])
            assert "-q, --quiet, --no-progress " in text, argv
    assert {"encode", "decode", "reconstruct", "train", "pack", "probe", "data", "eval"} <= set(with_quiet)
    for argv in (["encode", "a.wav", "-o", "o"], ["pack", "lat", "-o", "d"], ["data", "fetch", "d"]):
        assert build_parser().parse_args([*argv, "--no-progress"]).quiet is True
        assert build_parser().parse_args([*argv, "-q"]).quiet is True


def test_an_os_error_from_any_command_is_one_line(monkeypatch, capsys):
    from m2l.cli import app

    def failing(args):
        raise PermissionError(13, "Permission denied", "/runs/x/config.json")

    info = app.COMMANDS["info"]
    monkeypatch.setitem(app.COMMANDS, "info", app.Command(info.help, info.add_arguments, failing))
    assert app.main(["info", "whatever.m2l"]) == 1
    assert capsys.readouterr().err == "m2l: error: /runs/x/config.json: Permission denied\n"


def test_a_gpu_out_of_memory_is_one_line_and_other_runtime_errors_are_not_hidden(monkeypatch, capsys):
    import pytest
    import torch

    from m2l.cli import app

    def command_raising(err: Exception) -> None:
        def failing(args):
            raise err

        info = app.COMMANDS["info"]
        monkeypatch.setitem(app.COMMANDS, "info", app.Command(info.help, info.add_arguments, failing))

    command_raising(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore"))
    assert app.main(["info", "whatever.m2l"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "m2l: error: CUDA out of memory. Tried to allocate 2.00 GiB more (lower --batch-size"
    )
    assert err.count("\n") == 1
    command_raising(RuntimeError("a bug"))  # not the input's fault: the traceback stays
    with pytest.raises(RuntimeError, match="a bug"):
        app.main(["info", "whatever.m2l"])


def test_python_dash_m_exit_code_and_clean_stderr(tmp_path, tiny_checkpoint):
    bad = tmp_path / "noise.wav"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "m2l",
            "encode",
            str(bad),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(tiny_checkpoint),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("m2l: model m2l-v1-tiny@")  # which model ran, one error line, the summary
    assert len(lines) == 3 and lines[1].startswith("m2l: error: ") and "noise.wav" in lines[1]
    assert lines[2].startswith("m2l: encoded 0 of 1 file, 1 failed into ")
    assert proc.stdout == ""


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)


HELP_WITHOUT_TORCH = """
import sys
from m2l.cli import COMMANDS, build_parser, main
build_parser()
argvs = [["--help"], ["--version"], *([name, "--help"] for name in COMMANDS), ["data", "fetch", "--help"]]
for argv in argvs:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 0, (argv, code)
    assert "torch" not in sys.modules, f"m2l {' '.join(argv)} imported torch"
print(len(argvs))
"""


def test_help_does_not_import_torch():
    proc = _python(HELP_WITHOUT_TORCH)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip().splitlines()[-1]) == len(COMMANDS) + 3


LAZY_PACKAGE = """
import sys
import m2l
from m2l import M2LError, __version__
assert "torch" not in sys.modules, "import m2l imported torch"
assert issubclass(M2LError, ValueError) and __version__ == m2l.__version__
assert set(m2l.__all__) <= set(dir(m2l))
try:
    m2l.no_such_name
except AttributeError:
    pass
else:
    raise AssertionError("m2l.no_such_name did not raise AttributeError")
import m2l.cli.app
from m2l.cli import main
assert callable(main) and main is m2l.cli.app.main
assert callable(m2l.load) and callable(m2l.convert)
from m2l import Codec, EncoderDecoder
from m2l.codec import Codec as Direct
assert Codec is Direct and isinstance(EncoderDecoder, type)
print("ok")
"""


def test_package_names_resolve_lazily():
    proc = _python(LAZY_PACKAGE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
