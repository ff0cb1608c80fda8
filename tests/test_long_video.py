"""Long videos at bounded cost: the featurizer cuts the track into windows as it decodes and
spools the log-mel windows and face crops to disk (memory flat with the clip's length), predict
builds one batch of model inputs at a time, and a long clip's HDF5 entry is stored in one-row
chunks. Memory is measured with tracemalloc (numpy reports its buffers to it), so the bounds
fail if a whole-clip array comes back."""

from __future__ import annotations

import subprocess
import tracemalloc
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from emoflow.config import validate_config
from emoflow.errors import ClipError
from emoflow.extraction.specs import stage_spec
from emoflow.faces.result import FaceResult
from emoflow.features import featurize
from emoflow.features.audio import rms_dbfs, window_views
from emoflow.features.track_windows import TrackWindows
from emoflow.media.ffmpeg import decode_audio, probe
from emoflow.media.pipe import read_output
from emoflow.storage.row_spool import RowSpool
from emoflow.storage.shard_write import write_entry
from emoflow.storage.shards import FaceClipFeatures
from tests.mediagen import make_clip

MINUTES = 3.0


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return validate_config({"dataset": {"name": "long", "adapter": "csv", "root": "."}})


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small-picture clip of a few minutes (8 fps test pattern, 16 kHz tone)."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    return make_clip(path, MINUTES * 60, fps=8, audio_rate=16000, tone_hz=180.0,
                     extra=("-s", "64x48"))  # fmt: skip


class CropBackend:
    """A streaming face backend that 'finds' a face in every frame: a crop filled with the
    frame's first pixel (so every crop is checkable), in the embedded backend's dtypes."""

    name = "crops"
    streams = True
    au_names: list[str] = []

    def __init__(self, size: int = 112) -> None:
        self.size = size
        self.calls: list[int] = []

    def versions(self) -> dict[str, str]:
        return {}

    def process(self, clips: list, workdir: Path, **_: Any) -> dict[str, FaceResult]:
        [(clip_id, frames)] = clips
        self.calls.append(len(frames))
        res = FaceResult.empty(len(frames), self.size)
        res.faces[:] = frames[:, :1, :1, :1]
        res.mask[:] = True
        res.n_faces[:] = 1
        res.boxes[:] = np.arange(len(frames), dtype=np.float32)[:, None]
        return {clip_id: res}


def peak_bytes(fn: Any) -> tuple[Any, int]:
    """``fn()``'s result and the peak of traced memory while it ran, above the start."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


def test_audio_features_hold_one_window_at_a_time(long_clip: Path, config: dict) -> None:
    spec = stage_spec(config, "audio")
    track = int(MINUTES * 60 * 16000) * 4
    rec, peak = peak_bytes(lambda: featurize.audio_features(long_clip, spec))
    assert len(rec.window_start_s) == 119  # 3 s windows every 1.5 s over 180 s
    # a decoded block, 4 windows and their spectrograms: not the track (11 MB), not the features
    # (before: the track once and the features; before that, 4 copies of the track)
    assert peak < 4 * 2**20 < track / 2, (peak / 2**20, track / 2**20)
    assert isinstance(rec.logmel, RowSpool) and rec.logmel.nbytes > 2**20
    # the same windows and features as cutting the whole decoded track
    windows = featurize.track_windows(decode_audio(long_clip, 16000), spec).segments
    np.testing.assert_array_equal(np.asarray(rec.logmel), featurize.window_logmel(windows, spec)[0])


@pytest.mark.parametrize("n", [1, 4799, 4800, 4801, 6000, 6399, 6400, 6401, 23456])
@pytest.mark.parametrize("last", ["pad", "drop"])
def test_streamed_windows_are_the_track_windows(n: int, last: str) -> None:
    samples = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    views, starts, _ = window_views(samples, 1600, 3.0, 1.0, last)
    for block in (1, 999, 4800, 50000):
        cut = TrackWindows(1600, 3.0, 1.0, last)
        got = [w.copy() for w in cut.windows(samples[i : i + block]
                                             for i in range(0, n, block))]  # fmt: skip
        assert cut.n_samples == n and np.array_equal(cut.starts / 1600, starts), block
        assert len(got) == len(views) and all(map(np.array_equal, got, views)), block
        assert cut.power.dbfs() == rms_dbfs(samples)


def test_decoded_audio_is_the_same_whatever_the_buffer_guess(long_clip: Path) -> None:
    args = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(long_clip), "-t", "20", "-ac", "1",
            "-ar", "16000", "-f", "f32le", "pipe:1"]  # fmt: skip
    want = subprocess.run(args, capture_output=True, check=True).stdout
    for guess in (16, len(want), 10 * len(want)):  # grown many times, exact, too large
        buf, n, code, _ = read_output(args, 60, "decode", guess)
        assert code == 0 and n == len(want) and bytes(buf[:n]) == want
    samples = decode_audio(long_clip, 16000)
    assert samples.dtype == np.float32 and samples.flags.writeable
    assert abs(len(samples) - MINUTES * 60 * 16000) < 16000
    with pytest.raises(ClipError) as err:
        decode_audio(long_clip, 16000, timeout_s=1e-3, info=probe(long_clip))
    assert err.value.kind == "tool_timeout"


def test_face_crops_are_spooled(long_clip: Path, config: dict) -> None:
    spec = stage_spec(config, "faces")
    backend = CropBackend(int(spec["size"]))
    [rec], peak = peak_bytes(lambda: featurize.face_features([("c", long_clip)], spec, backend))
    n = len(rec.mask)
    assert abs(n - MINUTES * 60 * 16 / 3) <= 2 and len(backend.calls) > 20  # many chunks
    # one chunk of crops (32 x 37 KB) and the small per-frame arrays, not the clip's crops
    # (before: the crops once; before that, 3 copies at once)
    assert isinstance(rec.faces, RowSpool)
    assert peak < 4 * 2**20 < rec.faces.nbytes / 4, (peak / 2**20, rec.faces.nbytes / 2**20)
    # the same record as concatenating the chunks' results: every sample its own frame
    np.testing.assert_array_equal(rec.boxes[:, 0], np.concatenate(
        [np.arange(k, dtype=np.float32) for k in backend.calls]))  # fmt: skip
    assert rec.mask.all() and rec.faces.shape == (n, spec["size"], spec["size"], 3)
    assert (rec.faces[:, 0, 0, 0] > 0).all()  # every crop was written (the pattern's pixels)
    info = probe(long_clip)
    assert np.all(np.diff(rec.frame_time_s) > 0) and rec.frame_time_s[-1] < info.duration_s


def test_entry_of_spooled_rows_is_the_entry_of_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (700, 16, 16, 3), dtype=np.uint8)
    spool = RowSpool(crops.shape[1:], crops.dtype)
    for i in range(0, 700, 32):
        spool.append(crops[i : i + 32])
    small = {"mask": np.ones(700, bool), "landmarks": np.zeros((700, 68, 2), np.float32),
             "frame_time_s": np.arange(700) / 5.0, "n_faces": np.ones(700, np.int16),
             "confidence": np.ones(700, np.float32), "window_start_s": np.arange(90) * 1.5,
             "window_frame0": np.arange(90) * 8, "duration_s": 140.0, "padded": False}  # fmt: skip
    spec = {"size": 16}
    for name, faces in (("arrays", crops), ("spool", spool)):
        write_entry(tmp_path / f"{name}.h5", "faces", spec, {},
                    FaceClipFeatures(clip_id="", faces=faces, **small))  # fmt: skip
    assert (tmp_path / "arrays.h5").read_bytes() == (tmp_path / "spool.h5").read_bytes()


def test_spread_over_sample_times_copies_only_when_needed() -> None:
    from emoflow.media.grid import TimeGrid

    grid = TimeGrid(16000, 3.0, 1.5, "pad", 16)
    res = FaceResult.empty(4, 8)
    res.faces[:] = np.arange(4, dtype=np.uint8)[:, None, None, None] + 1
    res.mask[:] = True
    times = (np.arange(4) + 0.5) / grid.rate
    same = featurize._face_record(res, np.arange(4), times, times, grid, 1.0)
    assert same.faces is res.faces  # every sample its own frame: no copy
    gaps = featurize._face_record(res, np.array([0, 0, 2, -1]), times, times, grid, 1.0)
    assert gaps.faces[:, 0, 0, 0].tolist() == [1, 1, 3, 0] and gaps.mask.tolist() == [
        True, True, True, False]  # fmt: skip
    assert res.faces[:, 0, 0, 0].tolist() == [1, 2, 3, 4]  # the input is left alone
    spool = RowSpool(res.faces.shape[1:], res.faces.dtype)
    spool.append(res.faces)
    res.faces = spool  # spooled crops: a view of the rows, no copy
    gaps = featurize._face_record(res, np.array([0, 0, 2, -1]), times, times, grid, 1.0)
    assert isinstance(gaps.faces, RowSpool) and gaps.faces.nbytes == spool.nbytes
    assert gaps.faces[:, 0, 0, 0].tolist() == [1, 1, 3, 0]


def test_a_long_clip_entry_is_stored_in_one_row_chunks(
    long_clip: Path, config: dict, tmp_path: Path
) -> None:
    for stage in ("audio", "faces"):
        spec = stage_spec(config, stage)
        if stage == "audio":
            rec = featurize.audio_features(long_clip, spec)
        else:
            [rec] = featurize.face_features([("c", long_clip)], spec, CropBackend(spec["size"]))
        path = tmp_path / f"{stage}.h5"
        write_entry(path, stage, spec, {}, rec)
        with h5py.File(path, "r") as h5:
            chunked = {name: h5[name] for name in h5 if h5[name].chunks}
            assert chunked, stage  # the large datasets are chunked...
            for name, ds in chunked.items():  # ...one row (a window, a frame) per chunk
                assert ds.chunks == (1, *ds.shape[1:]), (stage, name, ds.chunks)
                assert np.prod(ds.chunks) * ds.dtype.itemsize <= 64 * 1024
            big = max((h5[n] for n in h5 if not h5[n].chunks), key=lambda d: d.nbytes)
            assert big.nbytes < 2**20 * MINUTES  # the rest is small per-frame data


def test_predict_builds_one_batch_of_inputs_at_a_time() -> None:
    from emoflow.deploy.branch_outputs import BATCH_WINDOWS, window_outputs

    seen: list[int] = []

    def model(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": x.sum(dim=1, keepdim=True)}

    def inputs_of(norm: dict, rows: slice) -> list[torch.Tensor]:
        seen.append(rows.stop - rows.start)
        return [torch.arange(rows.start, rows.stop, dtype=torch.float32)[:, None] * norm["k"]]

    out = window_outputs(model, {"k": 2.0}, inputs_of, 2 * BATCH_WINDOWS + 3)
    assert seen == [BATCH_WINDOWS, BATCH_WINDOWS, 3]
    np.testing.assert_array_equal(out["logits"][:, 0].numpy(), 2.0 * np.arange(sum(seen)))
