"""`m2l.config.resolve_precision`: the one resolver of precision choices, and its two meanings of "auto"."""

from __future__ import annotations

import pytest
import torch

from m2l.config import PRECISIONS, check_precision, resolve_precision
from m2l.errors import M2LError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a cuda device object needs no GPU


@pytest.fixture
def bf16_gpu(monkeypatch):
    """Make torch report whether the (pretended) CUDA GPU supports bf16: call it with a bool."""

    def set_support(supported: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)

    return set_support


@pytest.mark.parametrize("training", [False, True])
def test_auto_is_no_autocast_off_cuda(training):
    assert resolve_precision("auto", CPU, training=training) is None
    assert resolve_precision("auto", torch.device("mps"), training=training) is None


@pytest.mark.parametrize("training", [False, True])
def test_auto_is_bf16_on_a_cuda_gpu_that_has_it(bf16_gpu, training):
    bf16_gpu(True)
    assert resolve_precision("auto", CUDA, training=training) == torch.bfloat16


def test_auto_on_a_cuda_gpu_without_bf16_is_fp32_for_inference_and_fp16_for_training(bf16_gpu):
    bf16_gpu(False)
    assert resolve_precision("auto", CUDA) is None
    assert resolve_precision("auto", CUDA, training=True) == torch.float16


@pytest.mark.parametrize("device", [CPU, CUDA])
@pytest.mark.parametrize("training", [False, True])
def test_explicit_choices_mean_the_same_for_both_uses(device, training):
    assert resolve_precision("fp32", device, training=training) is None
    assert resolve_precision("bf16", device, training=training) == torch.bfloat16


def test_fp16_autocasts_for_inference_anywhere_but_trains_only_on_cuda():
    assert resolve_precision("fp16", CPU) == torch.float16
    assert resolve_precision("fp16", CUDA, training=True) == torch.float16
    with pytest.raises(M2LError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU, training=True)


@pytest.mark.parametrize("choice", ["fp64", "BF16", "", None])
def test_an_unknown_choice_is_one_line_naming_the_choices(choice):
    with pytest.raises(M2LError, match="precision must be auto, fp32, bf16 or fp16"):
        resolve_precision(choice, CPU)
    with pytest.raises(M2LError, match="precision must be"):
        check_precision(choice)


def test_the_codec_commands_and_the_training_config_take_the_same_choices():
    from m2l.cli.app import build_parser
    from m2l.train.config import TrainConfig

    parser = build_parser()
    for choice in PRECISIONS:
        assert (
            parser.parse_args(["encode", "in.wav", "-o", "out.m2l", "--precision", choice]).precision
            == choice
        )
        assert TrainConfig(precision=choice).precision == choice
    with pytest.raises(SystemExit):
        parser.parse_args(["encode", "in.wav", "-o", "out.m2l", "--precision", "fp64"])
    with pytest.raises(M2LError, match="precision must be"):
        TrainConfig(precision="fp64")
