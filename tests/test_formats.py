import json
import os
import struct
from dataclasses import replace

import pytest
import torch
from m2l_testing import random_model

from m2l.config import preset
from m2l.errors import M2LError
from m2l.formats import (
    STATE_FORMAT,
    Kind,
    LatentFile,
    atomic_save,
    load_checkpoint,
    load_latents,
    safetensors_metadata,
    save_checkpoint,
    save_latents,
    sniff,
)


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


def _rewrite_header(path, **changes):
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"].update(changes)
    blob = json.dumps(header).encode()
    blob += b" " * ((8 - len(blob) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data[8 + size :])


def test_future_version_and_wrong_kind_of_file(tmp_path):
    path = tmp_path / "a.m2l"
    save_latents(path, _lf())
    _rewrite_header(path, version="99")
    with pytest.raises(M2LError, match="newer"):
        load_latents(path)
    save_latents(path, _lf(), force=True)
    _rewrite_header(path, length="-5")
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
    atomic_save({"x": torch.ones(2)}, {"format": "other"}, tmp_path / "o.safetensors", False)
    cases[tmp_path / "o.safetensors"] = Kind.SAFETENSORS
    torch.save({"gen_state_dict": {"w": torch.ones(2)}}, tmp_path / "music2latent.pt")
    cases[tmp_path / "music2latent.pt"] = Kind.AUTHORS_CHECKPOINT
    for ext, fmt in ((".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG"), (".aiff", "AIFF")):
        sf.write(str(tmp_path / f"t{ext}"), np.zeros(800, np.float32), 8000, format=fmt)
        cases[tmp_path / f"t{ext}"] = Kind.AUDIO
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
        assert (found.metadata is not None) == (
            kind.value in ("latents", "checkpoint", "training-state", "safetensors")
        )
    found = sniff(tmp_path / "c.safetensors")
    assert found.format == "m2l-checkpoint" and "config" in found.metadata
    assert (
        sniff(tmp_path / "o.safetensors").description
        == "a safetensors file of another format (format='other')"
    )


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
