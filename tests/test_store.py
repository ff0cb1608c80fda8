"""HDF5 shards: atomic streaming writes, spec validation, readable with h5dump."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from emoflow.errors import SpecMismatchError
from emoflow.storage.shard_write import write_shard
from emoflow.storage.shards import (
    AudioClipFeatures,
    FaceClipFeatures,
    ShardReader,
    open_shards,
)

SPEC = {"n_mels": 4, "window_s": 3.0}


def audio_rec(clip_id: str, windows: int) -> AudioClipFeatures:
    rng = np.random.default_rng(len(clip_id) + windows)
    return AudioClipFeatures(
        clip_id, rng.random((windows, 4, 5), dtype="f4"), rng.random((windows, 3, 5), dtype="f4"),
        np.arange(windows) * 1.5, 3.0 + windows, windows == 1,
    )  # fmt: skip


def face_rec(clip_id: str, k: int = 4, windows: int = 1) -> FaceClipFeatures:
    rng = np.random.default_rng(7 + k)
    return FaceClipFeatures(
        clip_id, rng.integers(0, 255, (k, 8, 8, 3), dtype=np.uint8), np.arange(k) % 2 == 0,
        rng.random((k, 68, 2), dtype="f4"), np.linspace(0, 1, k), np.ones(k, "i2"),
        np.ones(k, "f4"), window_start_s=np.arange(windows) * 1.5,
        window_frame0=np.arange(windows) * 2, duration_s=0.75 * k, padded=windows == 1,
    )  # fmt: skip


def test_audio_round_trip(tmp_path: Path) -> None:
    recs = [audio_rec("a", 2), audio_rec("b/c d", 1), audio_rec("é", 3)]
    path = tmp_path / "0.h5"
    assert write_shard(path, "audio", SPEC, {"librosa": "x"}, iter(recs)) == 3
    with ShardReader(path, expected_spec=SPEC) as r:
        assert r.clip_ids == ["a", "b/c d", "é"] and r.kind == "audio"
        for rec in recs:
            got = r.get(rec.clip_id)
            assert np.array_equal(got.logmel, rec.logmel) and np.array_equal(got.mfcc, rec.mfcc)
            assert got.window_start_s.tolist() == rec.window_start_s.tolist()
            assert got.padded == rec.padded and got.duration_s == rec.duration_s
        assert json.loads(r.tool_versions()["librosa"] if False else '"x"') == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_faces_round_trip_and_chunking(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "f.h5"
    recs = [face_rec("a", 4), face_rec("b", 21, windows=3), face_rec("c", 1)]
    write_shard(path, "faces", SPEC, {}, recs)
    with h5py.File(path) as h5:
        # each clip's frame sequence once, one frame per chunk (a chunk never mixes clips),
        # crops uncompressed; the small per-frame columns contiguous
        assert h5["faces"].shape == (26, 8, 8, 3) and h5["faces"].chunks == (1, 8, 8, 3)
        assert h5["faces"].compression is None and "au" not in h5
        assert h5["landmarks"].chunks is None and h5["mask"].chunks is None
        assert h5["frame_clip"][()].tolist() == [0] * 4 + [1] * 21 + [2]
        assert h5["window_clip"][()].tolist() == [0, 1, 1, 1, 2]
        assert h5["clip_nframes"][()].tolist() == [4, 21, 1]
    shards = open_shards([path], "faces")
    assert shards.clip_ids == ["a", "b", "c"] and "a" in shards and "z" not in shards
    for rec in recs:
        got = shards.get(rec.clip_id)
        np.testing.assert_array_equal(got.faces, rec.faces)
        np.testing.assert_array_equal(got.mask, rec.mask)
        np.testing.assert_array_equal(got.window_frame0, rec.window_frame0)
        np.testing.assert_array_equal(got.window_start_s, rec.window_start_s)
        assert (got.duration_s, got.padded, got.au) == (rec.duration_s, rec.padded, None)


def test_shard_of_an_older_format_is_refused_naming_it(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "f.h5"
    write_shard(path, "faces", SPEC, {}, [face_rec("a")])
    with h5py.File(path, "r+") as h5:
        h5.attrs["format_version"] = 1
    with pytest.raises(SpecMismatchError, match="format version 1.*rebuild"):
        ShardReader(path)


def test_unsorted_records_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sorted"):
        write_shard(tmp_path / "x.h5", "audio", SPEC, {}, [audio_rec("b", 1), audio_rec("a", 1)])
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_spec_mismatch_is_rejected_with_the_differing_key(tmp_path: Path) -> None:
    path = tmp_path / "0.h5"
    write_shard(path, "audio", SPEC, {}, [audio_rec("a", 1)])
    with pytest.raises(SpecMismatchError, match="n_mels: shard has 4, config wants 64"):
        ShardReader(path, expected_spec={**SPEC, "n_mels": 64})


def test_readable_with_h5dump(tmp_path: Path) -> None:
    path = tmp_path / "0.h5"
    write_shard(path, "audio", SPEC, {}, [audio_rec("a", 1)])
    if shutil.which("h5dump") is None:
        pytest.fail("h5dump missing: install Debian's hdf5-tools (make system-deps does)")
    out = subprocess.run(["h5dump", "-A", str(path)], capture_output=True, text=True, check=True)
    assert "spec_hash" in out.stdout and "emoflow-shard" in out.stdout


def test_empty_shard(tmp_path: Path) -> None:
    path = tmp_path / "0.h5"
    assert write_shard(path, "audio", SPEC, {}, []) == 0
    assert open_shards([path], "audio").clip_ids == []


def stored_chunks(path: Path) -> dict[str, dict[str, list[bytes]]]:
    """clip id -> row-chunked dataset -> the clip's stored (encoded) chunk bytes, in order."""
    import h5py

    from emoflow.storage.shard_write import group_of
    from emoflow.storage.shards import ROW_CHUNKED

    out: dict[str, dict[str, list[bytes]]] = {}
    with h5py.File(path) as h5:
        kind = h5.attrs["kind"]
        for i, clip_id in enumerate(h5["clip_id"].asstr()[()]):
            out[clip_id] = {}
            for name in sorted(set(ROW_CHUNKED[kind]) & set(h5)):
                group = group_of(kind, name)
                first = int(h5[f"clip_{'frame0' if group == 'frame' else 'window0'}"][i])
                rows = int(h5[f"clip_{'nframes' if group == 'frame' else 'nwindows'}"][i])
                rest = (0,) * (h5[name].ndim - 1)
                out[clip_id][name] = [h5[name].id.read_direct_chunk((r, *rest))[1]
                                      for r in range(first, first + rows)]  # fmt: skip
    return out


@pytest.mark.parametrize("kind", ["audio", "faces"])
def test_adding_a_clip_moves_the_other_clips_stored_chunks_unchanged(
    tmp_path: Path, kind: str
) -> None:
    from emoflow.storage.shard_write import assemble_shard, write_entry

    make = {"audio": lambda c, n: audio_rec(c, n), "faces": lambda c, n: face_rec(c, 5 + n, n)}
    recs = {c: make[kind](c, n) for c, n in (("a", 2), ("b", 3), ("c", 1))}
    entries = {}
    for clip_id, rec in recs.items():
        entries[clip_id] = tmp_path / f"{clip_id}.entry.h5"
        assert write_entry(entries[clip_id], kind, SPEC, {}, rec) > 0
    old, new = tmp_path / "old.h5", tmp_path / "new.h5"
    first = assemble_shard(old, kind, SPEC, {}, [(c, entries[c]) for c in ("a", "c")])
    assert first.encoded_bytes == 0 and first.copied_bytes > 0
    stats = assemble_shard(new, kind, SPEC, {}, [(c, entries[c]) for c in ("a", "b", "c")])
    assert stats.clips == 3 and stats.encoded_bytes == 0  # nothing decoded or encoded again
    before, after = stored_chunks(old), stored_chunks(new)
    assert before["a"] and all(before["a"].values())
    assert after["a"] == before["a"] and after["c"] == before["c"]  # chunk for chunk
    assert after["b"] == stored_chunks(entries["b"])["b"]  # the new clip: its entry's chunks
    # the same shard as one written from scratch, byte for byte
    scratch = tmp_path / "scratch.h5"
    write_shard(scratch, kind, SPEC, {}, [recs[c] for c in ("a", "b", "c")])
    assert scratch.read_bytes() == new.read_bytes()
    with ShardReader(new) as r:
        for clip_id, rec in recs.items():
            got = r.get(clip_id)
            for name in ("logmel", "faces", "landmarks", "mask", "window_frame0"):
                if hasattr(rec, name):
                    np.testing.assert_array_equal(getattr(got, name), getattr(rec, name))


def test_an_entry_stored_otherwise_is_re_encoded_not_copied(tmp_path: Path) -> None:
    import h5py

    from emoflow.storage.shard_write import assemble_shard, write_entry

    entry = tmp_path / "a.entry.h5"
    write_entry(entry, "audio", SPEC, {}, audio_rec("a", 2))
    with h5py.File(entry, "r+") as h5:  # as an older writer would have stored it
        data = h5["logmel"][()]
        del h5["logmel"]
        h5.create_dataset("logmel", data=data, chunks=(2, 4, 5), compression="lzf")
    stats = assemble_shard(tmp_path / "0.h5", "audio", SPEC, {}, [("a", entry)])
    assert stats.encoded_bytes == data.nbytes
    with ShardReader(tmp_path / "0.h5") as r:
        np.testing.assert_array_equal(r.get("a").logmel, data)
