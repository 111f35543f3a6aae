"""`m2l.generate.model`: configs and presets, shapes, adaLN-Zero at initialisation, context and
class inputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from generate_testing import tiny_generator
from m2l_testing import assert_one_line_error

from m2l.errors import M2LError
from m2l.generate.cli import GENERATOR_OBJECTIVES, GENERATOR_PRESET_NAMES
from m2l.generate.model import (
    GENERATOR_PRESETS,
    OBJECTIVES,
    Block,
    Generator,
    GeneratorConfig,
    generator_config_from_dict,
    generator_preset,
    parameter_count,
    rotary,
    rotate,
)

# Exact parameter counts (reported with the generator); a change of architecture must update them.
PARAMS = {"gen-tiny": 174_400, "gen-small": 7_397_440}


@pytest.mark.parametrize("name", sorted(GENERATOR_PRESETS))
def test_presets_build_with_their_parameter_counts(name):
    cfg = generator_preset(name)
    assert cfg.name == name and parameter_count(Generator(cfg)) == PARAMS[name]


def test_presets_are_covered_and_changes_are_checked():
    assert set(GENERATOR_PRESETS) == set(PARAMS)
    assert generator_preset("gen-tiny", num_classes=5).null_label == 5
    with pytest.raises(M2LError) as err:
        generator_preset("gen-huge")
    assert_one_line_error(err, "gen-huge", "gen-small", "gen-tiny")
    with pytest.raises(M2LError) as err:
        generator_preset("gen-tiny", colour=3)
    assert_one_line_error(err, "colour")


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"width": 0}, "width"),
        ({"depth": 2.0}, "depth"),
        ({"heads": True}, "heads"),
        ({"frames": 2}, "frames"),
        ({"width": 90, "heads": 6}, "rotary"),  # heads of 15 channels: no rotary pairs
        ({"time_channels": 63}, "time_channels"),
        ({"num_classes": -1}, "num_classes"),
        ({"name": ""}, "name"),
    ],
)
def test_config_checks_every_field(changes, named):
    with pytest.raises(M2LError) as err:
        dataclasses.replace(GeneratorConfig(), **changes)
    assert_one_line_error(err, named)


def test_shapes_with_and_without_context_and_labels():
    model = tiny_generator(num_classes=3)
    x, t = torch.randn(2, 64, 16), torch.rand(2)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :5] = True
    assert model(x, t).shape == (2, 64, 16)
    assert model(x, t, mask, torch.randn(2, 64, 16), torch.tensor([0, 3])).shape == (2, 64, 16)
    assert model(torch.randn(1, 64, 40), torch.rand(1)).shape == (1, 64, 40)  # any window length


def test_output_is_zero_and_blocks_are_the_identity_at_initialisation():
    model = tiny_generator(perturbed=False, num_classes=2)
    x, t = torch.randn(3, 64, 16), torch.rand(3)
    assert torch.equal(model(x, t, label=torch.tensor([0, 1, 2])), torch.zeros(3, 64, 16))
    block, h = Block(32, 2, 4), torch.randn(3, 16, 32)
    cos, sin = rotary(16, 16, h.device)
    assert torch.equal(block(h, torch.randn(3, 32), cos, sin), h)


def test_context_frames_enter_clean_whatever_the_noisy_input_holds_there():
    model, t = tiny_generator(), torch.rand(2)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, 4:9] = True
    context, x = torch.randn(2, 64, 16), torch.randn(2, 64, 16)
    other = torch.where(mask[:, None], torch.randn(2, 64, 16), x)
    out = model(x, t, mask, context)
    assert torch.allclose(out, model(other, t, mask, context))
    assert not torch.allclose(out, model(x, t))  # and the context is seen


def test_time_and_label_condition_the_output():
    model, x = tiny_generator(num_classes=3), torch.randn(2, 64, 16)
    t = torch.tensor([0.2, 0.7])
    assert not torch.allclose(model(x, t), model(x, t.flip(0)))
    label = torch.tensor([0, 1])
    assert not torch.allclose(model(x, t, label=label), model(x, t, label=label + 1))
    assert torch.equal(model(x, t), model(x, t, label=torch.tensor([3, 3])))  # no label: the null class


def test_rotary_scores_depend_on_frame_offsets_only():
    cos, sin = rotary(12, 8, torch.device("cpu"))
    q, k = torch.randn(8), torch.randn(8)
    rq = rotate(q.expand(1, 1, 12, 8), cos, sin)[0, 0]  # [12, 8]
    rk = rotate(k.expand(1, 1, 12, 8), cos, sin)[0, 0]
    scores = rq @ rk.T  # [12, 12]
    assert torch.allclose(scores.diagonal(3)[:-1], scores.diagonal(3)[1:], atol=1e-5)
    assert torch.allclose(rq.norm(dim=-1), q.norm().expand(12))


def test_bad_labels_and_missing_context_are_one_line_errors():
    with pytest.raises(M2LError) as err:
        tiny_generator()(torch.randn(1, 64, 16), torch.rand(1), label=torch.tensor([0]))
    assert_one_line_error(err, "no classes")
    with pytest.raises(M2LError) as err:
        tiny_generator(num_classes=2)(torch.randn(1, 64, 16), torch.rand(1), label=torch.tensor([3]))
    assert_one_line_error(err, "0..2")
    with pytest.raises(M2LError) as err:
        tiny_generator()(torch.randn(1, 64, 16), torch.rand(1), torch.ones(1, 16, dtype=torch.bool))
    assert_one_line_error(err, "context")


def test_the_objective_is_checked_and_an_older_stored_config_reads_as_flow():
    assert (
        GeneratorConfig().objective == "flow"
        and generator_preset("gen-tiny", objective="edm").objective == "edm"
    )
    with pytest.raises(M2LError) as err:
        generator_preset("gen-tiny", objective="score")
    assert_one_line_error(err, "objective", "flow, edm", "score")
    stored = dataclasses.asdict(generator_preset("gen-tiny"))
    del stored["objective"]
    assert generator_config_from_dict(stored, "old") == generator_preset("gen-tiny")
    with pytest.raises(M2LError) as err:
        generator_config_from_dict({**stored, "colour": 1}, "new")
    assert_one_line_error(err, "new", "malformed generator config", "colour")


def test_the_command_line_knows_the_presets_and_objectives():
    assert set(GENERATOR_PRESET_NAMES) == set(GENERATOR_PRESETS) and GENERATOR_OBJECTIVES == OBJECTIVES
