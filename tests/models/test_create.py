"""`m2l.models.create`: the one builder of networks from configs, untrained or with weights."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from m2l_testing import random_model

from m2l.config import preset
from m2l.errors import M2LError
from m2l.models import create

SRC = Path(__file__).parents[2] / "src" / "m2l"


@pytest.mark.parametrize("name", ["m2l-v1-tiny", "m2l-v2-tiny"])
def test_create_with_a_state_holds_exactly_those_weights(name):
    trained = random_model(name, seed=3)
    built = create(preset(name), trained.state_dict(), source="x.safetensors")
    assert type(built) is type(trained)
    mine, theirs = built.state_dict(), trained.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_a_state_that_does_not_fit_is_refused_naming_its_source():
    state = random_model("m2l-v1-tiny").state_dict()
    missing = dict(list(state.items())[1:])
    with pytest.raises(M2LError, match=r"^x\.safetensors: weights do not fit m2l-v1-tiny: .*1 missing"):
        create(preset("m2l-v1-tiny"), missing, source="x.safetensors")
    first = next(iter(state))
    wrong = {**state, first: torch.zeros(1, *state[first].shape)}
    with pytest.raises(M2LError, match=f"tensor {first} has shape"):
        create(preset("m2l-v1-tiny"), wrong, source="x.safetensors")


def test_no_network_is_constructed_outside_the_models_package():
    """Everything else builds networks through `create` (the classes stay importable for type
    checks and tests)."""
    classes = {"Music2Latent", "Music2Latent2"}
    calls = []
    for path in sorted(SRC.rglob("*.py")):
        if path.parent.name == "models":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name in classes:
                    calls.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert calls == []
