"""The embedded face stage's fixed costs: models loaded once per job (forked workers inherit
them), the detector from its kept serialization, the crops' warp without scipy (bit for bit
what ``scipy.ndimage.map_coordinates`` gave), the clips probed while the models load."""

from __future__ import annotations

import os
from pathlib import Path

import dlib
import numpy as np
import pytest
from scipy import ndimage

from emoflow.config import validate_config
from emoflow.demo.actors import photo_rgb
from emoflow.extraction import workers
from emoflow.extraction.specs import cache_of, stage_spec
from emoflow.faces import embedded
from emoflow.faces.align import bilinear, warp_affine
from tests.mediagen import face_png, talking_face_clip


def scipy_warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """:func:`warp_affine` as it was with scipy: each channel through ``map_coordinates``."""
    from emoflow.faces import align

    real = align.bilinear

    def per_channel(patch: np.ndarray, coords: np.ndarray) -> np.ndarray:
        return np.stack([ndimage.map_coordinates(patch[:, :, ch], coords, output=np.float32,
                                                 order=1, mode="constant", cval=0.0)
                         for ch in range(patch.shape[2])], axis=1)  # fmt: skip

    align.bilinear = per_channel
    try:
        return warp_affine(image, matrix, size)
    finally:
        align.bilinear = real


def config(tmp_path: Path) -> dict:
    return validate_config({
        "dataset": {"name": "p", "adapter": "ravdess", "root": str(tmp_path)},
        "results": str(tmp_path / "r"), "cache": {"dir": str(tmp_path / "c")},
    })  # fmt: skip


def test_bilinear_is_map_coordinates_bit_for_bit() -> None:
    """Random pictures, points inside, on and beyond the edges, and affine grids: the same
    float32 numbers as scipy's order-1 ``constant`` interpolation, channel by channel."""
    rng = np.random.default_rng(0)
    for trial in range(600):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if trial % 3 == 0:
            coords = rng.uniform(-3, max(h, w) + 3, (2, 300))
        elif trial % 3 == 1:  # exactly on pixels and edges, and a hair beside them
            coords = np.stack([rng.integers(-2, h + 2, 300), rng.integers(-2, w + 2, 300)])
            coords = coords + rng.choice([0.0, 1e-12, -1e-12, 0.5], (2, 300))
        else:
            grid = np.mgrid[0:15, 0:17].reshape(2, -1).astype(np.float64)
            coords = rng.normal(size=(2, 2)) @ grid + rng.uniform(-5, 5, (2, 1))
        got = bilinear(img, coords)
        for ch in range(3):
            want = ndimage.map_coordinates(img[:, :, ch], coords, output=np.float32, order=1,
                                           mode="constant", cval=0.0)  # fmt: skip
            np.testing.assert_array_equal(got[:, ch], want)


@pytest.mark.parametrize("shrink", [1.0, 0.3])
def test_warp_gives_the_crops_it_gave_with_scipy(shrink: float) -> None:
    """Crops of the astronaut, part of them outside the frame, and a high-resolution frame
    that the crop shrinks 3x (block-averaged first): identical to the scipy warp's."""
    photo = photo_rgb("astronaut")
    rng = np.random.default_rng(1)
    for _ in range(6):
        angle, scale = rng.uniform(-0.4, 0.4), shrink * rng.uniform(0.8, 1.2)
        rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shift = rng.uniform(-80, 40, 2)
        matrix = np.hstack([rot, shift[:, None]])
        np.testing.assert_array_equal(warp_affine(photo, matrix, 112),
                                      scipy_warp(photo, matrix, 112))  # fmt: skip


def test_detector_kept_once_loads_fast_and_finds_the_same(tmp_path: Path) -> None:
    """The first call saves the detector's serialization; later ones load it (no 0.4 s
    decompression) and find the same boxes with the same scores; a damaged file is rebuilt."""
    photo = np.ascontiguousarray(photo_rgb("astronaut"))
    first = embedded.frontal_detector(tmp_path)
    files = list(tmp_path.iterdir())
    assert [p.name for p in files] == [f"dlib-{dlib.__version__}-frontal_face_detector.svm"]
    again = embedded.frontal_detector(tmp_path)
    reference = dlib.get_frontal_face_detector()
    found = 0
    for frame in (photo, np.ascontiguousarray(photo[::2, ::2])):
        for up in (0, 1):
            want = reference.run(frame, up, 0.0)
            found += len(want[0])
            for det in (first, again):
                got = det.run(frame, up, 0.0)
                assert [str(r) for r in got[0]] == [str(r) for r in want[0]]
                assert got[1] == want[1]
    assert found >= 3
    want = reference.run(photo, 0, 0.0)
    files[0].write_bytes(b"not a detector")
    rebuilt = embedded.frontal_detector(tmp_path)
    assert [str(r) for r in rebuilt.run(photo, 0, 0.0)[0]] == [str(r) for r in want[0]]
    assert files[0].stat().st_size > 1000


def test_forked_workers_never_load_the_models_again(tmp_path: Path, monkeypatch) -> None:
    """A faces job on 2 forked workers: the parent loads dlib's predictor once (the workers
    inherit it, and the backend), every clip gets its faces."""
    cfg = config(tmp_path)
    face = face_png(tmp_path / "f.png")
    todo = [(f"c{i}", f"{i}" * 64, str(talking_face_clip(tmp_path / f"{i}.mp4", face, 1.0)))
            for i in range(3)]  # fmt: skip
    log = tmp_path / "loads.txt"
    real = dlib.shape_predictor

    def counted(path: str):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return real(path)

    monkeypatch.setattr(embedded, "_LOADED", [])
    monkeypatch.setattr(dlib, "shape_predictor", counted)
    workers._backend.cache_clear()
    spec = stage_spec(cfg, "faces")
    got = list(workers.compute_clips(cfg, "faces", spec, todo, 2))
    assert [c for c, _, _ in got] == ["c0", "c1", "c2"]
    assert all(isinstance(res, int) and res > 0 for _, _, res in got)  # entry bytes
    cache = cache_of(cfg, "faces", spec)
    assert all(cache.get(sha).mask.all() for _, sha, _ in got)
    assert log.read_text().split() == [str(os.getpid())]
    assert (tmp_path / "c" / "models").is_dir()  # the detector's serialization is kept there
    assert workers.face_backend(cfg) is workers.face_backend(cfg)
