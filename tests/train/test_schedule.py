"""`m2l.train.schedule`: the learning-rate and teacher-offset schedules and their extension."""

import pytest
from train_testing import fast_config

from m2l.errors import M2LError
from m2l.train.schedule import delta_at, extend, lr_at


def test_lr_schedule_warms_up_then_decays_to_min():
    cfg = fast_config(steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-5)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lr_at(100, cfg) == pytest.approx(1e-5)


def test_extending_mid_run_continues_both_schedules_from_their_current_value():
    run = fast_config(steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-5, delta_start=0.1, delta_end=0.001)
    longer = extend(run, 200, at=60)
    assert longer.steps == 200 and longer.extensions == ((60, 100),)
    for schedule, final in ((lr_at, 1e-5), (delta_at, 0.001)):
        assert [schedule(s, longer) for s in range(61)] == [schedule(s, run) for s in range(61)]  # no jump
        tail = [schedule(s, longer) for s in range(60, 201)]
        assert all(a > b for a, b in zip(tail, tail[1:], strict=False))  # still decaying, slower
        assert tail[-1] == pytest.approx(final) and schedule(500, longer) == pytest.approx(final)
        assert schedule(80, longer) > schedule(80, run)


def test_extending_a_finished_run_holds_the_final_values_and_warm_up_is_untouched():
    run = fast_config(steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-5)
    done = extend(run, 150, at=100)
    assert all(lr_at(s, done) == pytest.approx(1e-5) for s in range(100, 151))
    assert all(delta_at(s, done) == pytest.approx(run.delta_end) for s in range(100, 151))
    early = extend(run, 150, at=5)  # in the warm-up, which does not depend on steps
    assert [lr_at(s, early) for s in range(11)] == [lr_at(s, run) for s in range(11)]
    assert lr_at(150, early) == pytest.approx(1e-5)
    with pytest.raises(M2LError, match="cannot extend"):
        extend(run, 100, at=50)


def test_a_second_extension_continues_the_first_and_older_steps_replay_unchanged():
    run = fast_config(steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-5)
    once = extend(run, 200, at=60)
    twice = extend(once, 400, at=150)
    assert twice.extensions == ((60, 100), (150, 200))
    assert [lr_at(s, twice) for s in range(151)] == [lr_at(s, once) for s in range(151)]
    assert lr_at(400, twice) == pytest.approx(1e-5) and lr_at(151, twice) < lr_at(150, twice)
