import re

import pytest
from cli_testing import run
from m2l_testing import assert_one_line_error
from train_testing import train_argv


@pytest.mark.parametrize(
    "extra,code,says",
    [
        (["--device", "cuda:7"], 1, "device 'cuda:7'"),
        (["--device", "gpu"], 2, "unknown device 'gpu'"),
        (["--until", "-1"], 2, "expected a non-negative integer, got '-1'"),
        (["--set", "lr=-1"], 1, "lr must be > 0"),
        (["--set", "batchsize=2"], 1, "did you mean batch_size?"),
        (["--data", "{train}:inf"], 1, "weight must be a finite number > 0"),
        (["--extend"], 1, "holds no run to extend"),
    ],
)
def test_bad_options_fail_before_anything_is_written(audio_dirs, tmp_path, capsys, extra, code, says):
    run_dir = tmp_path / "run"
    extra = [arg.format(train=audio_dirs["train"]) for arg in extra]
    result, _, err = run(capsys, *train_argv(audio_dirs, run_dir), *extra)
    assert result == code and not run_dir.exists()
    if code == 1:
        assert_one_line_error(err, says)
    else:  # argparse: the usage line, then one error line
        assert says in err.strip().splitlines()[-1]


def test_out_must_be_a_folder(audio_dirs, tmp_path, capsys):
    (tmp_path / "file").write_text("not a run")
    result, _, err = run(capsys, *train_argv(audio_dirs, tmp_path / "file"))
    assert result == 1 and (tmp_path / "file").read_text() == "not a run"
    assert_one_line_error(err, f"{tmp_path / 'file'}: --out must be a run folder, not a file")


def test_train_ends_with_one_closing_line(audio_dirs, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run(capsys, *train_argv(audio_dirs, run_dir, "steps=2"))
    assert code == 0, err
    last = err.strip().splitlines()[-1]
    ckpts = run_dir / "checkpoints"
    assert last.startswith(
        f"m2l: trained 2 steps (step 2 of 2) in {run_dir}: newest checkpoint "
        f"{ckpts / 'step-000000002.safetensors'}, best {ckpts / 'best.safetensors'} (step 2, mel distance "
    ), last
    assert re.search(r"; \d+\.\d s wall, \d+\.\d s CPU \(run total \d+\.\d s CPU\)$", last), last
    code, out, err = run(capsys, *train_argv(audio_dirs, run_dir, "steps=2"))  # nothing left to do
    assert code == 0 and "already trained for 2 steps" in out
    assert err.strip().splitlines()[-1].startswith(f"m2l: trained 0 steps (step 2 of 2) in {run_dir}: ")


def test_train_help_and_errors_name_every_training_preset(audio_dirs, tmp_path, capsys):
    from m2l.train.cli import RECIPE_NAMES, TRAIN_PRESET_NAMES
    from m2l.train.config import RECIPES, TRAIN_PRESETS

    assert tuple(TRAIN_PRESETS) == TRAIN_PRESET_NAMES
    assert tuple(RECIPES) == RECIPE_NAMES
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0
    config_help = " ".join(out.split()).split("CONFIG training preset (")[1].split(")")[0]
    assert config_help == ", ".join(TRAIN_PRESETS)
    argv = train_argv(audio_dirs, tmp_path / "run")
    argv[1] = "tiny-v3"
    code, _, err = run(capsys, *argv)
    assert code == 1 and not (tmp_path / "run").exists()
    assert_one_line_error(err, f"tiny-v3: neither a training preset ({', '.join(TRAIN_PRESETS)})")


@pytest.mark.parametrize("spelling", ["-q", "--quiet", "--no-progress"])
def test_train_takes_every_spelling_of_quiet(spelling):
    from m2l.cli import build_parser

    args = build_parser().parse_args(["train", "tiny", "--data", "d", "--out", "o", spelling])
    assert args.quiet is True
