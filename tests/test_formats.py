import os
import struct
import warnings
from dataclasses import replace

import pytest
import torch
from m2l_testing import flip_bit_in_value, make_version_1, random_model, rewrite_header

from m2l.config import preset
from m2l.errors import M2LError
from m2l.formats import (
    STATE_FORMAT,
    Kind,
    LatentFile,
    LegacyChecksumWarning,
    atomic_save,
    load_checkpoint,
    load_latents,
    safetensors_metadata,
    save_checkpoint,
    save_latents,
    seal,
    sniff,
    training_state_weights,
)
from m2l.sniff import GENERATOR_FORMAT, GENERATOR_STATE_FORMAT


def _lf(frames: int = 5) -> LatentFile:
    return LatentFile(
        latents=torch.randn(2, 64, frames),
        sample_rate=44100,
        length=frames * 4096,
        model_id="m@1",
        config_hash="abc",
        latent_scale=0.06,
        left_pad=1536,
    )


def test_latent_round_trip_and_no_temp_files(tmp_path):
    lf = _lf()
    save_latents(tmp_path / "a.m2l", lf)
    back = load_latents(tmp_path / "a.m2l")
    assert torch.equal(back.latents, lf.latents)
    assert (back.sample_rate, back.length, back.model_id, back.config_hash, back.left_pad) == (
        44100,
        lf.length,
        "m@1",
        "abc",
        1536,
    )
    assert back.channels == 2 and back.latent_scale == 0.06
    assert [p.name for p in tmp_path.iterdir()] == ["a.m2l"]


def test_a_latent_file_saves_itself(tmp_path):
    lf = replace(_lf(), model_source="default")
    lf.save(tmp_path / "a.m2l")
    back = load_latents(tmp_path / "a.m2l")
    assert torch.equal(back.latents, lf.latents) and back.model_source == "default"
    with pytest.raises(M2LError, match="already exists"):
        lf.save(tmp_path / "a.m2l")
    replace(lf, length=5).save(tmp_path / "a.m2l", force=True)
    assert load_latents(tmp_path / "a.m2l").length == 5


def test_refuses_overwrite_without_force(tmp_path):
    save_latents(tmp_path / "a.m2l", _lf())
    with pytest.raises(M2LError, match="exists"):
        save_latents(tmp_path / "a.m2l", _lf())
    save_latents(tmp_path / "a.m2l", _lf(3), force=True)
    assert load_latents(tmp_path / "a.m2l").latents.shape[-1] == 3


def test_tampered_and_truncated_latents_are_detected(tmp_path):
    path = tmp_path / "a.m2l"
    save_latents(path, _lf())
    data = bytearray(path.read_bytes())
    tampered = data.copy()
    tampered[-10] ^= 0xFF
    (tmp_path / "t.m2l").write_bytes(bytes(tampered))
    with pytest.raises(M2LError, match="checksum"):
        load_latents(tmp_path / "t.m2l")
    (tmp_path / "c.m2l").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(M2LError, match="c.m2l"):
        load_latents(tmp_path / "c.m2l")
    (tmp_path / "e.m2l").write_bytes(b"")
    with pytest.raises(M2LError, match="e.m2l"):
        load_latents(tmp_path / "e.m2l")


def test_future_version_and_wrong_kind_of_file(tmp_path):
    path = tmp_path / "a.m2l"
    save_latents(path, _lf())
    rewrite_header(path, version="99")
    with pytest.raises(M2LError, match="newer"):
        load_latents(path)
    save_latents(path, _lf(), force=True)
    rewrite_header(path, reseal=True, length="-5")
    with pytest.raises(M2LError, match="malformed"):
        load_latents(path)
    model = random_model("m2l-v1-tiny")
    save_checkpoint(tmp_path / "c.safetensors", model.state_dict(), model.cfg)
    with pytest.raises(M2LError, match="not an m2l-latents"):
        load_latents(tmp_path / "c.safetensors")


def test_checkpoint_round_trip_and_tamper(tmp_path):
    model = random_model("m2l-v1-tiny")
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model.state_dict(), model.cfg)
    state, cfg, meta = load_checkpoint(path)
    assert cfg == preset("m2l-v1-tiny")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(M2LError, match="checksum"):
        load_checkpoint(path)


LATENT_FIELDS = (
    "model_id",
    "model_source",
    "config_hash",
    "kind",
    "sample_rate",
    "length",
    "channels",
    "latent_scale",
    "left_pad",
    "extra",
    "tensors_sha256",
)


@pytest.mark.parametrize("key", LATENT_FIELDS)
def test_one_bit_in_any_latent_metadata_field_is_detected(tmp_path, key):
    path = tmp_path / "a.m2l"
    save_latents(path, replace(_lf(), model_source="default", extra={"audio_channels": 2}))
    flip_bit_in_value(path, key)
    with pytest.raises(M2LError, match="metadata does not match its checksum") as exc:
        load_latents(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("key", ["config", "extra", "tensors_sha256"])
def test_one_bit_in_any_checkpoint_metadata_field_is_detected(tmp_path, key):
    model = random_model("m2l-v1-tiny")
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model.state_dict(), model.cfg, extra={"step": 5})
    flip_bit_in_value(path, key)
    with pytest.raises(M2LError, match="metadata does not match its checksum"):
        load_checkpoint(path)


def test_version_1_files_are_read_with_one_warning_each(tmp_path):
    lf = _lf()
    model = random_model("m2l-v1-tiny")
    save_latents(tmp_path / "a.m2l", lf)
    save_checkpoint(tmp_path / "c.safetensors", model.state_dict(), model.cfg)
    _, _, new_meta = load_checkpoint(tmp_path / "c.safetensors")
    for name in ("a.m2l", "c.safetensors"):
        make_version_1(tmp_path / name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            back = load_latents(tmp_path / "a.m2l")
            state, cfg, meta = load_checkpoint(tmp_path / "c.safetensors")
    legacy = [str(w.message) for w in caught if issubclass(w.category, LegacyChecksumWarning)]
    assert len(legacy) == 2, legacy
    named = sorted(m.split(":")[0] for m in legacy)
    assert named == sorted(str(tmp_path / n) for n in ("a.m2l", "c.safetensors"))
    assert all("covers the tensors but not the metadata" in m for m in legacy)
    assert torch.equal(back.latents, lf.latents) and back.length == lf.length
    assert cfg == model.cfg and all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert meta["version"] == "1" and meta["tensors_sha256"] == new_meta["tensors_sha256"]
    data = bytearray((tmp_path / "a.m2l").read_bytes())
    data[-10] ^= 0xFF  # a version 1 file still has its tensors checked
    (tmp_path / "a.m2l").write_bytes(bytes(data))
    with pytest.raises(M2LError, match="checksum"):
        load_latents(tmp_path / "a.m2l")


BAD_LATENT_VALUES = [
    ("sample_rate", "44100.0", "not an integer"),
    ("sample_rate", "abc", "not an integer"),
    ("sample_rate", "1e400", "not an integer"),
    ("sample_rate", "\u0664\u0664\u0661\u0660\u0660", "not an integer"),  # Arabic-Indic digits
    ("sample_rate", "9" * 5000, "outside"),
    ("sample_rate", "1", "outside"),
    ("length", "-5", "outside"),
    ("length", "0", "outside"),
    ("length", "99999999999999999999999", "outside"),
    ("left_pad", "-1", "outside"),
    ("channels", "two", "not an integer"),
    ("channels", "3", "inconsistent"),
    ("latent_scale", "nan", "not a number"),
    ("latent_scale", "inf", "not a number"),
    ("latent_scale", "0", "outside"),
    ("latent_scale", "-0.06", "outside"),
    ("kind", "v9", "not one of"),
    ("model_id", "m@1\nforged line", "control characters"),
    ("extra", "[1, 2]", "expected a dict"),
    ("extra", "{not json", "not valid JSON"),
    ("extra", "[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ("extra", '{"a": ' * 40 + "1" + "}" * 40, "nests deeper"),
    ("extra", '{"pad": "' + "x" * (2 << 20) + '"}', "characters of JSON"),
    ("extra", '{"source_sample_rate": 44100.5}', "source_sample_rate=44100.5 is not an integer"),
    ("extra", '{"source_sample_rate": 12}', "source_sample_rate=12 is not an integer in 1000..768000"),
    ("extra", '{"source_sample_rate": true}', "source_sample_rate=True is not an integer"),
    ("version", "2.0", "not an integer"),
]


@pytest.mark.parametrize(("key", "value", "problem"), BAD_LATENT_VALUES)
def test_malformed_latent_metadata_is_one_line_naming_file_and_field(tmp_path, key, value, problem):
    path = tmp_path / "a.m2l"
    save_latents(path, _lf())
    rewrite_header(path, reseal=True, **{key: value})  # passes its checksum: only the value is wrong
    with pytest.raises(M2LError, match=problem) as exc:
        load_latents(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 400
    assert key in message or problem == "inconsistent"


def test_the_source_rate_is_read_when_recorded_and_none_for_older_files(tmp_path):
    save_latents(tmp_path / "new.m2l", replace(_lf(), extra={"source_sample_rate": 48000}))
    assert load_latents(tmp_path / "new.m2l").source_sample_rate == 48000
    save_latents(tmp_path / "old.m2l", _lf())  # as m2l wrote them before recording it
    assert load_latents(tmp_path / "old.m2l").source_sample_rate is None


def test_latent_files_and_checkpoints_get_the_permissions_open_would_give(tmp_path):
    model = random_model("m2l-v1-tiny")
    old = os.umask(0o022)
    try:
        save_latents(tmp_path / "a.m2l", _lf())  # safetensors itself creates its files 0o600
        save_checkpoint(tmp_path / "c.safetensors", model.state_dict(), model.cfg)
    finally:
        os.umask(old)
    for name in ("a.m2l", "c.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_missing_fields_and_empty_or_odd_latents_are_one_line_errors(tmp_path):
    path = tmp_path / "a.m2l"
    for key in ("sample_rate", "length", "left_pad", "latent_scale", "model_id", "channels"):
        save_latents(path, _lf(), force=True)
        rewrite_header(path, reseal=True, drop=(key,))
        with pytest.raises(M2LError, match=f"{key} is missing"):
            load_latents(path)
    for latents, problem in (
        (torch.zeros(2, 64, 0), "no frames"),
        (torch.full((2, 64, 3), float("nan")), "NaN"),
    ):
        save_latents(path, replace(_lf(), latents=latents), force=True)
        with pytest.raises(M2LError, match=problem):
            load_latents(path)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("config", "[1]", "expected a dict"),
        ("config", "null", "expected a dict"),
        ("config", "[" * 100_000, "not valid JSON"),
        ("extra", "[]", "expected a dict"),
    ],
)
def test_malformed_checkpoint_metadata_is_one_line(tmp_path, key, value, problem):
    model = random_model("m2l-v1-tiny")
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model.state_dict(), model.cfg)
    rewrite_header(path, reseal=True, **{key: value})
    with pytest.raises(M2LError, match=problem) as exc:
        load_checkpoint(path)
    assert str(exc.value).startswith(f"{path}: ") and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[" * 100_000, "not valid JSON"),
        ('{"kind": "v1"}', "malformed model config"),
        ("7", "expected a dict"),
    ],
)
def test_malformed_model_config_of_a_training_checkpoint_is_one_line(tmp_path, value, problem):
    path = tmp_path / "s.safetensors"
    tensors = {"ema.w": torch.ones(2)}
    atomic_save(
        tensors, seal(tensors, {"format": STATE_FORMAT, "version": "2", "model_config": value}), path, False
    )
    with pytest.raises(M2LError, match=problem) as exc:
        training_state_weights(path)
    assert str(exc.value).startswith(f"{path}: ") and "\n" not in str(exc.value)


def _sniff_cases(tmp_path):
    """One file of every kind `sniff` tells apart -> {path: expected kind}."""
    import numpy as np
    import soundfile as sf

    model = random_model("m2l-v1-tiny")
    cases = {}
    save_latents(tmp_path / "a.m2l", _lf())
    cases[tmp_path / "a.m2l"] = Kind.LATENTS
    save_checkpoint(tmp_path / "c.safetensors", model.state_dict(), model.cfg)
    cases[tmp_path / "c.safetensors"] = Kind.CHECKPOINT
    atomic_save({"ema.w": torch.ones(2)}, {"format": STATE_FORMAT}, tmp_path / "s.safetensors", False)
    cases[tmp_path / "s.safetensors"] = Kind.TRAINING_STATE
    atomic_save({"w": torch.ones(2)}, {"format": GENERATOR_FORMAT}, tmp_path / "g.safetensors", False)
    cases[tmp_path / "g.safetensors"] = Kind.GENERATOR
    atomic_save({"w": torch.ones(2)}, {"format": GENERATOR_STATE_FORMAT}, tmp_path / "gs.safetensors", False)
    cases[tmp_path / "gs.safetensors"] = Kind.GENERATOR_STATE
    atomic_save({"x": torch.ones(2)}, {"format": "other"}, tmp_path / "o.safetensors", False)
    cases[tmp_path / "o.safetensors"] = Kind.SAFETENSORS
    torch.save({"gen_state_dict": {"w": torch.ones(2)}}, tmp_path / "music2latent.pt")
    cases[tmp_path / "music2latent.pt"] = Kind.AUTHORS_CHECKPOINT
    for ext, fmt in ((".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG"), (".aiff", "AIFF")):
        sf.write(str(tmp_path / f"t{ext}"), np.zeros(800, np.float32), 8000, format=fmt)
        cases[tmp_path / f"t{ext}"] = Kind.AUDIO
    np.save(tmp_path / "z.npy", np.zeros((1, 64, 3), np.float32))
    cases[tmp_path / "z.npy"] = Kind.NUMPY
    for name, data in (
        ("junk.pt", b"not a checkpoint"),
        ("empty", b""),
        ("zip.zip", b"PK\x03\x04" + bytes(60)),
    ):
        (tmp_path / name).write_bytes(data)
        cases[tmp_path / name] = Kind.UNKNOWN
    return cases


def test_sniff_tells_every_kind_apart(tmp_path):
    for path, kind in _sniff_cases(tmp_path).items():
        found = sniff(path)
        assert (found.path, found.kind) == (path, kind), path.name
        with_header = ("latents", "checkpoint", "training-state", "generator", "generator-training-state")
        assert (found.metadata is not None) == (kind.value in (*with_header, "safetensors"))
    found = sniff(tmp_path / "c.safetensors")
    assert found.format == "m2l-checkpoint" and "config" in found.metadata
    assert (
        sniff(tmp_path / "o.safetensors").description
        == "a safetensors file of another format (format='other')"
    )


def test_a_file_that_is_not_an_m2l_file_is_named_for_what_it_is(tmp_path):
    import numpy as np
    import soundfile as sf

    np.save(tmp_path / "z.npy", np.zeros((1, 64, 3), np.float32))
    sf.write(str(tmp_path / "t.wav"), np.zeros(800, np.float32), 8000)
    (tmp_path / "junk.m2l").write_bytes(b"not a latent file at all")
    expected = {
        "z.npy": "is a NumPy array (.npy), not an m2l file; arrays decode with the API",
        "t.wav": "is an audio file, not an m2l file",
        "junk.m2l": "not a readable safetensors file (",
    }
    for name, message in expected.items():
        with pytest.raises(M2LError) as err:
            load_latents(tmp_path / name)
        assert str(err.value).startswith(f"{tmp_path / name}: {message}") and "\n" not in str(err.value)


def test_sniff_reads_only_the_header(tmp_path):
    save_latents(tmp_path / "a.m2l", _lf(2000))
    data = (tmp_path / "a.m2l").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    (tmp_path / "cut.m2l").write_bytes(data[: 8 + n + 16])  # header intact, tensors truncated
    found = sniff(tmp_path / "cut.m2l")
    assert found.kind is Kind.LATENTS and found.metadata["format"] == "m2l-latents"
    (tmp_path / "bad.m2l").write_bytes(data[:8] + b"{not json" + data[17:])
    assert (sniff(tmp_path / "bad.m2l").kind, sniff(tmp_path / "bad.m2l").metadata) == (
        Kind.SAFETENSORS,
        None,
    )
    assert safetensors_metadata(tmp_path / "bad.m2l") is None
    assert safetensors_metadata(tmp_path / "a.m2l")["format"] == "m2l-latents"


def test_sniff_refuses_what_is_not_a_regular_file_without_hanging(tmp_path):
    import signal

    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)

    def hung(*args):
        raise TimeoutError("opening a FIFO blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        for read in (sniff, load_latents, load_checkpoint, safetensors_metadata):
            try:
                result = read(fifo)
            except M2LError as err:
                assert str(err) == f"{fifo}: is a named pipe (FIFO), not a regular file"
            else:
                assert read is safetensors_metadata and result is None
        with pytest.raises(M2LError, match="is a directory"):
            sniff(tmp_path)
        with pytest.raises(M2LError, match="no such file"):
            sniff(tmp_path / "missing")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
