"""`m2l.latents.shards` and `m2l.latents.index`: writing shards, rolling them, the index, damage."""

from __future__ import annotations

import json

import pytest
import torch
from latents_testing import flip_byte, random_latent_file
from m2l_testing import assert_one_line_error

from m2l.errors import M2LError
from m2l.formats import safetensors_metadata, tensors_digest
from m2l.latents.index import INDEX_NAME, LAYOUTS, read_index
from m2l.latents.shards import SHARD_FORMAT, SHARD_VERSION, Shard, ShardWriter
from m2l.latents.store import LatentStore


def _write(folder, files, shard_bytes=1 << 20, force=False):
    with ShardWriter(folder, shard_bytes=shard_bytes, force=force) as writer:
        for i, lf in enumerate(files):
            writer.add(lf, source=f"f{i}.m2l", manifest={"licence": "CC0", "n": i} if i == 0 else None)
    return writer.entries


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_rows_are_concatenated_along_time_and_read_back_exactly(tmp_path, kind):
    files = [random_latent_file(kind, channels=1 + i % 2, frames=10 + 7 * i, seed=i) for i in range(3)]
    entries = _write(tmp_path, files)
    assert [e.offset for e in entries] == [0, 10, 10 + 2 * 17]  # file 1 has two rows of 17
    assert {e.shard for e in entries} == {"shard-000000.safetensors"}
    shard = Shard(tmp_path / entries[0].shard, expected=entries[0])
    layout = LAYOUTS[kind]
    assert shard.units == 10 + 2 * 17 + 24 and shard.layout == layout
    for entry, lf in zip(entries, files, strict=True):
        for row in range(entry.channels):
            got = shard.read(entry.row_start(row), entry.row_start(row) + entry.frames)
            assert torch.equal(got, lf.latents[row])
    meta = safetensors_metadata(tmp_path / entries[0].shard)
    assert meta["format"] == SHARD_FORMAT and meta["version"] == str(SHARD_VERSION)
    assert meta["files"] == "3" and meta["kind"] == kind
    shard.verify(piece_bytes=100)  # streamed in many pieces, same digest as tensors_digest


def test_the_streamed_digest_is_the_formats_digest(tmp_path):
    entries = _write(tmp_path, [random_latent_file("v2", channels=2, frames=9)])
    shard = Shard(tmp_path / entries[0].shard)
    whole = {"latents": shard.read(0, shard.units)}
    assert shard.metadata["tensors_sha256"] == tensors_digest(whole)


def test_the_index_lists_every_file_with_what_decoding_needs(tmp_path):
    lf = random_latent_file("v2", channels=2, frames=6)
    _write(tmp_path, [lf, random_latent_file("v2", frames=4, seed=1)])
    lines = (tmp_path / INDEX_NAME).read_text().splitlines()
    row = json.loads(lines[0])
    assert row["manifest"] == {"licence": "CC0", "n": 0} and "manifest" not in json.loads(lines[1])
    assert (row["source"], row["frames"], row["channels"], row["kind"]) == ("f0.m2l", 6, 2, "v2")
    assert (row["sample_rate"], row["length"], row["left_pad"]) == (lf.sample_rate, lf.length, lf.left_pad)
    assert (row["model_id"], row["config_hash"], row["latent_scale"]) == (lf.model_id, lf.config_hash, 1.0)
    assert row["extra"] == {"audio_channels": 2} and row["model_source"] == lf.model_source
    assert [e.source for e in read_index(tmp_path)] == ["f0.m2l", "f1.m2l"]


def test_shards_roll_at_the_size_limit(tmp_path):
    # v1 files of 1 x 64 x 10 floats = 2560 bytes each; a limit of 6000 bytes holds two
    files = [random_latent_file(frames=10, seed=i) for i in range(5)]
    files.insert(3, random_latent_file(channels=2, frames=40, seed=9))  # 20480 bytes: a shard alone
    entries = _write(tmp_path, files, shard_bytes=6000)
    shards = [e.shard for e in entries]
    assert shards == [f"shard-00000{n}.safetensors" for n in (0, 0, 1, 2, 3, 3)]
    assert sorted(p.name for p in tmp_path.glob("shard-*")) == sorted(set(shards))
    assert [e.offset for e in entries] == [0, 10, 0, 0, 0, 10]
    store = LatentStore(tmp_path)
    for number, (entry, lf) in enumerate(zip(entries, files, strict=True)):
        for row in range(entry.channels):
            assert torch.equal(store.read(number, row, 0, entry.frames), lf.latents[row])


def test_a_flipped_byte_in_a_shard_is_refused_in_one_line(tmp_path):
    entries = _write(tmp_path, [random_latent_file(frames=30)])
    path = tmp_path / entries[0].shard
    flip_byte(path)  # inside the latents: the header still opens
    with pytest.raises(M2LError) as err:
        Shard(path, expected=entries[0]).verify()
    assert_one_line_error(err, str(path), "does not match its checksum")
    with pytest.raises(M2LError) as err:
        LatentStore(tmp_path).read(0, 0, 0, 5)  # verify is on by default
    assert_one_line_error(err, str(path), "does not match its checksum")
    assert LatentStore(tmp_path, verify=False).read(0, 0, 0, 5).shape == (64, 5)  # the header is fine


def test_a_damaged_shard_header_is_refused_in_one_line(tmp_path):
    entries = _write(tmp_path, [random_latent_file(frames=30)])
    path = tmp_path / entries[0].shard
    data = bytearray(path.read_bytes())
    at = data.index(b'"files":"1"') + len(b'"files":"')
    data[at] = ord("7")
    path.write_bytes(bytes(data))
    with pytest.raises(M2LError) as err:
        LatentStore(tmp_path, verify=False).read(0, 0, 0, 5)
    assert_one_line_error(err, str(path), "metadata does not match its checksum")
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(M2LError) as err:
        Shard(path)
    assert_one_line_error(err, str(path), "not a readable latent shard")


def test_a_shard_from_another_pack_is_refused(tmp_path):
    _write(tmp_path / "a", [random_latent_file(frames=30)])
    _write(tmp_path / "b", [random_latent_file(frames=30, seed=5)])
    (tmp_path / "b" / "shard-000000.safetensors").replace(tmp_path / "a" / "shard-000000.safetensors")
    with pytest.raises(M2LError) as err:
        LatentStore(tmp_path / "a", verify=False).read(0, 0, 0, 5)
    assert_one_line_error(err, "shard-000000.safetensors", "not the shard the index was written with")


def test_an_interrupted_pack_lists_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), ShardWriter(tmp_path, shard_bytes=3000) as writer:
        for i in range(3):
            writer.add(random_latent_file(frames=10, seed=i), source=f"f{i}.m2l")
        raise KeyboardInterrupt
    assert list(tmp_path.glob("shard-*")) and not (tmp_path / INDEX_NAME).exists()
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(M2LError) as err:
        read_index(tmp_path)
    assert_one_line_error(err, str(tmp_path), "no index.jsonl")


def test_an_existing_dataset_needs_force_and_force_removes_stale_shards(tmp_path):
    _write(tmp_path, [random_latent_file(frames=10, seed=i) for i in range(4)], shard_bytes=3000)
    assert len(list(tmp_path.glob("shard-*"))) == 4
    with pytest.raises(M2LError) as err:
        ShardWriter(tmp_path)
    assert_one_line_error(err, str(tmp_path / INDEX_NAME), "already exists")
    (tmp_path / INDEX_NAME).unlink()  # shards without an index (an interrupted pack) count too
    with pytest.raises(M2LError) as err:
        ShardWriter(tmp_path)
    assert_one_line_error(err, "shard-000000.safetensors", "already exists")
    _write(tmp_path, [random_latent_file(frames=10, seed=7)], force=True)
    assert [p.name for p in tmp_path.glob("shard-*")] == ["shard-000000.safetensors"]
    assert len(read_index(tmp_path)) == 1


def test_files_of_two_models_are_refused(tmp_path):
    with pytest.raises(M2LError) as err, ShardWriter(tmp_path) as writer:
        writer.add(random_latent_file(model_id="a@1"), source="a.m2l")
        writer.add(random_latent_file(model_id="b@2"), source="b.m2l")
    assert_one_line_error(err, "b.m2l", "b@2", "a@1", "one model")
    with pytest.raises(M2LError) as err, ShardWriter(tmp_path / "2") as writer:
        writer.add(random_latent_file("v1"), source="a.m2l")
        writer.add(random_latent_file("v2"), source="b.m2l")
    assert_one_line_error(err, "b.m2l", "one model")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"frames": 0}, "'frames' must be a positive integer"),
        ({"shard": "../escape.safetensors"}, "'shard' must be a shard file name"),
        ({"kind": "v3"}, "'kind' must be one of"),
        ({"latent_scale": True}, "'latent_scale'"),
        ({"offset": None}, "'offset'"),
    ],
)
def test_a_malformed_index_row_is_one_line_naming_the_line(tmp_path, change, fragment):
    _write(tmp_path, [random_latent_file(frames=10, seed=i) for i in range(2)])
    index = tmp_path / INDEX_NAME
    lines = index.read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), **change})
    index.write_text("\n".join(lines) + "\n")
    with pytest.raises(M2LError) as err:
        read_index(tmp_path)
    assert_one_line_error(err, f"{index}:2", fragment)


def test_bad_latents_and_arguments_are_refused(tmp_path):
    with pytest.raises(M2LError):
        ShardWriter(tmp_path, shard_bytes=0)
    lf = random_latent_file(frames=5)
    bad = type(lf)(
        **{**lf.__dict__, "latents": lf.latents.clone().index_fill_(2, torch.tensor([1]), float("nan"))}
    )
    with pytest.raises(M2LError) as err, ShardWriter(tmp_path) as writer:
        writer.add(bad, source="nan.m2l")
    assert_one_line_error(err, "nan.m2l", "NaN")
    with pytest.raises(M2LError) as err:
        ShardWriter(tmp_path / "empty").close()
    assert_one_line_error(err, "nothing to write")
