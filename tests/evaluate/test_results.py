"""The shared results-file helpers: preamble and JSON-safe numbers."""

from __future__ import annotations

import datetime
import json
import math

import m2l
from m2l.evaluate.results import finite_or_none, json_safe, results_preamble


def test_preamble_names_format_version_and_command() -> None:
    head = results_preamble("m2l-test", 3, "m2l eval x")
    assert list(head) == ["format", "version", "m2l_version", "created", "command"]
    assert (head["format"], head["version"], head["command"]) == ("m2l-test", 3, "m2l eval x")
    assert head["m2l_version"] == m2l.__version__
    created = datetime.datetime.fromisoformat(head["created"])
    assert created.tzinfo is not None
    assert abs((datetime.datetime.now(datetime.UTC) - created).total_seconds()) < 60


def test_non_finite_numbers_become_null_at_any_depth() -> None:
    assert finite_or_none(None) is None and finite_or_none(math.nan) is None
    assert finite_or_none(-math.inf) is None and finite_or_none(2) == 2.0
    safe = json_safe({"a": [1.5, math.nan, (math.inf, "x")], 3: {"b": -math.inf, "c": 0}})
    assert safe == {"a": [1.5, None, [None, "x"]], "3": {"b": None, "c": 0}}
    json.dumps(safe, allow_nan=False)  # raises on any NaN left
