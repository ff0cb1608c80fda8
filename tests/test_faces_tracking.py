"""Landmark tracking in the embedded backend (issue 27): a frame after one with the face is
fitted from the previous frame's landmarks, without a HOG search, and checked; a face that
leaves or is cut away is never "tracked" into the background, and the annotated side is kept.

Real photos (the astronaut, Grace Hopper) pasted on a textured canvas, moved frame by frame."""

from __future__ import annotations

import numpy as np
import pytest

from emoflow.demo.actors import photo_rgb
from emoflow.faces import embedded
from emoflow.faces.embedded import TRACK_REDETECT, EmbeddedBackend, track_box
from emoflow.features.featurize import CHUNK_FRAMES
from tests.test_faces_scale import two_faces

H, W = 360, 480


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return photo_rgb("astronaut")


def canvas(photo: np.ndarray) -> np.ndarray:
    """A textured background without a face (the astronaut photo's upper right, tiled)."""
    tile = photo[0:250, 330:512]
    return np.tile(tile, (H // 250 + 1, W // 182 + 1, 1))[:H, :W].copy()


def scene(photo: np.ndarray, places: list[tuple[int, int] | None]) -> np.ndarray:
    """The astronaut's face (a 200 x 200 patch, face box about 88 px) on :func:`canvas` at each
    frame's (x, y) top-left corner, cut at the frame's edges; None: a frame without the face."""
    face = photo[40:240, 130:330]
    frames = np.repeat(canvas(photo)[None], len(places), axis=0)
    for i, at in enumerate(places):
        if at is None:
            continue
        x, y = at
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + 200, W), min(y + 200, H)
        if x1 > x0 and y1 > y0:
            frames[i, y0:y1, x0:x1] = face[y0 - y : y1 - y, x0 - x : x1 - x]
    return frames


def run(frames: np.ndarray, track: bool, side: str | None = None):
    backend = EmbeddedBackend(track_landmarks=track)
    return backend.process_frames(frames, side=side)


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many HOG searches ran: whole frame ("whole") and around the face ("near")."""
    counts = {"whole": 0, "near": 0}
    for name, key in (("detect_faces", "whole"), ("detect_near", "near")):
        real = getattr(embedded, name)

        def counted(*args, _real=real, _key=key):
            counts[_key] += 1
            return _real(*args)

        monkeypatch.setattr(embedded, name, counted)
    return counts


def test_the_tracked_box_is_the_box_hog_gives(photo):
    """:func:`track_box` maps the landmarks to the detector's box (calibrated on the demo): the
    same centre, the same size but for the detector's pyramid step (x 6/5)."""
    for at in ((100, 60), (60, 100), (250, 140)):
        res = run(scene(photo, [at]), False)
        assert res.mask.all()
        matrix = embedded.alignment_matrix(res.landmarks[0].astype(np.float64))
        box, hog = track_box(matrix, 112, 0.7), res.boxes[0].astype(np.float64)
        side = hog[2] - hog[0]
        assert np.abs((box[:2] + box[2:]) / 2 - (hog[:2] + hog[2:]) / 2).max() < 0.06 * side
        assert 1 / 1.2 < (box[2] - box[0]) / side < 1.2
        assert (box[2] - box[0]) == pytest.approx(box[3] - box[1])


def test_a_moving_face_is_tracked_like_the_hog_path_finds_it(photo, searches):
    """A face moving and bobbing: found in every frame, with no HOG search but the whole-frame
    ones (the first frame and every TRACK_REDETECT), and the landmarks and crops of the HOG path."""
    n = 20
    places = [(60 + 7 * i, 60 + int(round(8 * np.sin(i / 2)))) for i in range(n)]
    frames = scene(photo, places)
    tracked = run(frames, True)
    assert searches == {"whole": len(range(0, n, TRACK_REDETECT)), "near": 0}
    hog = run(frames, False)
    assert tracked.mask.all() and hog.mask.all()
    assert tracked.n_faces.tolist() == hog.n_faces.tolist() == [1] * n
    err = np.linalg.norm(tracked.landmarks - hog.landmarks, axis=2).mean(axis=1)
    assert err.max() < 3.0, err  # pixels, the face box ~88 px
    diff = np.abs(tracked.faces.astype(float) - hog.faces.astype(float)).mean(axis=(1, 2, 3))
    assert diff.max() < 10, diff
    # the boxes move with the face
    centre = (tracked.boxes[:, 0] + tracked.boxes[:, 2]) / 2
    assert np.allclose(np.diff(centre), 7, atol=3), np.diff(centre)


def test_a_jump_is_searched_for_not_tracked(photo, searches):
    """A face that jumps by more than half its size between two frames: the fit from the old
    place fails its check, the frame is searched, and the landmarks are the HOG path's."""
    places = [(60 + 2 * i, 60) for i in range(5)] + [(130 + 2 * i, 90) for i in range(5)]
    frames = scene(photo, places)
    tracked = run(frames, True)
    assert searches["near"] + searches["whole"] == 2  # the first frame and the jump
    hog = run(frames, False)
    assert tracked.mask.all() and hog.mask.all()
    err = np.linalg.norm(tracked.landmarks - hog.landmarks, axis=2).mean(axis=1)
    assert err.max() < 3.0, err


def test_a_face_cut_away_is_not_tracked_into_the_background(photo):
    """An abrupt cut to a frame without the face (the background where the face was): no face
    there, as the HOG path says; the face found again when it is back."""
    places = [(100 + 3 * i, 60) for i in range(6)] + [None] * 3 + [(118, 60)] * 3
    frames = scene(photo, places)
    tracked = run(frames, True)
    expected = [p is not None for p in places]
    assert tracked.mask.tolist() == expected
    assert run(frames, False).mask.tolist() == expected
    assert (tracked.n_faces[6:9] == 0).all()


def test_a_face_leaving_the_frame_is_not_tracked_out_of_it(photo):
    """A face walking out of the frame: tracked while the HOG path finds it, then nothing."""
    places = [(250 + 8 * i, 60) for i in range(24)]  # the face (x + 50 to x + 140) gone at the end
    frames = scene(photo, places)
    tracked = run(frames, True)
    hog = run(frames, False)
    assert hog.mask[:4].all() and not hog.mask[-4:].any()
    assert tracked.mask.tolist() == hog.mask.tolist()


def test_the_annotated_side_is_kept(photo):
    """``side``: a face crossing from the left half to the right is followed only while on the
    left (as the HOG path); with two people, the annotated one in every frame."""
    places = [(40 + 8 * i, 60) for i in range(24)]  # the face's centre at x + 95
    frames = scene(photo, places)
    tracked = run(frames, True, side="left")
    hog = run(frames, False, side="left")
    assert tracked.mask.tolist() == hog.mask.tolist()
    assert tracked.mask[:3].all() and not tracked.mask[-3:].any()
    centre = (tracked.boxes[tracked.mask, 0] + tracked.boxes[tracked.mask, 2]) / 2
    assert (centre < W / 2).all()
    two = np.stack([two_faces(130, 95)] * 3 + [two_faces(95, 130)] * 3)
    for side, half in (("left", -1), ("right", 1)):
        res = run(two, True, side=side)
        assert res.mask.all()
        assert (np.sign((res.boxes[:, 0] + res.boxes[:, 2]) / 2 - 360) == half).all()


def test_chunks_change_nothing_and_versions_name_the_policy(photo):
    """The track starts again at each call's whole-frame search: frames given in the
    featurizer's chunks (a multiple of TRACK_REDETECT) give the same result; the spec names the
    policy."""
    places = [(60 + 4 * i, 60 + (i % 5)) for i in range(40)]
    frames = scene(photo, places)
    whole = run(frames, True)
    backend = EmbeddedBackend(track_landmarks=True)
    parts, prev = [], None
    assert CHUNK_FRAMES % TRACK_REDETECT == 0
    for at in range(0, 40, CHUNK_FRAMES):
        res = backend.process_frames(frames[at : at + CHUNK_FRAMES], prev)
        parts.append(res)
        prev = res.boxes[np.flatnonzero(res.mask)[-1]].astype(np.float64)
    for field in ("mask", "boxes", "landmarks", "faces", "n_faces", "confidence"):
        got = np.concatenate([getattr(p, field) for p in parts])
        np.testing.assert_array_equal(got, getattr(whole, field), err_msg=field)
    on = EmbeddedBackend(track_landmarks=True).versions()["detector"]
    off = EmbeddedBackend(track_landmarks=False).versions()["detector"]
    assert "landmark-track" in on and "landmark-track" not in off
    assert "landmark-track" not in EmbeddedBackend(select="largest").versions()["detector"]
