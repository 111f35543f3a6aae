"""Packing the encoder passes of many clips into shared batches (`m2l.packing.encode_many`)."""

import warnings

import pytest
import torch
from m2l_testing import MICRO, MICRO2, random_model, record_pass_sizes

from m2l import packing
from m2l.errors import M2LError
from m2l.loading import make_codec
from m2l.packing import encode_many


@pytest.fixture(scope="module")
def codecs():
    return {
        "v1": make_codec(random_model(MICRO), model_id="v1@test", device="cpu", window_seconds=1.0),
        "v2": make_codec(random_model(MICRO2), model_id="v2@test", device="cpu", chunk_batch=3),
    }


def clips(seed: int = 0) -> list[tuple[str, torch.Tensor, int]]:
    """Mono and stereo clips of lengths from a fraction of a window to several windows."""
    gen = torch.Generator().manual_seed(seed)
    lengths = [9000, 44100 * 3 + 123, 30000, 9000, 44100 * 2, 70000, 30000]
    return [
        (f"clip{i}", torch.randn(1 + i % 2, n, generator=gen) * 0.1, 22050 + i) for i, n in enumerate(lengths)
    ]


def spy_batches(monkeypatch) -> list[list[packing.EncodePass]]:
    """Record the passes of every batch `encode_many` runs."""
    batches: list[list[packing.EncodePass]] = []
    original = packing.run_batch

    def recording(codec, passes, features=False, limit=None):
        batches.append(list(passes))
        return original(codec, passes, features, limit)

    monkeypatch.setattr(packing, "run_batch", recording)
    return batches


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_packed_clips_get_the_latents_of_one_clip_at_a_time(codecs, version, monkeypatch):
    codec = codecs[version]
    data = clips()
    alone = {key: codec.encode_file(wave, source_sample_rate=rate) for key, wave, rate in data}
    batches = spy_batches(monkeypatch)
    # packed as on a GPU: batches of several passes, partial ones waiting for later clips
    packed = dict(
        encode_many(codec, iter(data), batch_units=4 * codec.batch_units, max_open=3, wait_to_fill=True)
    )
    assert sorted(packed) == sorted(alone)
    for key, lf in packed.items():
        ref = alone[key]
        assert lf.latents.dtype == torch.float32 and lf.latents.shape == ref.latents.shape
        # equal up to rounding: batched (multi-threaded) kernels may sum in another order
        error = ((lf.latents - ref.latents).norm() / ref.latents.norm()).item()
        assert error < 1e-4, (key, error)
        assert (lf.length, lf.extra, lf.model_id) == (ref.length, ref.extra, ref.model_id)
    # several clips really shared batches: fewer, larger passes than one clip at a time
    plans = [codec.encode_plan(codec.model_rows(wave)[0]) for _, wave, _ in data]
    assert len(batches) < sum(len(p.passes) for p in plans)
    assert max(sum(p.items for p in b) for b in batches) > max(p.items for plan in plans for p in plan.passes)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_batches_stay_within_the_unit_budget_and_clips_in_flight_are_bounded(codecs, version, monkeypatch):
    codec = codecs[version]
    batches = spy_batches(monkeypatch)
    finished, pulled = [], []

    def source():
        for item in clips() * 2:
            pulled.append(item[0])
            yield item

    budget = 2 * codec.batch_units
    for key, _ in encode_many(codec, source(), batch_units=budget, max_open=2, wait_to_fill=True):
        finished.append(key)
        assert len(pulled) - len(finished) <= 3  # at most max_open open, plus the one being added
        assert not torch.is_inference_mode_enabled()  # autograd is off only inside batches
    assert len(finished) == 14
    assert all(sum(p.units for p in b) <= budget for b in batches)
    assert any(len(b) > 1 for b in batches)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_on_the_cpu_clips_finish_in_turn_and_report_their_progress(codecs, version, monkeypatch):
    """The CPU default: no partial batch waits for company the next clip does not bring, so the
    clips finish in turn, each reported "encoding" from 0 to its total (v1: windows, v2: chunks)
    before it is handed on; two short clips of one length in a row still share a pass (v1)."""
    codec = codecs[version]
    gen = torch.Generator().manual_seed(5)
    lengths = [44100 * 3 + 123, 70000, 9000, 9000, 44100 * 2 + 7]
    data = [
        (f"clip{i}", torch.randn(1 + i % 2, n, generator=gen) * 0.1, 44100) for i, n in enumerate(lengths)
    ]
    totals = [
        codec.encode_plan(codec.model_rows(codec.coded_channels(w))[0]).total_progress for _, w, _ in data
    ]
    events: list[object] = []
    monkeypatch.setattr(codec, "progress", lambda task, done, total: events.append((task, done, total)))
    batches = spy_batches(monkeypatch)
    for key, lf in encode_many(codec, iter(data)):
        assert not isinstance(lf, M2LError)
        events.append(key)
    assert [e for e in events if isinstance(e, str)] == [key for key, _, _ in data]
    if version == "v1":
        expected: list[object] = []
        for i, (key, _, _) in enumerate(data):
            shown = [] if i == 3 else [("encoding", done, totals[i]) for done in range(totals[i] + 1)]
            expected += [*shown, key]  # clip3 finished in clip2's pass: never the oldest alone
        assert events == expected
        assert any(sorted(p.items for p in batch) == [1, 2] for batch in batches)  # clips 2 and 3
    else:  # one chunk shape: a clip's last chunks may share a batch with the next clip's first
        shown = events[: events.index("clip0")]
        assert shown[0] == ("encoding", 0, totals[0]) and shown[-1] == ("encoding", totals[0], totals[0])
        assert len(shown) > 2 and [done for _, done, _ in shown] == sorted({done for _, done, _ in shown})
        assert events[-1] == "clip4" and events[-2] == ("encoding", totals[4], totals[4])


def test_a_clip_that_cannot_be_encoded_fails_alone(codecs):
    codec = codecs["v2"]
    data = [("good", torch.randn(1, 20000) * 0.1, 44100), ("bad", torch.randn(3, 20000), 44100)]
    data += [("batch", torch.randn(2, 1, 20000), 44100), ("also good", torch.randn(2, 9000) * 0.1, 8000)]
    out = dict(encode_many(codec, iter(data)))
    assert isinstance(out["bad"], M2LError) and "3 channels" in str(out["bad"])
    assert isinstance(out["batch"], M2LError) and "one clip" in str(out["batch"])
    assert out["good"].latents.shape[0] == 1 and out["also good"].latents.shape[0] == 2
    assert out["also good"].extra["source_sample_rate"] == 8000


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_one_clip_runs_its_neighbouring_passes_in_batches_of_batch_units(codecs, version, monkeypatch):
    """`Codec.encode`: one pass per call on a CPU; with a GPU's larger `batch_units`, passes of one
    shape share a call, and the latents stay those of one pass at a time."""
    codec = codecs[version]
    wave = torch.randn(1, 44100 * 5, generator=torch.Generator().manual_seed(3)) * 0.1
    shapes = record_pass_sizes(codec, "encode", monkeypatch)
    passes = codec.encode_plan(codec.model_rows(wave)[0]).passes
    alone = codec.encode(wave)
    assert len(shapes) == len(passes) > 2  # the CPU default: one pass per encoder call
    shapes.clear()
    monkeypatch.setattr(type(codec), "batch_units", property(lambda self: 4 * sum(p.units for p in passes)))
    batched = codec.encode(wave)
    assert len(shapes) < len(passes) and max(shapes) > max(p.items for p in passes)
    assert ((batched - alone).norm() / alone.norm()).item() < 1e-4


@pytest.mark.parametrize("method", ["encode", "decode_features"])
def test_out_of_memory_halves_the_batch_and_lowers_batch_size(method, monkeypatch):
    """A GPU's batch of windows that does not fit runs in halves (same result), batch_size is
    lowered with a warning and the call's remaining batches follow it; a single pass that does not
    fit is a one-line M2LError."""
    codec = make_codec(random_model(MICRO), model_id="v1@test", device="cpu", window_seconds=1.0)
    wave = torch.randn(1, 44100 * 12, generator=torch.Generator().manual_seed(4)) * 0.1
    z = codec.encode(wave)
    expected = codec.encode(wave) if method == "encode" else codec.decode(z, seed=1)
    monkeypatch.setattr(type(codec), "batch_units", property(lambda self: self.batch_size * self.pass_units))
    seen = record_pass_sizes(codec, method, monkeypatch, fail_above=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = codec.encode(wave) if method == "encode" else codec.decode(z, seed=1)
    assert [str(w.message).split(": ")[1] for w in caught] == [
        "batch_size lowered from 4 to 2 (--batch-size sets it)",
        "batch_size lowered from 2 to 1 (--batch-size sets it)",
    ]
    assert str(caught[0].message).startswith("out of cpu memory with 4 inputs in one pass")
    assert codec.batch_size == 1 and max(seen) == 4 and 2 in seen
    # once lowered, the call's later batches (planned before) split too: each size fails once
    assert [n for n in seen if n > 1] == [4, 2], seen
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    record_pass_sizes(codec, method, monkeypatch, fail_above=0)
    with pytest.raises(M2LError, match=r"^out of cpu memory for a single pass of \d+ latent frames; lower"):
        codec.encode(wave) if method == "encode" else codec.decode(z, seed=1)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_packed_batches_follow_a_batch_size_lowered_by_out_of_memory(version, monkeypatch):
    """After running out of memory, `encode_many` plans no batch larger than what fitted: the
    failures all come in the first batch that did not fit, none once a batch has run."""
    model, options = (MICRO, {"window_seconds": 1.0}) if version == "v1" else (MICRO2, {"chunk_batch": 3})
    codec = make_codec(random_model(model), model_id=f"{version}@test", device="cpu", **options)
    data = clips() * 2
    alone = {key: codec.encode_file(wave, source_sample_rate=rate) for key, wave, rate in data}
    single = max(p.items for _, wave, _ in data for p in codec.encode_plan(codec.model_rows(wave)[0]).passes)
    seen = record_pass_sizes(
        codec, "encode", monkeypatch, fail_above=single
    )  # every pass fits alone, not all batches
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        packed = dict(
            encode_many(codec, iter(data), batch_units=4 * codec.batch_units, max_open=4, wait_to_fill=True)
        )
    assert codec.batch_size <= single and len(caught) >= 1
    first_run = next(i for i, n in enumerate(seen) if n <= single)
    assert first_run > 0 and max(seen[first_run:]) <= single, seen
    assert sorted(packed) == sorted(alone)
    for key, lf in packed.items():
        ref = alone[key].latents
        assert ((lf.latents - ref).norm() / ref.norm()).item() < 1e-4, key  # batched kernels round apart
