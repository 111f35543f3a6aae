"""`m2l encode / decode / reconstruct / convert` (`m2l.cli.codec`) end to end on the tiny checkpoint."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import soundfile as sf
import torch
from cli_testing import bad_latent_files, run, without_untrained_warning, write_tone
from m2l_testing import assert_one_line_error, record_pass_sizes, rewrite_header

from m2l.codec import MODEL_MISMATCH_MESSAGE
from m2l.formats import load_latents
from m2l.loading import load_model


def test_round_trip_encode_info_decode(tmp_path, capsys, model, tiny_checkpoint):
    src = write_tone(tmp_path / "in" / "song.wav", seconds=2.0, rate=48000, channels=2)
    code, _, err = run(capsys, "encode", src, "-o", tmp_path / "lat", *model)
    assert code == 0, err
    m2l_file = tmp_path / "lat" / "song.m2l"
    lf = load_latents(m2l_file)
    assert lf.sample_rate == 44100 and lf.channels == 2
    assert abs(lf.length - round(96000 * 44100 / 48000)) <= 1

    code, out, err = run(capsys, "info", m2l_file)
    assert code == 0, err
    for fragment in ("m2l latent file", lf.model_id, "44100", "2.000 s", "latent frames", "std"):
        assert fragment in out
    code, out, err = run(capsys, "info", "--json", m2l_file)
    assert code == 0, err
    info = json.loads(out)
    assert info["type"] == "latents" and info["format_version"] == 2
    assert info["length"] == lf.length and info["channels"] == 2
    assert info["latent_shape"] == list(lf.latents.shape)
    assert info["latent_frames"] == lf.latents.shape[-1]
    assert info["duration_seconds"] == pytest.approx(lf.length / 44100)
    assert info["stats"]["min"] <= info["stats"]["mean"] <= info["stats"]["max"]

    code, _, err = run(capsys, "decode", m2l_file, "-o", tmp_path / "dec", "--seed", "1", *model)
    assert code == 0, err
    assert err == ""  # nothing about the seed or progress with --quiet
    audio, rate = sf.read(tmp_path / "dec" / "song.wav", always_2d=True)
    assert rate == 44100 and audio.shape == (lf.length, 2)
    assert np.abs(audio).max() > 0

    code, _, err = run(capsys, "decode", m2l_file, "-o", tmp_path / "x.flac", "--seed", "1", *model)
    assert code == 0, err
    assert sf.info(tmp_path / "x.flac").format == "FLAC"


def test_preset_with_checkpoint_and_single_file_output(tmp_path, capsys, tiny_checkpoint):
    src = write_tone(tmp_path / "a.wav")
    code, _, err = run(
        capsys,
        "encode",
        src,
        "-o",
        tmp_path / "named.m2l",
        "--model",
        "m2l-v1-tiny",
        "--checkpoint",
        tiny_checkpoint,
        "--device",
        "cpu",
        "-q",
    )
    assert code == 0, err
    assert (tmp_path / "named.m2l").is_file()
    # --checkpoint with a non-preset model is refused in one line
    code, _, err = run(
        capsys,
        "encode",
        src,
        "-o",
        tmp_path / "o",
        "--model",
        tiny_checkpoint,
        "--checkpoint",
        tiny_checkpoint,
        "-q",
    )
    assert code == 1
    assert_one_line_error(err, "--checkpoint")


def test_seed_makes_decoding_reproducible(tmp_path, capsys, model):
    src = write_tone(tmp_path / "a.wav")
    assert run(capsys, "encode", src, "-o", tmp_path, *model)[0] == 0
    lat = tmp_path / "a.m2l"
    outs = {}
    for name, seed in (("s1", "7"), ("s2", "7"), ("s3", "8")):
        code, _, err = run(
            capsys, "decode", lat, "-o", tmp_path / f"{name}.wav", "--seed", seed, "--steps", "2", *model
        )
        assert code == 0, err
        outs[name] = sf.read(tmp_path / f"{name}.wav")[0]
    np.testing.assert_array_equal(outs["s1"], outs["s2"])
    assert not np.array_equal(outs["s1"], outs["s3"])


def test_downmix_accepts_many_channels(tmp_path, capsys, model):
    src = write_tone(tmp_path / "six.wav", channels=6)
    code, _, err = run(
        capsys, "reconstruct", src, "-o", tmp_path / "o.wav", "--downmix", "--seed", "0", *model
    )
    assert code == 0, err
    assert sf.info(tmp_path / "o.wav").channels == 1


def test_window_option_reaches_the_codec(tmp_path, capsys, model):
    src = write_tone(tmp_path / "a.wav", seconds=2.5)
    assert run(capsys, "encode", src, "-o", tmp_path / "full.m2l", *model)[0] == 0
    code, _, err = run(capsys, "encode", src, "-o", tmp_path / "win.m2l", "--window", "1", *model)
    assert code == 0, err
    full, win = load_latents(tmp_path / "full.m2l"), load_latents(tmp_path / "win.m2l")
    assert full.latents.shape == win.latents.shape
    assert not np.array_equal(full.latents.numpy(), win.latents.numpy())  # windows cross-faded
    assert run(capsys, "encode", src, "-o", tmp_path / "x.m2l", "--window", "0", *model)[0] == 2


def test_batch_size_option_reaches_the_codec(tmp_path, capsys, monkeypatch, model):
    import m2l.cli.one_file as one_file

    src = write_tone(tmp_path / "st.wav", seconds=0.5, channels=2)
    assert run(capsys, "encode", src, "-o", tmp_path / "st.m2l", *model)[0] == 0
    passes: dict[str, list[int]] = {}
    load_codec = one_file.load_codec

    def spied(options, *rest, **kw):
        codec = load_codec(options, *rest, **kw)
        passes[str(options.batch_size)] = record_pass_sizes(codec, "decode_features", monkeypatch)
        return codec

    monkeypatch.setattr(one_file, "load_codec", spied)
    for size in ([], ["--batch-size", "1"]):
        out = tmp_path / f"b{len(size)}.wav"
        code, _, err = run(capsys, "decode", tmp_path / "st.m2l", "-o", out, "--seed", "0", *size, *model)
        assert code == 0, err
    assert passes == {"None": [2], "1": [1, 1]}  # both channels side by side by default, then one by one
    np.testing.assert_allclose(sf.read(tmp_path / "b0.wav")[0], sf.read(tmp_path / "b2.wav")[0], atol=1e-4)
    code, _, err = run(
        capsys, "decode", tmp_path / "st.m2l", "-o", tmp_path / "x.wav", "--batch-size", "0", *model
    )
    assert code == 2 and "--batch-size" in err


@pytest.mark.parametrize("command", ["encode", "reconstruct"])
def test_audio_beyond_full_scale_is_warned_about_and_still_done(tmp_path, capsys, model, command):
    fine = write_tone(tmp_path / "fine.wav", subtype="PCM_16")
    loud = tmp_path / "loud.wav"
    sf.write(loud, 10 * sf.read(fine, dtype="float32")[0], 44100, subtype="FLOAT")  # peaks at 3
    code, _, err = run(capsys, command, fine, loud, "-o", tmp_path / "out", *model)
    assert code == 0, err
    warnings = [line for line in without_untrained_warning(err).splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(loud) in warnings[0] and "peaks at 3" in warnings[0], err
    assert len(list((tmp_path / "out").iterdir())) == 2


def test_many_inputs_beyond_full_scale_end_in_one_line(tmp_path, capsys, model):
    wave = sf.read(write_tone(tmp_path / "in" / "fine.wav"), dtype="float32")[0]
    gains = (10, 11, 12, 13, 20, 14)  # files 0-2 named one by one; 3-5 counted, the loudest is 4
    for i, gain in enumerate(gains):
        sf.write(tmp_path / "in" / f"loud{i}.wav", gain * wave, 44100, subtype="FLOAT")
    code, _, err = run(capsys, "encode", tmp_path / "in", "-o", tmp_path / "out", *model)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert [f"loud{i}.wav: peaks at" in line for i, line in enumerate(warnings[:3])] == [True] * 3, err
    peak = f"{20 * np.abs(wave).max():.3g}"
    assert len(warnings) == 4 and warnings[3].startswith("m2l: warning: 3 more inputs peak beyond"), err
    assert f"up to {peak} ({tmp_path / 'in' / 'loud4.wav'})" in warnings[3], err
    assert len(list((tmp_path / "out").iterdir())) == 7


def test_model_mismatch_needs_flag(tmp_path, capsys, model, tiny_checkpoint_other):
    src = write_tone(tmp_path / "a.wav", seconds=0.3)
    assert run(capsys, "encode", src, "-o", tmp_path, *model)[0] == 0
    other = ["--model", str(tiny_checkpoint_other), "--device", "cpu", "-q"]
    code, _, err = run(capsys, "decode", tmp_path / "a.m2l", "-o", tmp_path / "d1.wav", *other)
    assert code == 1
    made_by, other_id = load_latents(tmp_path / "a.m2l").model_id, load_model(str(tiny_checkpoint_other))[1]
    message = MODEL_MISMATCH_MESSAGE.format(made_by=made_by, model_id=other_id)
    assert err == f"m2l: error: {tmp_path / 'a.m2l'}: {message}\n"  # the API's wording, naming the file
    code, _, err = run(
        capsys, "decode", tmp_path / "a.m2l", "-o", tmp_path / "d2.wav", "--allow-model-mismatch", *other
    )
    assert code == 0, err


def test_convert(tmp_path, capsys, tiny_checkpoint):
    out = tmp_path / "copy.safetensors"
    code, stdout, err = run(capsys, "convert", tiny_checkpoint, out)
    assert code == 0, err
    model_id = stdout.strip()
    assert model_id.startswith("m2l-v1-tiny@")
    code, stdout, err = run(capsys, "info", "--json", out)
    assert json.loads(stdout)["model_id"] == model_id
    before = out.read_bytes()
    code, _, err = run(capsys, "convert", tiny_checkpoint, out)
    assert code == 1
    assert_one_line_error(err, str(out))
    assert out.read_bytes() == before
    code, stdout, err = run(capsys, "convert", tiny_checkpoint, out, "--force")
    assert code == 0 and stdout.strip() == model_id
    code, _, err = run(capsys, "convert", tmp_path / "missing.pt", tmp_path / "x.safetensors")
    assert code == 1
    assert_one_line_error(err, "missing.pt")


def test_a_latent_file_knows_its_model(tmp_path, capsys, model, tiny_checkpoint):
    src = write_tone(tmp_path / "a.wav", seconds=0.3)
    assert run(capsys, "encode", src, "-o", tmp_path, *model)[0] == 0
    assert load_latents(tmp_path / "a.m2l").model_source == str(tiny_checkpoint.resolve())
    # no --model: the recorded checkpoint, not the shipped model (which would be a mismatch)
    code, _, err = run(capsys, "decode", tmp_path / "a.m2l", "-o", tmp_path / "d.wav", "--device", "cpu")
    assert code == 0, err
    assert f"using the model recorded in {tmp_path / 'a.m2l'}: {tiny_checkpoint.resolve()}" in err
    assert sf.info(tmp_path / "d.wav").frames == load_latents(tmp_path / "a.m2l").length


def test_a_latent_file_records_a_loadable_name(tmp_path):
    import m2l

    codec = m2l.load("default", device="cpu")
    lf = codec.encode_file(np.zeros((1, 8192), dtype=np.float32))
    assert lf.model_source == "default"
    assert m2l.load(lf.model_source, device="cpu").model_id == lf.model_id


def test_every_codec_command_ends_with_one_summary_line(tmp_path, capsys, tiny_checkpoint):
    src = write_tone(tmp_path / "a.wav", seconds=0.5)
    loud = ["--model", str(tiny_checkpoint), "--device", "cpu"]  # not --quiet
    code, out, err = run(capsys, "reconstruct", src, "-o", tmp_path / "b.wav", *loud)
    assert code == 0, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"m2l: reconstructed 1 of 1 file into {tmp_path / 'b.wav'}: 0.5 s of audio in ")
    assert last.endswith("x real time)") and out == ""
    (tmp_path / "in").mkdir()
    write_tone(tmp_path / "in" / "good.wav", seconds=0.5)
    (tmp_path / "in" / "bad.wav").write_bytes(b"not audio at all")
    code, _, err = run(capsys, "encode", tmp_path / "in", "-o", tmp_path / "lat", *loud)
    assert code == 1
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"m2l: encoded 1 of 2 files, 1 failed into {tmp_path / 'lat'}")
    )


def test_decode_reports_tampered_and_malformed_latent_files_in_one_line(tmp_path, capsys, model):
    cases = bad_latent_files(capsys, tmp_path, model)
    code, _, err = run(capsys, "decode", tmp_path / "good.m2l", "-o", tmp_path / "good.wav", *model)
    assert code == 0, err
    for path, fragment in cases.items():
        out = tmp_path / "out" / f"{path.stem}.wav"
        code, _, err = run(capsys, "decode", path, "-o", out, *model)
        assert code == 1 and not out.exists(), path.name
        assert_one_line_error(err, str(path))
        assert fragment in err, err


def test_a_truncated_file_in_a_folder_is_reported_and_the_others_encoded(tmp_path, capsys, model):
    write_tone(tmp_path / "in" / "good.wav", seconds=0.3)
    cut = write_tone(tmp_path / "in" / "cut.wav", seconds=0.3)
    with open(cut, "r+b") as f:
        f.truncate(cut.stat().st_size // 2)
    code, _, err = run(capsys, "encode", tmp_path / "in", "-o", tmp_path / "lat", *model)
    assert code == 1
    assert_one_line_error(err, str(cut))
    assert "truncated: header says 13230 frames, file holds" in err
    assert sorted(p.name for p in (tmp_path / "lat").iterdir()) == ["good.m2l"]


@pytest.mark.parametrize("command", ["encode", "reconstruct"])
def test_skip_existing_keeps_finished_outputs_and_redoes_damaged_ones(
    tmp_path, capsys, tiny_checkpoint, command
):
    for name in ("a", "b", "c"):
        write_tone(tmp_path / "in" / f"{name}.wav", seconds=0.3)
    loud = ["--model", str(tiny_checkpoint), "--device", "cpu"]
    out = tmp_path / "out"
    assert run(capsys, command, tmp_path / "in", "-o", out, *loud, "--quiet")[0] == 0
    suffix = ".m2l" if command == "encode" else ".wav"
    kept, damaged, gone = (out / f"{name}{suffix}" for name in ("a", "b", "c"))
    finished = kept.stat().st_mtime_ns, kept.read_bytes()
    whole = damaged.read_bytes()
    damaged.write_bytes(whole[: len(whole) // 2])  # as if cut short by something outside m2l
    gone.unlink()
    code, _, err = run(capsys, command, tmp_path / "in", "-o", out, *loud)
    hint = "already exists (pass --skip-existing to keep it, --force to overwrite)"
    assert code == 3 and err.count(hint) == 2  # the default: nothing failed, outputs existed
    assert gone.exists() and len(damaged.read_bytes()) < len(whole)  # made; the damaged one kept as is
    gone.unlink()
    code, _, err = run(capsys, command, tmp_path / "in", "-o", out, *loud, "--skip-existing")
    assert code == 0, err
    lines = err.strip().splitlines()
    warnings = [line for line in without_untrained_warning(err).splitlines() if "m2l: warning: " in line]
    assert len(warnings) == 1 and str(damaged) in warnings[0] and "making it again" in warnings[0]
    assert "2 of 3 files, 1 skipped (already done)" in lines[-1], err
    assert (kept.stat().st_mtime_ns, kept.read_bytes()) == finished  # untouched
    assert gone.exists() and len(damaged.read_bytes()) == len(whole)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (kept, damaged, gone))


def test_reconstruct_warns_once_when_a_model_returns_near_silence(tmp_path, capsys):
    """An untrained preset gives music back ~80 dB quieter: one warning per run, naming it."""
    for name in ("a", "b"):
        write_tone(tmp_path / "in" / f"{name}.wav", seconds=0.3)
    (tmp_path / "in" / "silent.wav").parent.mkdir(exist_ok=True)
    sf.write(tmp_path / "in" / "silent.wav", np.zeros(13230, dtype=np.float32), 44100)
    untrained = ["--model", "m2l-v1-tiny", "--device", "cpu", "--quiet"]
    code, _, err = run(capsys, "reconstruct", tmp_path / "in", "-o", tmp_path / "out", *untrained)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "quieter than its input" in line]
    assert len(warnings) == 1, err
    assert warnings[0].startswith("m2l: warning: model m2l-v1-tiny@untrained-seed0 returned audio ")
    assert warnings[0].endswith(" dB quieter than its input (is it trained?)")
    # a silent input says nothing about the model
    only = ["reconstruct", tmp_path / "in" / "silent.wav", "-o", tmp_path / "s.wav", *untrained]
    code, _, err = run(capsys, *only)
    assert code == 0 and "quieter" not in err, err


@pytest.mark.parametrize("drop_db, warned", [(39.0, False), (41.0, True)])
def test_the_near_silence_warning_starts_40_db_down(tmp_path, capsys, monkeypatch, model, drop_db, warned):
    from m2l.codec import Codec

    def decode(self, lf, **kwargs):  # the tone write_tone wrote, drop_db quieter
        return torch.from_numpy(0.3 * 10 ** (-drop_db / 20) * np.sin(np.arange(lf.length) * 0.0313))[None]

    monkeypatch.setattr(Codec, "decode", decode)
    src = write_tone(tmp_path / "a.wav", seconds=0.5)
    code, _, err = run(capsys, "reconstruct", src, "-o", tmp_path / "b.wav", *model)
    assert code == 0, err
    assert (f"returned audio {drop_db:.0f} dB quieter than its input" in err) == warned, err


@pytest.mark.parametrize(
    "failure",
    [
        "Error while serializing: I/O error: No space left on device (os error 28)",  # SafetensorError
        "OSError",
    ],
)
def test_encoding_into_a_full_disk_is_one_line_and_leaves_no_temp_file(
    tmp_path, capsys, monkeypatch, model, failure
):
    import errno

    from safetensors import SafetensorError

    from m2l import checksummed

    def save_file(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a latent file")
        if failure == "OSError":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise SafetensorError(failure)

    monkeypatch.setattr(checksummed, "save_file", save_file)
    write_tone(tmp_path / "in" / "a.wav", seconds=0.3)
    out = tmp_path / "out"
    code, _, err = run(capsys, "encode", tmp_path / "in", "-o", out, *model)
    assert code == 1
    assert_one_line_error(err, f"{out / 'a.m2l'}: cannot write: disk full (no space left on device)")
    assert list(out.iterdir()) == []  # no temp file, no partial output


def test_an_untrained_preset_is_the_same_model_in_every_run(tmp_path, capsys):
    src = write_tone(tmp_path / "a.wav", seconds=0.3)
    untrained = ["--model", "m2l-v1-tiny", "--device", "cpu", "--quiet"]
    latents = []
    for seed in (1, 2):
        torch.manual_seed(seed)  # whatever the global generator holds
        code, _, err = run(capsys, "encode", src, "-o", tmp_path / f"{seed}.m2l", *untrained)
        assert code == 0, err
        latents.append(load_latents(tmp_path / f"{seed}.m2l"))
    assert latents[0].model_id == latents[1].model_id == "m2l-v1-tiny@untrained-seed0"
    assert torch.equal(latents[0].latents, latents[1].latents)


def test_skip_existing_and_force_exclude_each_other(tmp_path, capsys, model):
    src = write_tone(tmp_path / "a.wav", seconds=0.3)
    code, _, err = run(capsys, "encode", src, "-o", tmp_path / "o", *model, "--force", "--skip-existing")
    assert code == 2 and "not allowed with argument" in err


def test_sample_rate_keeps_or_sets_the_rate_of_the_written_audio(tmp_path, capsys, model):
    src = write_tone(tmp_path / "in.wav", seconds=1.0, rate=48000, channels=2)
    seed = ["--seed", "0"]
    assert run(capsys, "reconstruct", src, "-o", tmp_path / "model.wav", *seed, *model)[0] == 0
    assert (sf.info(tmp_path / "model.wav").samplerate, sf.info(tmp_path / "model.wav").channels) == (
        44100,
        2,
    )
    code, _, err = run(
        capsys, "reconstruct", src, "-o", tmp_path / "kept.wav", "--sample-rate", "keep", *seed, *model
    )
    assert code == 0, err
    kept = sf.info(tmp_path / "kept.wav")
    assert (kept.samplerate, kept.channels) == (48000, 2) and abs(kept.frames - 48000) <= 1
    code, _, err = run(
        capsys, "reconstruct", src, "-o", tmp_path / "low.wav", "--sample-rate", "22050", *seed, *model
    )
    assert code == 0, err
    assert (
        sf.info(tmp_path / "low.wav").samplerate == 22050
        and abs(sf.info(tmp_path / "low.wav").frames - 22050) <= 1
    )
    # decode: the rate recorded in the latent file
    assert run(capsys, "encode", src, "-o", tmp_path / "in.m2l", *model)[0] == 0
    assert load_latents(tmp_path / "in.m2l").source_sample_rate == 48000
    code, _, err = run(
        capsys, "decode", tmp_path / "in.m2l", "-o", tmp_path / "dec.wav", "--sample-rate", "keep", *model
    )
    assert code == 0 and err == ""
    assert (sf.info(tmp_path / "dec.wav").samplerate, sf.info(tmp_path / "dec.wav").channels) == (48000, 2)
    code, _, err = run(
        capsys, "decode", tmp_path / "in.m2l", "-o", tmp_path / "x.wav", "--sample-rate", "8", *model
    )
    assert code == 2 and "expected a sample rate in Hz (1000..768000) or 'keep', got '8'" in err


def test_keep_with_a_latent_file_that_records_no_source_rate_warns_and_uses_the_model_rate(
    tmp_path, capsys, model
):
    src = write_tone(tmp_path / "in.wav", seconds=0.5, rate=48000)
    assert run(capsys, "encode", src, "-o", tmp_path / "old.m2l", *model)[0] == 0
    rewrite_header(tmp_path / "old.m2l", reseal=True, extra="{}")  # as older m2l versions wrote them
    code, _, err = run(
        capsys, "decode", tmp_path / "old.m2l", "-o", tmp_path / "o.wav", "--sample-rate", "keep", *model
    )
    assert code == 0
    assert err == (
        f"m2l: warning: {tmp_path / 'old.m2l'}: records no source sample rate (made by an older m2l); "
        "written at the model rate, 44100 Hz\n"
    )
    assert sf.info(tmp_path / "o.wav").samplerate == 44100


def test_subtype_sets_the_sample_format_and_is_checked_against_the_output_format(tmp_path, capsys, model):
    src = write_tone(tmp_path / "in.wav", seconds=0.3)
    for out, subtype in (("a.wav", "PCM_16"), ("b.wav", "FLOAT"), ("c.flac", "PCM_24")):
        code, _, err = run(capsys, "reconstruct", src, "-o", tmp_path / out, "--subtype", subtype, *model)
        assert code == 0, err
        assert sf.info(tmp_path / out).subtype == subtype
    assert run(capsys, "reconstruct", src, "-o", tmp_path / "d.wav", *model)[0] == 0
    assert sf.info(tmp_path / "d.wav").subtype == "PCM_24"  # the default
    code, _, err = run(capsys, "reconstruct", src, "-o", tmp_path / "e.flac", "--subtype", "FLOAT", *model)
    assert code == 1 and not (tmp_path / "e.flac").exists()
    assert err == (
        f"m2l: error: {tmp_path / 'e.flac'}: FLAC cannot hold FLOAT samples (use PCM_16 or PCM_24, or a .wav "
        "output)\n"
    )
    (tmp_path / "in2").mkdir()
    write_tone(tmp_path / "in2" / "x.wav", seconds=0.3)
    code, _, err = run(
        capsys,
        "reconstruct",
        tmp_path / "in2",
        "-o",
        tmp_path / "o",
        "--format",
        "flac",
        "--subtype",
        "FLOAT",
        *model,
    )
    assert code == 1 and not (tmp_path / "o").exists()
    assert_one_line_error(err, str(tmp_path / "o" / "x.flac"), "FLAC cannot hold FLOAT samples")


def test_outputs_get_the_permissions_open_would_give(tmp_path, capsys, model):
    src = write_tone(tmp_path / "in.wav", seconds=0.3)
    old = os.umask(0o022)
    try:
        assert run(capsys, "encode", src, "-o", tmp_path / "a.m2l", *model)[0] == 0
        assert run(capsys, "decode", tmp_path / "a.m2l", "-o", tmp_path / "b.flac", *model)[0] == 0
        assert run(capsys, "reconstruct", src, "-o", tmp_path / "c.wav", *model)[0] == 0
    finally:
        os.umask(old)
    for name in ("a.m2l", "b.flac", "c.wav"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


@pytest.mark.parametrize("audio_channels", [1, 2])
def test_outputs_keep_the_channels_of_the_input(tmp_path, capsys, audio_channels):
    """v1 and mono v2 models code each channel apart; a stereo v2 model codes both together,
    duplicating a mono input and giving mono back: mono and stereo inputs come back as they were."""
    import dataclasses

    from m2l_testing import MICRO2, random_model

    from m2l.formats import save_checkpoint

    cfg = dataclasses.replace(MICRO2, audio_channels=audio_channels)
    checkpoint = tmp_path / "v2.safetensors"
    save_checkpoint(checkpoint, random_model(cfg).state_dict(), cfg)
    model = ["--model", str(checkpoint), "--device", "cpu", "-q"]
    for channels in (1, 2):
        src = write_tone(tmp_path / f"in{channels}.wav", seconds=0.5, channels=channels)
        assert run(capsys, "reconstruct", src, "-o", tmp_path / f"r{channels}.wav", *model)[0] == 0
        assert run(capsys, "encode", src, "-o", tmp_path / f"e{channels}.m2l", *model)[0] == 0
        assert (
            run(capsys, "decode", tmp_path / f"e{channels}.m2l", "-o", tmp_path / f"d{channels}.wav", *model)[
                0
            ]
            == 0
        )
        for out in (f"r{channels}.wav", f"d{channels}.wav"):
            assert sf.info(tmp_path / out).channels == channels, out


def _corpus(folder, count=5):
    for i in range(count):
        rate, channels = (44100, 1) if i % 2 else (22050, 2)
        write_tone(folder / f"s{i}" / f"t{i}.wav", seconds=0.2 + 0.1 * i, rate=rate, channels=channels)


def _latents(out):
    return {p.relative_to(out).as_posix(): load_latents(p).latents for p in sorted(out.rglob("*.m2l"))}


def test_read_ahead_workers_give_the_same_latents_as_reading_in_turn(tmp_path, capsys, model):
    _corpus(tmp_path / "in")
    for workers in ("0", "2"):
        out = tmp_path / workers
        code, _, err = run(capsys, "encode", tmp_path / "in", "-o", out, *model, "--workers", workers)
        assert code == 0, err
    plain, ahead = _latents(tmp_path / "0"), _latents(tmp_path / "2")
    assert list(plain) == list(ahead) and len(plain) == 5
    assert all(torch.equal(plain[k], ahead[k]) for k in plain)


def test_outputs_are_written_while_the_next_files_encode(tmp_path, capsys, model, monkeypatch):
    """The first output's write waits for an encoder batch to run: written in turn with the
    network, it would wait in vain (and the test fails after the timeout)."""
    import threading

    import m2l.formats
    import m2l.packing

    writing, batch_while_writing, waited = threading.Event(), threading.Event(), []
    run_batch, save_latents = m2l.packing.run_batch, m2l.formats.save_latents

    def batch(*args, **kwargs):
        if writing.is_set():
            batch_while_writing.set()
        return run_batch(*args, **kwargs)

    def save(*args, **kwargs):
        if not writing.is_set():
            writing.set()
            waited.append(batch_while_writing.wait(timeout=30))
        return save_latents(*args, **kwargs)

    monkeypatch.setattr(m2l.packing, "run_batch", batch)
    monkeypatch.setattr(m2l.formats, "save_latents", save)
    _corpus(tmp_path / "in")
    code, _, err = run(capsys, "encode", tmp_path / "in", "-o", tmp_path / "out", *model)
    assert code == 0, err
    assert waited == [True] and len(_latents(tmp_path / "out")) == 5


def test_ranks_share_a_corpus_and_a_restart_may_use_another_rank_count(tmp_path, capsys, model, monkeypatch):
    _corpus(tmp_path / "in", count=7)
    assert run(capsys, "encode", tmp_path / "in", "-o", tmp_path / "one", *model)[0] == 0
    out = tmp_path / "ranks"
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")  # rank 0 of 3 finishes, then the job is killed
    code, _, err = run(capsys, "encode", tmp_path / "in", "-o", out, *model[:-1])
    assert code == 0 and "m2l: rank 0/3: encoded 3 of 3 files" in err
    first = {p: p.stat().st_mtime_ns for p in out.rglob("*.m2l")}
    assert len(first) == 3
    monkeypatch.setenv("WORLD_SIZE", "2")  # restarted with 2 ranks
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        code, _, err = run(capsys, "encode", tmp_path / "in", "-o", out, *model, "--skip-existing")
        assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in first} == first  # finished files left alone
    one, shared = _latents(tmp_path / "one"), _latents(out)
    assert list(one) == list(shared) and all(torch.equal(one[k], shared[k]) for k in one)
    monkeypatch.setenv("RANK", "2")
    code, _, err = run(capsys, "encode", tmp_path / "in", "-o", out, *model, "--skip-existing")
    assert code == 1 and "RANK=2 must be in [0, WORLD_SIZE=2)" in err


@pytest.mark.slow
def test_torchrun_with_two_ranks_writes_the_same_files_as_one_process(tmp_path, capsys, model):
    import subprocess
    import sys

    _corpus(tmp_path / "in")
    assert run(capsys, "encode", tmp_path / "in", "-o", tmp_path / "one", *model)[0] == 0
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "m2l", "encode", str(tmp_path / "in"), "-o", str(tmp_path / "two"), *model]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = _latents(tmp_path / "one"), _latents(tmp_path / "two")
    assert list(one) == list(two) and len(one) == 5 and all(torch.equal(one[k], two[k]) for k in one)


def test_a_run_folder_is_a_model_and_the_command_says_which_checkpoint(tmp_path, capsys):
    from train_testing import save_micro_state

    run_dir = tmp_path / "runs" / "x"
    newest = run_dir / "checkpoints" / "step-000000002.safetensors"
    newest.parent.mkdir(parents=True)
    save_micro_state(newest, step=2)
    src = write_tone(tmp_path / "a.wav", seconds=0.3)
    code, _, err = run(capsys, "encode", src, "-o", tmp_path / "a.m2l", "--model", run_dir, "--device", "cpu")
    assert code == 0, err
    assert f"(the newest checkpoint of run folder {run_dir}: {newest.resolve()})" in err
    save_micro_state(run_dir / "checkpoints" / "best.safetensors", step=1)
    code, _, err = run(capsys, "encode", src, "-o", tmp_path / "b.m2l", "--model", run_dir, "--device", "cpu")
    assert code == 0 and "(the best checkpoint of run folder" in err, err
    assert load_latents(tmp_path / "b.m2l").model_source.endswith("best.safetensors")


def test_encode_packs_files_into_shared_batches_and_can_pack_a_dataset(tmp_path, capsys, model, monkeypatch):
    from m2l import packing
    from m2l.loading import load

    for i in range(6):  # equal lengths: their windows share encoder batches
        write_tone(tmp_path / "in" / f"t{i}.wav", seconds=0.5, rate=44100, channels=1 + i % 2)
    batches = []
    original = packing.run_batch
    monkeypatch.setattr(
        packing,
        "run_batch",
        lambda c, p, f=False, limit=None: (batches.append(len(p)), original(c, p, f, limit)),
    )
    out, dataset = tmp_path / "out", tmp_path / "dataset"
    code, _, err = run(capsys, "encode", tmp_path / "in", "-o", out, *model[:-1], "--pack", dataset)
    assert code == 0, err
    assert max(batches) > 1 and len(batches) < 9  # 9 rows (mono + stereo) in fewer, shared passes
    assert "m2l: packed 6 files" in err and (dataset / "index.jsonl").is_file()
    codec = load(model[1], device="cpu")
    for path, latents in _latents(out).items():
        alone = codec.encode_file(tmp_path / "in" / path.replace(".m2l", ".wav")).latents
        torch.testing.assert_close(latents, alone, rtol=1e-4, atol=1e-5)
    rows = [json.loads(line) for line in (dataset / "index.jsonl").read_text().splitlines()]
    assert len(rows) == 6


def test_pack_needs_a_folder_and_one_process(tmp_path, capsys, model, monkeypatch):
    write_tone(tmp_path / "a.wav", seconds=0.3)
    code, _, err = run(
        capsys, "encode", tmp_path / "a.wav", "-o", tmp_path / "a.m2l", *model, "--pack", tmp_path / "d"
    )
    assert code == 1
    assert_one_line_error(err, "--pack needs an output folder")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    code, _, err = run(
        capsys, "encode", tmp_path / "a.wav", "-o", tmp_path / "o", *model, "--pack", tmp_path / "d"
    )
    assert code == 1 and "run `m2l pack OUT -o DATASET_DIR`" in err
    assert not (tmp_path / "d").exists()


def test_precision_bf16_autocasts_the_networks_and_writes_float32_latents(tmp_path, capsys, model):
    write_tone(tmp_path / "a.wav", seconds=0.6)
    for precision in ("fp32", "bf16"):
        code, _, err = run(
            capsys,
            "encode",
            tmp_path / "a.wav",
            "-o",
            tmp_path / f"{precision}.m2l",
            *model,
            "--precision",
            precision,
        )
        assert code == 0, err
    full, half = (load_latents(tmp_path / f"{p}.m2l").latents for p in ("fp32", "bf16"))
    assert half.dtype == torch.float32 and not torch.equal(full, half)
    assert (half - full).norm() / full.norm() < 0.05
    code, _, err = run(
        capsys, "encode", tmp_path / "a.wav", "-o", tmp_path / "x.m2l", *model, "--precision", "fp8"
    )
    assert code == 2 and "invalid choice" in err
    for precision in ("fp32", "bf16"):  # decoding too
        args = ["-o", tmp_path / f"{precision}.wav", *model, "--precision", precision, "--seed", "0"]
        assert run(capsys, "decode", tmp_path / "fp32.m2l", *args)[0] == 0
    full, half = (sf.read(tmp_path / f"{p}.wav", dtype="float32")[0] for p in ("fp32", "bf16"))
    assert full.shape == half.shape and not np.array_equal(full, half)
    assert np.linalg.norm(half - full) / np.linalg.norm(full) < 0.1


def test_under_torchrun_only_rank_0_draws_the_progress_bar(tmp_path, capsys, model, monkeypatch):
    _corpus(tmp_path / "in", count=4)
    monkeypatch.setenv("WORLD_SIZE", "2")
    errs = {}
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        code, _, errs[rank] = run(capsys, "encode", tmp_path / "in", "-o", tmp_path / "out", *model[:-1])
        assert code == 0, errs[rank]
        assert f"m2l: rank {rank}/2: encoded 2 of 2 files" in errs[rank]
    assert "encoded:" in errs["0"] and "encoded:" not in errs["1"]


def test_stereo_coding_is_mid_side_by_default_and_lr_on_request(tmp_path, capsys, model):
    pair = write_tone(tmp_path / "pair.wav", channels=2)
    code, _, err = run(capsys, "encode", pair, "-o", tmp_path / "ms.m2l", *model)
    assert code == 0, err
    code, _, err = run(capsys, "encode", pair, "-o", tmp_path / "lr.m2l", "--stereo", "lr", *model)
    assert code == 0, err
    ms, lr = load_latents(tmp_path / "ms.m2l"), load_latents(tmp_path / "lr.m2l")
    assert (ms.extra["stereo"], lr.extra["stereo"]) == ("ms", "lr")
    assert not torch.equal(ms.latents, lr.latents)
    code, _, err = run(capsys, "reconstruct", pair, "-o", tmp_path / "out.wav", "--stereo", "xy", *model)
    assert code == 2 and "invalid choice: 'xy'" in err


def test_encode_draws_each_file_s_windows_and_counts_files_as_they_finish(
    tmp_path, capsys, model, monkeypatch
):
    """On a terminal, `m2l encode FOLDER` draws a bar over the windows of the file being encoded,
    and its file bar moves as each file is written, not all at the end."""
    import sys
    from functools import partial

    from tqdm import tqdm

    from m2l.cli import codec as codec_commands
    from m2l.cli import jobs, report
    from m2l.cli.prefetch import WriteBehind

    for i, seconds in enumerate((2.0, 3.0, 2.5)):
        write_tone(tmp_path / "in" / f"{i}.wav", seconds=seconds)
    events: list[tuple] = []
    drawn = report.WithinFileBar.__call__

    def spy(self, task, done, total):
        events.append((task, done, total))
        drawn(self, task, done, total)

    class FileBar(tqdm):
        def update(self, n=1):
            events.append(("files", self.n + n))
            return super().update(n)

    monkeypatch.setattr(report.WithinFileBar, "__call__", spy)
    monkeypatch.setattr(jobs, "tqdm", FileBar)
    # each written file is counted when the next one is handed to the writer, whatever its timing
    monkeypatch.setattr(codec_commands, "WriteBehind", partial(WriteBehind, depth=1))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = run(
        capsys, "encode", tmp_path / "in", "-o", tmp_path / "out", *model[:-1], "--window", "1"
    )
    assert code == 0, err
    starts = [i for i, e in enumerate(events) if e[:2] == ("encoding", 0)]
    assert len(starts) == 3 and all(events[i][2] >= 2 for i in starts)  # a bar per file, over its windows
    for start in starts:  # each bar runs from 0 to its total, one window at a time
        total = events[start][2]
        assert events[start : start + total + 1] == [("encoding", done, total) for done in range(total + 1)]
    assert events.index(("files", 1)) < starts[-1]  # a file counted before the last one is encoded
    assert events[-1] == ("files", 3) and "encoding:   0%|" in err
