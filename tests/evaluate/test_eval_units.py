"""Pieces of `m2l eval`: item selection, seams, boundary analysis, report rendering, helpers."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from eval_testing import RATE, tone, write_items
from m2l_testing import random_model

import m2l.evaluate.visqol as visqol_module
from m2l.errors import M2LError
from m2l.evaluate.boundaries import (
    HOP,
    N_FFT,
    boundary_analysis,
    boundary_mask,
    boundary_positions,
    boundary_spacing,
    pooled_ratio,
)
from m2l.evaluate.items import crop_start, find_items, load_items
from m2l.evaluate.report import render_report
from m2l.evaluate.run import (
    EvalContext,
    EvalOptions,
    check_out_dir,
    computed_metrics,
    item_scores,
    parse_model_arg,
    sweep,
)
from m2l.loading import make_codec


# ----------------------------------------------------------------------------- items
def test_folder_items_sorted_limited_and_filtered(tmp_path):
    write_items(tmp_path, seconds=0.1)
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / ".hidden.wav").write_bytes(b"")
    (tmp_path / ".cache").mkdir()
    sf.write(tmp_path / ".cache" / "x.wav", tone(0.1, 100.0), RATE)
    sf.write(tmp_path / "sub" / "0.wav", tone(0.1, 100.0), RATE)
    assert [s.name for s in find_items(tmp_path)] == ["b.wav", "sub/0.wav", "sub/a.flac"]
    assert [s.name for s in find_items(tmp_path, limit=2)] == ["b.wav", "sub/0.wav"]


def test_manifest_paths_resolve_against_manifest_folder_and_data_root(tmp_path):
    split = tmp_path / "DATA" / "set" / "test"
    write_items(split, seconds=0.1)
    sf.write(split / "local.wav", tone(0.1, 100.0), RATE)
    absolute = tmp_path / "elsewhere.wav"
    sf.write(absolute, tone(0.1, 100.0), RATE)
    entries = [
        {"path": "set/test/sub/a.flac"},
        {"path": "local.wav"},
        {"path": str(absolute)},
        {"path": "set/test/b.wav", "duration": 0.1},
    ]
    manifest = split / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(e) for e in entries) + "\n\n")
    sources = find_items(manifest)
    assert [s.name for s in sources] == sorted(e["path"] for e in entries)
    assert {s.name: s.path for s in sources}["local.wav"] == (split / "local.wav").resolve()
    assert {s.name: s.path for s in sources}["set/test/b.wav"] == (split / "b.wav").resolve()


def test_notes_manifest_paths_resolve_one_folder_up(tmp_path):
    notes = tmp_path / "DATA" / "notes"
    write_items(notes / "piano", seconds=0.1)
    (notes / "manifest.jsonl").write_text(json.dumps({"path": "notes/piano/b.wav", "split": "test"}) + "\n")
    (source,) = find_items(notes / "manifest.jsonl")
    assert source.path == (notes / "piano" / "b.wav").resolve()


def test_centred_crops(tmp_path):
    ramp = (np.arange(RATE, dtype=np.float32) / RATE - 0.5)[:, None]
    sf.write(tmp_path / "ramp.wav", ramp, RATE, subtype="FLOAT")
    sf.write(tmp_path / "short.wav", ramp[:1000], RATE, subtype="FLOAT")
    sources = find_items(tmp_path)
    long_item, short_item = load_items(sources, RATE, seconds=0.5)
    crop = RATE // 2
    assert crop_start(RATE, crop) == (RATE - crop) // 2 == long_item.start
    assert torch.equal(long_item.wave[0], torch.from_numpy(ramp[long_item.start : long_item.start + crop, 0]))
    assert short_item.start == 0 and short_item.wave.shape == (1, 1000)
    assert load_items(sources, RATE, seconds=None)[0].wave.shape == (1, RATE)
    assert crop_start(100, None) == 0


# ----------------------------------------------------------------------------- seams
@pytest.fixture(scope="module")
def codecs() -> dict[str, object]:
    return {
        "v1": make_codec(random_model("m2l-v1-tiny"), model_id="v1", device="cpu", window_seconds=1.0),
        "v2": make_codec(random_model("m2l-v2-tiny"), model_id="v2", device="cpu"),
    }


def test_v2_seams_are_chunk_starts(codecs):
    codec = codecs["v2"]
    pad, unit = codec.default_left_pad, codec.samples_per_unit
    assert boundary_spacing(codec) == unit == 32768
    assert boundary_positions(codec, 3 * unit) == [unit - pad, 2 * unit - pad]
    assert boundary_positions(codec, unit - pad) == []  # one chunk


def test_v1_seams_are_window_starts(codecs):
    codec = codecs["v1"]
    pad, unit = codec.default_left_pad, codec.samples_per_unit
    assert codec.window == 11  # round(1 s * 10.77 latents/s), above 2 * context + 1
    assert boundary_spacing(codec) == 11 * unit
    assert boundary_positions(codec, 3 * RATE) == [11 * unit - pad, 22 * unit - pad]  # 33 latents
    assert boundary_positions(codec, RATE) == []


def test_sweep_crosses_sigma_only_for_v2(codecs):
    assert [s.label for s in sweep(codecs["v1"], (1, 2), (0.2,))] == ["steps=1", "steps=2"]
    labels = [s.label for s in sweep(codecs["v2"], (1, 2), (0.2, 0.4))]
    assert labels == [
        "steps=1 sigma_cond=0.2",
        "steps=1 sigma_cond=0.4",
        "steps=2 sigma_cond=0.2",
        "steps=2 sigma_cond=0.4",
    ]
    assert [s.slug for s in sweep(codecs["v2"], (3,), ())] == ["steps3"]


def test_boundary_mask_uses_frame_centres():
    mask = boundary_mask(20, [10 * HOP + N_FFT // 2], radius=HOP)
    assert mask.nonzero().flatten().tolist() == [9, 10, 11]


def test_boundary_ratio_sees_errors_at_seams_only():
    ref = torch.from_numpy(tone(2.0, 220.0).T.copy())
    gen = torch.Generator().manual_seed(0)
    everywhere = ref + 0.02 * torch.randn(ref.shape, generator=gen)
    seam = RATE
    at_seam = everywhere.clone()
    at_seam[:, seam - 1000 : seam + 1000] += 0.3 * torch.randn(1, 2000, generator=gen)
    uniform = boundary_analysis(everywhere, ref, RATE, [seam])
    local = boundary_analysis(at_seam, ref, RATE, [seam])
    assert 0.8 < uniform["ratio"] < 1.25
    assert local["ratio"] > 3
    assert (
        uniform["boundaries"] == 1
        and uniform["boundary_frames"] + uniform["interior_frames"] == 1 + (2 * RATE - N_FFT + HOP - 1) // HOP
    )
    none = boundary_analysis(everywhere, ref, RATE, [])
    assert none["ratio"] is None and none["boundary_frames"] == 0 and none["boundary_error"] is None


def test_pooled_ratio_weights_by_frames():
    a = {"boundary_error": 2.0, "boundary_frames": 1, "interior_error": 1.0, "interior_frames": 3}
    b = {"boundary_error": 4.0, "boundary_frames": 3, "interior_error": 2.0, "interior_frames": 1}
    assert pooled_ratio([a, b]) == pytest.approx(((2 + 12) / 4) / ((3 + 2) / 4))
    empty = {"boundary_error": None, "boundary_frames": 0, "interior_error": 1.0, "interior_frames": 5}
    assert pooled_ratio([empty]) is None


# ----------------------------------------------------------------------------- helpers
def test_parse_model_arg(tmp_path):
    assert (parse_model_arg("base=m2l-v1-tiny").label, parse_model_arg("base=m2l-v1-tiny").source) == (
        "base",
        "m2l-v1-tiny",
    )
    assert parse_model_arg("m2l-v2-tiny").label == "m2l-v2-tiny"
    assert parse_model_arg("runs/a=b/x.safetensors").source == "runs/a=b/x.safetensors"
    odd = tmp_path / "k=v.safetensors"
    odd.write_bytes(b"")
    assert parse_model_arg(str(odd)).source == str(odd)


def test_check_out_dir(tmp_path):
    check_out_dir(tmp_path / "new", force=False)
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty", force=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(M2LError, match="pass --force"):
        check_out_dir(tmp_path / "full", force=False)
    check_out_dir(tmp_path / "full", force=True)
    with pytest.raises(M2LError, match="not a directory"):
        check_out_dir(tmp_path / "full" / "x", force=True)


def test_missing_visqol_gives_none_and_one_note(monkeypatch, tmp_path):
    calls = []

    def no_visqol(est: torch.Tensor, ref: torch.Tensor, rate: int) -> float:
        calls.append(rate)
        raise M2LError("ViSQOL needs the optional package visqol-python")

    monkeypatch.setattr(visqol_module, "visqol", no_visqol)
    ctx = EvalContext(EvalOptions(models=(), data=tmp_path, out=tmp_path), embedder=None)
    ref = torch.from_numpy(tone(0.3, 300.0).T.copy())
    first = item_scores(ref * 0.5, ref, RATE, ctx)
    second = item_scores(ref * 0.5, ref, RATE, ctx)
    assert first["visqol"] is None and second["visqol"] is None and calls == [RATE]
    assert ctx.notes == ["ViSQOL not computed: ViSQOL needs the optional package visqol-python"]
    assert first["si_sdr"] > 90  # a scaled copy is a perfect reconstruction for SI-SDR
    assert first["mel_distance"] == pytest.approx(np.log10(2), rel=1e-2)


def test_a_channel_silent_in_the_original_is_left_out_of_si_sdr_and_stft_distance(tmp_path):
    from m2l.evaluate.metrics import si_sdr, stft_distance

    ctx = EvalContext(EvalOptions(models=(), data=tmp_path, out=tmp_path), embedder=None, visqol_on=False)
    left = torch.from_numpy(tone(0.3, 300.0).T.copy())[:1]
    ref = torch.cat([left, torch.zeros_like(left)])  # a source panned hard left
    est = torch.cat([0.8 * left, 0.5 * left])  # it leaks into the right channel
    scores = item_scores(est, ref, RATE, ctx)
    # without the silent channel these divide by zero (STFT distance ~1e6, SI-SDR ~ -300 dB)
    assert scores["stft_distance"] == pytest.approx(float(stft_distance(est[:1], ref[:1])))
    assert scores["si_sdr"] == pytest.approx(float(si_sdr(est[:1], ref[:1])))
    assert scores["balance_error"] > 0.2  # the leak shows here (and in the mel distance)


def test_computed_metrics_marks_what_holds_a_value():
    models = _results()["models"]  # ViSQOL None everywhere, boundary ratio None everywhere
    computed = computed_metrics(models)
    assert computed["visqol"] is False and computed["boundary_ratio"] is False
    assert computed["si_sdr"] and computed["fad"] and computed["decode_seconds"]
    models[0]["settings"][1]["metrics"]["visqol"] = 3.1
    assert computed_metrics(models)["visqol"] is True


# ----------------------------------------------------------------------------- report
def _results() -> dict:
    media = {"audio": "audio/item 0.wav", "image": "images/item0.png"}
    row = {
        "item": 0,
        "name": "a<b>.wav",
        "si_sdr": 3.5,
        "mel_distance": 1.0,
        "stft_distance": 2.0,
        "visqol": None,
        "boundary": {"ratio": 1.5, "boundaries": 2},
        "media": media,
    }

    def setting(label: str, si: float) -> dict:
        metrics = {
            "si_sdr": si,
            "mel_distance": 1.0,
            "stft_distance": 2.0,
            "visqol": None,
            "fad": 0.5,
            "boundary_ratio": None,
            "decode_seconds": 0.1,
        }
        return {"label": label, "metrics": metrics, "items": [dict(row, si_sdr=si)]}

    model = {
        "label": "<model>",
        "model_id": "m@1",
        "version": "v2",
        "config": "m2l-v2-tiny",
        "sample_rate": RATE,
        "boundary_spacing": 32768,
        "latent_stats": {"mean": 0.1, "std": 1.0},
        "settings": [setting("steps=1", 3.5), setting("steps=2", 7.25)],
    }
    return {
        "command": "m2l eval",
        "items": [{"index": 0, "name": "a<b>.wav", "media": media}],
        "models": [model],
        "notes": ["a & b"],
        "options": {"seed": 0},
    }


def test_report_tables_escaping_and_links():
    page = render_report(_results())
    assert page.count('<tr class="metric-row"') == 2
    assert "&lt;model&gt;" in page and "<model>" not in page and "a&lt;b&gt;.wav" in page
    assert "<li>a &amp; b</li>" in page
    assert re.search(r'<td class="best">7\.250</td>', page)  # the higher SI-SDR is marked
    assert "n/a" in page  # missing ViSQOL
    assert page.count('src="audio/item%200.wav"') == 3  # original + two settings
    assert page.count('<img src="images/item0.png"') == 3
    assert page.count('<audio controls preload="metadata"') == 3


def test_report_without_audio_items():
    results = _results()
    results["items"][0]["media"] = None
    page = render_report(results)
    assert "<audio" not in page and "No audio examples" in page


def test_visqol_failing_on_one_short_item_leaves_the_others_scored(monkeypatch, tmp_path):
    from m2l.evaluate.visqol import VisqolSignalError

    def short_fails(est: torch.Tensor, ref: torch.Tensor, rate: int) -> float:
        if ref.shape[-1] < RATE:
            raise VisqolSignalError("visqol: ViSQOL failed on these signals (too short)")
        return 4.0

    monkeypatch.setattr(visqol_module, "visqol", short_fails)
    ctx = EvalContext(EvalOptions(models=(), data=tmp_path, out=tmp_path), embedder=None)
    short, long = (torch.from_numpy(tone(s, 300.0).T.copy()) for s in (0.3, 1.5))
    assert item_scores(short, short, RATE, ctx)["visqol"] is None
    assert item_scores(long, long, RATE, ctx)["visqol"] == 4.0 and ctx.visqol_on
    assert len(ctx.notes) == 1 and "for some items" in ctx.notes[0]
