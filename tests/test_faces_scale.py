"""Faces as real corpora have them: small (~45 px), high resolution, and several per frame.

Real photos (the demo corpus's: the astronaut and Grace Hopper) are scaled and pasted into
frames; the embedded backend must find them, align them like the full-size photo does, and
keep following one person when two are visible (``faces.select``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emoflow.config import validate_config
from emoflow.demo.actors import photo_rgb
from emoflow.extraction.specs import config_params, stage_spec
from emoflow.faces.backends import make_backend
from emoflow.faces.detect import Detections, choose, detection_scales, iou
from emoflow.features import featurize


def resized(img: np.ndarray, factor: float) -> np.ndarray:
    """``img`` scaled as a lower-resolution camera would see it (antialiased)."""
    h, w = img.shape[:2]
    size = (round(w * factor), round(h * factor))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))


def grey(crop: np.ndarray) -> np.ndarray:
    return crop.astype(np.float64).mean(axis=-1)


def backend(select: str = "largest"):
    return make_backend({"backend": "embedded", "select": select})


@pytest.fixture(scope="module")
def astronaut_full():
    """The astronaut photo and its full-size result (face box 88 px tall)."""
    photo = photo_rgb("astronaut")
    res = backend().process_frames(photo[None])
    assert res.mask.tolist() == [True]
    return photo, res


# ---------------------------------------------------------------- detection scales


def test_detection_scales_follow_the_frame_size():
    assert detection_scales(144, 176) == [2.0]  # small: upsampled at once, no further
    assert detection_scales(320, 320) == [1.0, 2.0]  # second pass only on a miss
    assert detection_scales(360, 640) == [1.0, 2.0]
    assert detection_scales(720, 1280) == [0.5, 1.0]
    scales = detection_scales(1080, 1920)  # detected at 640 x 360 first, as a 640 x 360 frame
    assert scales == pytest.approx([1 / 3, 2 / 3])
    assert detection_scales(2160, 3840) == pytest.approx([1 / 6, 1 / 3])


# ---------------------------------------------------------------- small faces


@pytest.mark.parametrize("face_px", [45, 40])
def test_small_face_in_a_176x144_frame_is_found_and_aligned(astronaut_full, face_px):
    photo, full = astronaut_full
    box = full.boxes[0]
    f = face_px / (box[3] - box[1])
    small = resized(photo, f)
    cx, cy = (box[0] + box[2]) / 2 * f, (box[1] + box[3]) / 2 * f
    x0, y0 = int(round(cx - 88)), int(round(cy - 72))  # the face at the frame's centre
    padded = np.pad(small, ((144, 144), (176, 176), (0, 0)), mode="edge")
    frame = np.ascontiguousarray(padded[144 + y0 : 288 + y0, 176 + x0 : 352 + x0])
    assert frame.shape == (144, 176, 3)
    # without the upsampled pass dlib finds nothing at this size (what the issue saw)
    from emoflow.faces.detect import run_detector
    from emoflow.faces.embedded import _models

    assert len(run_detector(_models().detector, frame, 1.0)) == 0
    res = backend().process_frames(np.stack([frame] * 4))
    assert res.mask.all() and res.n_faces.tolist() == [1] * 4
    h = res.boxes[0, 3] - res.boxes[0, 1]
    assert abs(h - face_px) < 0.25 * face_px  # the box is in the frame's own pixels
    # landmarks in frame coordinates agree with the full-size photo's (relative to face size)
    back = (res.landmarks[0] + [x0, y0]) / f
    err = np.linalg.norm(back - full.landmarks[0], axis=1).mean() / (box[3] - box[1])
    assert err < 0.04, err
    mad = np.abs(grey(res.faces[0]) - grey(full.faces[0])).mean()
    assert mad < 10, mad
    # a check that can fail: the full-size crop moved by 6 px differs far more
    assert np.abs(grey(np.roll(full.faces[0], 6, axis=1)) - grey(full.faces[0])).mean() > mad + 15


# ---------------------------------------------------------------- high resolution


def test_1080p_and_360p_frames_give_the_same_crop():
    photo = photo_rgb("astronaut")
    canvas = np.full((1080, 1920, 3), 90, np.uint8)
    big = resized(photo, 900 / photo.shape[0])
    canvas[90 : 90 + big.shape[0], 500 : 500 + big.shape[1]] = big
    low = resized(canvas, 1 / 3)
    assert low.shape == (360, 640, 3)
    res = backend().process_frames(low[None])
    hi = backend().process_frames(canvas[None])
    assert res.mask.all() and hi.mask.all()
    # boxes and landmarks are in each frame's own pixels
    np.testing.assert_allclose(hi.boxes[0], res.boxes[0] * 3, atol=12)
    size = hi.boxes[0, 3] - hi.boxes[0, 1]
    err = np.linalg.norm(hi.landmarks[0] - (res.landmarks[0] * 3 + 1), axis=1).mean() / size
    assert err < 0.02, err
    mad = np.abs(grey(hi.faces[0]) - grey(res.faces[0])).mean()
    assert mad < 6, mad
    assert np.abs(grey(np.roll(res.faces[0], 4, axis=0)) - grey(res.faces[0])).mean() > mad + 8


# ---------------------------------------------------------------- several faces


def two_faces(left_px: int, right_px: int) -> np.ndarray:
    """Astronaut (left) and Grace Hopper (right) side by side in a 720 x 400 frame, face boxes
    about the given heights, each face's centre fixed whatever its size."""
    canvas = np.full((400, 720, 3), 120, np.uint8)
    for name, px, cx in (("astronaut", left_px, 180), ("grace_hopper", right_px, 540)):
        x, y, h = {"astronaut": (179, 83, 88), "grace_hopper": (161, 137, 216)}[name]  # dlib box
        f = px / h
        half = int(1.3 * px)
        img = np.pad(resized(photo_rgb(name), f), ((half, half), (half, half), (0, 0)), mode="edge")
        fx, fy = int(round((x + h / 2) * f)) + half, int(round((y + h / 2) * f)) + half
        canvas[200 - half : 200 + half, cx - half : cx + half] = img[
            fy - half : fy + half, fx - half : fx + half
        ]
    return canvas


@pytest.fixture(scope="module")
def swap_frames() -> np.ndarray:
    """8 frames: the left face larger for the first 4, the right one larger for the last 4."""
    return np.stack([two_faces(130, 95)] * 4 + [two_faces(95, 130)] * 4)


def side(res) -> list[str]:
    centre = (res.boxes[:, 0] + res.boxes[:, 2]) / 2
    return ["L" if c < 360 else "R" for c in centre]


def test_track_keeps_the_person_largest_switches(swap_frames):
    tracked = backend("track").process_frames(swap_frames)
    largest = backend("largest").process_frames(swap_frames)
    assert tracked.n_faces.tolist() == [2] * 8 and tracked.mask.all()
    assert side(tracked) == ["L"] * 8
    assert side(largest) == ["L"] * 4 + ["R"] * 4
    # the chosen box is stored per frame, and the crops follow it: same person, same crop
    assert np.abs(grey(tracked.faces[7]) - grey(tracked.faces[0])).mean() < 12
    assert np.abs(grey(largest.faces[7]) - grey(largest.faces[0])).mean() > 25
    centre = backend("center").process_frames(swap_frames[:1])
    assert centre.mask.all()


def test_track_goes_on_across_chunks(swap_frames):
    emb = backend("track")
    whole = emb.process_frames(swap_frames)
    first = emb.process([("c", swap_frames[:4])], Path("."))["c"]
    # a new clip (no previous box) starts from the largest: the right face in these frames
    assert side(emb.process([("c", swap_frames[4:])], Path("."))["c"]) == ["R"] * 4
    rest = emb.process([("c", swap_frames[4:])], Path("."), prev_boxes={"c": first.boxes[-1]})
    np.testing.assert_array_equal(np.concatenate([first.boxes, rest["c"].boxes]), whole.boxes)


def test_choose_rules():
    found = Detections(
        np.array([[0, 0, 100, 100], [300, 100, 360, 160], [150, 0, 200, 50]], float),
        np.array([0.5, 1.5, 2.0]),
    )
    shape = (320, 640, 3)
    assert choose(found, "largest", shape) == 0
    assert choose(found, "center", shape) == 1
    assert choose(found, "track", shape) == 0  # no previous box: the largest
    assert choose(found, "track", shape, np.array([310.0, 110, 350, 150])) == 1
    assert choose(found, "track", shape, np.array([200.0, 0, 250, 50])) == 2  # touching, no overlap
    assert choose(found, "track", shape, np.array([500.0, 250, 540, 290])) == 0  # lost: largest
    assert choose(Detections(np.zeros((0, 4)), np.zeros(0)), "track", shape) is None
    assert iou(np.array([0.0, 0, 10, 10]), np.array([[5.0, 0, 15, 10]]))[0] == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        make_backend({"backend": "embedded", "select": "biggest"})


def test_select_is_a_faces_stage_parameter():
    base = {"dataset": {"name": "g", "adapter": "csv", "root": "."}}
    cfg = validate_config(base)
    assert cfg["faces"]["select"] == "track"
    other = validate_config({**base, "faces": {"select": "largest"}})
    assert config_params(other, "faces") != config_params(cfg, "faces")
    assert config_params(other, "audio") == config_params(cfg, "audio")
    assert stage_spec(other, "faces")["backend_versions"]["select"] == "largest"
    with pytest.raises(Exception, match="select"):
        validate_config({**base, "faces": {"select": "biggest"}})


def test_two_face_clip_end_to_end_keeps_one_person(tmp_path, swap_frames, monkeypatch):
    """Through the featurizer, on an encoded clip decoded in chunks of 4 frames: the track goes
    on across chunks and the chosen boxes reach the record."""
    path = tmp_path / "two.mkv"
    frames = np.repeat(swap_frames, 4, axis=0)  # 32 frames at 10 fps: 3.2 s
    args = ["ffmpeg", "-nostdin", "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", "720x400", "-r", "10", "-i", "pipe:0", "-c:v", "ffv1", str(path)]  # fmt: skip
    subprocess.run(args, input=frames.tobytes(), check=True, timeout=120, capture_output=True)
    cfg = validate_config({"dataset": {"name": "g", "adapter": "csv", "root": "."}})
    spec = stage_spec(cfg, "faces")
    monkeypatch.setattr(featurize, "CHUNK_FRAMES", 4)
    [rec] = featurize.face_features([("two", path)], spec, make_backend(cfg["faces"]))
    assert rec.mask.all() and (rec.n_faces == 2).all()
    assert rec.boxes.shape == (len(rec.mask), 4) and rec.boxes.dtype == np.float32
    centre = (rec.boxes[:, 0] + rec.boxes[:, 2]) / 2
    assert (centre < 360).all()


def moving_face(photo: np.ndarray, shifts: list[int]) -> np.ndarray:
    """The photo's face on a 360 x 360 canvas, moved right by ``shifts`` px frame by frame (a
    negative shift: a frame without the face)."""
    face = photo[20:260, 110:350]  # 240 x 240 around the 88 px face
    frames = np.full((len(shifts), 360, 360, 3), 110, np.uint8)
    for i, dx in enumerate(shifts):
        if dx >= 0:
            frames[i, 60:300, dx : dx + 240] = face
    return frames


def test_tracking_searches_near_the_face_and_finds_what_the_whole_frame_gives(
    astronaut_full, monkeypatch
):
    """``track`` with one face searches around it (cheaper) yet aligns like a whole-frame
    search; a jump out of the searched region and a frame without the face are handled."""
    from emoflow.faces import embedded

    photo, _ = astronaut_full
    shifts = [0, 4, 8, 12, 16, 20, 24, 28, 100, 100, -1, 96, 92, 88, 84, 80, 76, 72]
    frames = moving_face(photo, shifts)
    whole_searches = []
    real = embedded.detect_faces
    monkeypatch.setattr(embedded, "detect_faces",
                        lambda *a: whole_searches.append(1) or real(*a))  # fmt: skip
    tracked = backend("track").process_frames(frames)
    # the first frame, the jump (8), the frame without the face and the one after (10, 11)
    # (the next periodic one would be frame 32: TRACK_REDETECT); the others only around it
    assert len(whole_searches) == 4
    monkeypatch.setattr(embedded, "detect_faces", real)
    whole = backend("largest").process_frames(frames)
    assert tracked.mask.tolist() == whole.mask.tolist() == [s >= 0 for s in shifts]
    assert tracked.n_faces.tolist() == whole.n_faces.tolist()
    found = tracked.mask
    err = np.abs(tracked.landmarks[found] - whole.landmarks[found]).mean(axis=(1, 2))
    assert err.max() < 2.0, err
    diff = [np.abs(grey(a) - grey(b)).mean() for a, b in
            zip(tracked.faces[found], whole.faces[found], strict=True)]  # fmt: skip
    assert max(diff) < 6.0, diff
