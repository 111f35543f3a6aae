"""`m2l.cli.args`: the shared argument types refuse every bad value with one clear message."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys

import pytest
import torch

from m2l.cli.args import (
    check_device,
    comma_choices,
    comma_subset,
    device_arg,
    finite_float,
    int_at_least,
    non_negative_float,
    non_negative_int,
    number_list,
    positive_float,
    positive_int,
    sample_rate_arg,
)
from m2l.errors import M2LError


def refused(parse, text: str) -> str:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
    return str(info.value)


def test_int_at_least():
    parse = int_at_least(3, "an integer >= 3")
    assert parse("3") == 3 and parse(" 7 ") == 7 and parse("1_000") == 1000
    for bad in ("2", "-3", "abc", "", "3.0", "nan", "inf"):
        assert refused(parse, bad) == f"expected an integer >= 3, got {bad!r}"


def test_positive_and_non_negative_int():
    assert positive_int("1") == 1 and non_negative_int("0") == 0
    assert refused(positive_int, "0") == "expected a positive integer, got '0'"
    assert refused(non_negative_int, "-1") == "expected a non-negative integer, got '-1'"
    for bad in ("1.5", "x", ""):
        refused(positive_int, bad)
        refused(non_negative_int, bad)


def test_finite_float():
    parse = finite_float("a number in [0, 1]", lambda v: 0 <= v <= 1)
    assert parse("0") == 0.0 and parse("1") == 1.0 and parse("0.25") == 0.25
    for bad in ("1.01", "-0.5", "nan", "inf", "-inf", "one", ""):
        assert refused(parse, bad) == f"expected a number in [0, 1], got {bad!r}"


def test_positive_and_non_negative_float():
    assert positive_float("0.001") == 0.001 and positive_float("1e3") == 1000.0
    assert non_negative_float("0") == 0.0
    for bad in ("0", "-1", "nan", "inf", "x"):
        refused(positive_float, bad)
    for bad in ("-0.1", "nan", "inf", "x"):
        refused(non_negative_float, bad)


def test_number_list():
    steps = number_list(int, lambda v: v >= 1, "positive integers")
    assert steps("1,2,2,4") == (1, 2, 4)
    assert steps("4, 1") == (4, 1)
    for bad in ("0,1", "1,,2", "", "1.5", "a", "-1"):
        assert refused(steps, bad) == f"expected a comma-separated list of positive integers, got {bad!r}"
    sigmas = number_list(float, lambda v: math.isfinite(v) and v >= 0, "numbers >= 0")
    assert sigmas("0.2,0.4,0.2") == (0.2, 0.4)
    for bad in ("nan", "-0.1", "0.2,inf"):
        refused(sigmas, bad)


def test_comma_choices():
    parse = comma_choices(("pitch", "pitch_class", "instrument"), "task")
    assert parse("pitch") == ["pitch"]
    assert parse(" instrument , pitch,instrument") == ["instrument", "pitch"]
    assert refused(parse, "pitch,foo,bar") == (
        "unknown task foo, bar (choose from pitch, pitch_class, instrument)"
    )
    assert refused(parse, ",") == "unknown task ',' (choose from pitch, pitch_class, instrument)"
    refused(parse, "")


def test_comma_subset():
    parse = comma_subset(("music", "speech", "notes"))
    assert parse("notes,music") == ["notes", "music"]
    assert parse("music,music") == ["music", "music"]  # kept as given
    for bad in ("music,foo", "", ",", "Music"):
        assert refused(parse, bad) == f"expected a comma-separated list of music, speech, notes, got {bad!r}"


def test_sample_rate_arg():
    assert (
        sample_rate_arg("48000") == 48000 and sample_rate_arg("keep") == sample_rate_arg(" KEEP ") == "keep"
    )
    for bad in ("0", "999", "768001", "44.1k", "44100.5", "same"):
        assert refused(sample_rate_arg, bad) == (
            f"expected a sample rate in Hz (1000..768000) or 'keep', got {bad!r}"
        )


def test_device_arg():
    for name in ("cpu", "cuda", "cuda:1", "mps"):
        assert device_arg(name) == name
    for bad in ("gpu", "cpu:x", ""):
        assert refused(device_arg, bad) == f"unknown device {bad!r} (e.g. cpu, cuda, cuda:1, mps)"


def test_check_device():
    check_device(None)
    check_device("cpu")
    with pytest.raises(M2LError, match="cuda:99"):
        check_device("cuda:99")
    if not torch.cuda.is_available():
        with pytest.raises(M2LError, match="CUDA is not available"):
            check_device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        with pytest.raises(M2LError, match="MPS is not available"):
            check_device("mps")


def test_args_is_a_torch_free_leaf():
    code = (
        "import sys\n"
        "import m2l.cli.args\n"
        "heavy = [m for m in ('torch', 'm2l.cli.app', 'm2l.train', 'm2l.evaluate', 'm2l.probe') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert proc.returncode == 0, proc.stderr
