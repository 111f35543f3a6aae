"""`m2l.latents.dataset` (and the store under it): crops equal the original latents, only the crop
is read, determinism, normalisation, decoding crops."""

from __future__ import annotations

import json
import struct
import time

import pytest
import torch
from latents_testing import encoded_folder, flip_byte, micro_codec, random_folder, random_latent_file
from m2l_testing import assert_one_line_error
from torch.utils.data import DataLoader

from m2l.errors import M2LError
from m2l.formats import load_latents, metadata_digest
from m2l.latents import shards
from m2l.latents.dataset import LatentCropDataset, decode_crops
from m2l.latents.index import Entry, write_index
from m2l.latents.pack import pack_folder
from m2l.latents.stats import compute_stats


@pytest.fixture(scope="module", params=["v1", "v2"])
def encoded(request, tmp_path_factory):
    """(codec, folder of .m2l files it encoded, that folder packed in tiny shards)."""
    codec = micro_codec(request.param)
    root = tmp_path_factory.mktemp(f"encoded-{request.param}")
    encoded_folder(root / "latents", codec)
    pack_folder(root / "latents", root / "dataset", shard_bytes=20_000)
    return codec, root / "latents", root / "dataset"


def test_crops_of_a_pack_equal_slices_of_the_original_latents(encoded):
    codec, latents, dataset = encoded
    crop = 2 if codec.version == "v2" else 12
    data = LatentCropDataset(dataset, crop, seed=3, items=40, with_metadata=True)
    assert len({data.store.entries[e].shard for e, _ in data.segments}) > 1  # several shards
    originals = {e.source: load_latents(latents / e.source).latents for e in data.store.entries}
    axis = codec.latent_time_axis
    for i in range(len(data)):
        z, meta = data[i]
        row = originals[meta["source"]][meta["row"]]
        assert torch.equal(z, row.narrow(axis, meta["start"], crop)), i
        assert z.dtype == torch.float32 and z.shape[axis] == crop
    folder = LatentCropDataset(latents, crop, seed=3, items=40)  # the .m2l folder gives the same crops
    assert all(torch.equal(folder[i], data[i][0]) for i in range(len(data)))


def test_crops_are_deterministic_per_seed_index_and_epoch(tmp_path):
    random_folder(tmp_path)
    a, b = LatentCropDataset(tmp_path, 6, seed=1), LatentCropDataset(tmp_path, 6, seed=1)
    assert all(torch.equal(a[i], b[i]) for i in range(len(a)))
    assert [a.start_of(i) for i in range(len(a))] == [b.start_of(i) for i in reversed(range(len(b)))][::-1]
    other = LatentCropDataset(tmp_path, 6, seed=2)
    assert any(a.start_of(i) != other.start_of(i) for i in range(len(a)))
    before = [a.start_of(i) for i in range(len(a))]
    a.set_epoch(1)
    assert [a.start_of(i) for i in range(len(a))] != before
    a.set_epoch(0)
    assert [a.start_of(i) for i in range(len(a))] == before
    with pytest.raises(IndexError):
        a[len(a)]


def test_short_files_are_skipped_and_counted(tmp_path):
    random_folder(tmp_path, frames=(20, 35, 8, 50))  # rows: 1, 2, 1, 2
    data = LatentCropDataset(tmp_path, 21)
    assert data.skipped == 2 and len(data) == 4  # the 20- and 8-frame files
    assert {data.store.entries[e].frames for e, _ in data.segments} == {35, 50}
    with pytest.raises(M2LError) as err:
        LatentCropDataset(tmp_path, 51)
    assert_one_line_error(err, str(tmp_path), "no file is 51 units long", "50")


def test_a_crop_reads_only_its_slice(tmp_path, monkeypatch):
    random_folder(tmp_path / "latents", frames=(400, 300))
    pack_folder(tmp_path / "latents", tmp_path / "dataset")
    read: list[tuple[int, ...]] = []

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def __getitem__(self, index):
            out = self.inner[index]
            read.append(tuple(out.shape))
            return out

        def __getattr__(self, name):
            return getattr(self.inner, name)

    class Opened:
        def __init__(self, *args, **kwargs):
            self.inner = real(*args, **kwargs)

        def get_slice(self, name):
            return Spy(self.inner.get_slice(name))

        def get_tensor(self, name):
            raise AssertionError("a whole tensor was loaded")

        def __getattr__(self, name):
            return getattr(self.inner, name)

    real = shards.safe_open
    monkeypatch.setattr(shards, "safe_open", Opened)
    data = LatentCropDataset(tmp_path / "dataset", 16, verify=False)
    for i in range(len(data)):
        data[i]
    assert read == [(16, 64)] * len(data)  # v1 shards keep time first: one range per crop


def _sparse_shard(folder, units):
    """A shard whose header promises [units, 64] float32 latents, written as a sparse file."""
    nbytes = 64 * units * 4
    meta = {"format": shards.SHARD_FORMAT, "version": "1", "kind": "v1", "model_id": "huge@1"}
    meta.update(model_source="", config_hash="huge", latent_scale="0.06", sample_rate="44100")
    meta.update(files="1", units=str(units), tensors_sha256="0" * 64)
    meta["sha256"] = metadata_digest(meta)
    header = {"latents": {"dtype": "F32", "shape": [units, 64], "data_offsets": [0, nbytes]}}
    blob = json.dumps({**header, "__metadata__": meta}).encode()
    blob += b" " * (-len(blob) % 8)
    path = folder / shards.shard_name(0)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        f.truncate(8 + len(blob) + nbytes)
    entry = Entry("huge.m2l", path.name, 0, units, 1, "v1", "huge@1", "huge", 0.06, 44100, units * 4096, 3072)
    write_index(folder, [Entry(**{**entry.__dict__, "shard_sha256": meta["sha256"]})], force=False)


def test_crops_of_a_shard_far_larger_than_memory_are_cheap(tmp_path):
    _sparse_shard(tmp_path, 1 << 26)  # 16 GiB of latents (a sparse file: nothing on disk)
    data = LatentCropDataset(tmp_path, 256, items=200, verify=False)
    start = time.perf_counter()
    crops = [data[i] for i in range(len(data))]
    assert time.perf_counter() - start < 10
    assert all(z.shape == (64, 256) and not z.any() for z in crops)
    assert len({data.start_of(i)[2] for i in range(len(data))}) == len(data)  # spread over the shard


def test_normalised_crops_have_zero_mean_and_unit_std_over_the_corpus(tmp_path):
    for kind in ("v1", "v2"):
        random_folder(tmp_path / kind, kind, frames=(30, 30, 30))
        stats = compute_stats(tmp_path / kind)
        stats.save(tmp_path / f"{kind}.json")
        data = LatentCropDataset(tmp_path / kind, 30, stats=tmp_path / f"{kind}.json")
        vectors = torch.cat([data.store.layout.vectors(data[i]) for i in range(len(data))]).double()
        assert vectors.mean(0).abs().max() < 1e-5 and (vectors.std(0, correction=0) - 1).abs().max() < 1e-5
        raw = LatentCropDataset(tmp_path / kind, 30)
        assert torch.allclose(data.denormalize(data[0]), raw[0], atol=1e-5)
        pooled = LatentCropDataset(tmp_path / kind, 30, stats=stats, normalize="global")
        values = torch.cat([pooled[i].reshape(-1) for i in range(len(pooled))]).double()
        assert abs(values.mean()) < 1e-5 and abs(values.std(correction=0) - 1) < 1e-5
        assert torch.allclose(pooled.denormalize(pooled[1]), raw[1], atol=1e-5)


def test_stats_of_another_model_are_refused(tmp_path):
    random_folder(tmp_path / "a", model_id="a@1")
    random_folder(tmp_path / "b", model_id="b@1")
    stats = compute_stats(tmp_path / "b")
    with pytest.raises(M2LError) as err:
        LatentCropDataset(tmp_path / "a", 5, stats=stats)
    assert_one_line_error(err, "b@1", "a@1")


def test_decoding_crops_gives_their_audio(encoded):
    codec, latents, dataset = encoded
    crop = 2 if codec.version == "v2" else 12
    stats = compute_stats(latents)
    data = LatentCropDataset(dataset, crop, items=3, stats=stats)
    batch = torch.stack([data[i] for i in range(3)])
    audio = data.decode(codec, batch, seed=0)
    assert audio.shape == (3, 1, crop * codec.samples_per_unit)
    raw = torch.stack([LatentCropDataset(dataset, crop, items=3)[i] for i in range(3)])
    assert torch.allclose(audio, codec.decode(raw[:, None], seed=0), atol=1e-4)
    one = decode_crops(codec, raw[0], seed=0)
    assert one.shape == (1, crop * codec.samples_per_unit)
    with pytest.raises(M2LError):
        decode_crops(codec, raw[0][None, None], seed=0)


def test_a_data_loader_batches_crops_and_metadata(tmp_path):
    random_folder(tmp_path / "latents", "v2", frames=(9, 12, 10, 11))
    pack_folder(tmp_path / "latents", tmp_path / "dataset", shard_bytes=30_000)
    data = LatentCropDataset(tmp_path / "dataset", 4, with_metadata=True)
    loader = DataLoader(data, batch_size=3, num_workers=1)
    batches = list(loader)
    z, meta = batches[0]
    assert z.shape == (3, 4, 4, 64) and meta["row"].tolist() == [data.start_of(i)[1] for i in range(3)]
    assert torch.equal(
        torch.cat([b[0] for b in batches]), torch.stack([data[i][0] for i in range(len(data))])
    )


def test_bad_arguments_are_one_line_errors(tmp_path):
    random_latent_file(frames=10).save(tmp_path / "a.m2l")
    for kwargs, fragment in [
        ({"crop_frames": 0}, "crop_frames"),
        ({"crop_frames": 5, "seed": -1}, "seed"),
        ({"crop_frames": 5, "normalize": "max"}, "normalize"),
        ({"crop_frames": 5, "items": 0}, "items"),
    ]:
        with pytest.raises(M2LError) as err:
            LatentCropDataset(tmp_path, **kwargs)
        assert_one_line_error(err, fragment)


def test_a_damaged_m2l_file_in_a_folder_is_refused_when_first_read(tmp_path):
    paths = random_folder(tmp_path, frames=(20, 20))
    flip_byte(paths[0])
    data = LatentCropDataset(tmp_path, 5)  # headers are fine: cataloguing works
    number = next(n for n, e in enumerate(data.store.entries) if e.source == "file0.m2l")
    with pytest.raises(M2LError) as err:
        data.crop(number, 0, 0)
    assert_one_line_error(err, str(paths[0]), "does not match its checksum")
    assert LatentCropDataset(tmp_path, 5, verify=False).crop(number, 0, 0).shape == (64, 5)
