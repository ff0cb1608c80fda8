"""Face detection at the scale a frame needs, and the choice of one face per frame.

dlib's HOG detector slides an 80 x 80 window: at a frame's own scale it finds faces of about
80 px and larger. :func:`detect_faces` runs it on a copy scaled so that the cost follows what is
needed:

- a frame whose shorter side exceeds :data:`DETECT_SIDE` is detected on a copy scaled down to
  that side (a 1920 x 1080 frame costs what a 640 x 360 one does); the boxes are mapped back;
- a small frame (shorter side under :data:`SMALL_SIDE`) is detected on a copy upsampled twice;
- when nothing is found at the first scale, once more at twice that scale, as long as the copy
  stays under :data:`MAX_DETECT_PIXELS` and the scale at most 2 (faces down to about 40 px);
  frames with a face never pay for the second pass.

With ``faces.select: track`` a frame after one with a face is first searched only around that
face (:func:`detect_near`); the whole frame is searched when nothing is found there. (The
embedded backend first tries no search at all: landmarks fitted from the previous frame's,
checked; :meth:`emoflow.faces.embedded.EmbeddedBackend.process_frames`.)

Landmarks are fitted and faces aligned on the full-resolution frame, in its pixel coordinates
(:mod:`emoflow.faces.embedded`). :func:`choose` picks the face to align (``faces.select``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

DETECT_SIDE = 360
"""Frames whose shorter side is larger are detected on a copy scaled down to this side."""
SMALL_SIDE = 240
"""Frames whose shorter side is smaller are detected on a copy upsampled twice."""
MAX_DETECT_PIXELS = 1280 * 720
"""The second (upsampled) pass runs only on copies up to this many pixels."""
MAX_SCALE = 2.0
"""The largest detection scale relative to the frame (faces down to about 40 px)."""
SELECT = ("largest", "center", "track")
TRACK_MARGIN = 0.3
"""``select: track`` searches the tracked face's box grown by this share of its size per side."""
TRACK_FACE_PX = 90
"""...at the scale that makes the tracked face about this wide (dlib's window is 80 px)."""


@dataclass(frozen=True)
class Detections:
    """The faces found in one frame: boxes (N, 4) x0, y0, x1, y1 in frame pixels, scores."""

    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)


def detection_scales(height: int, width: int, upsample: int = 0) -> list[float]:
    """The scales the detector tries on an ``height`` x ``width`` frame, in order (module doc).

    ``upsample`` (dlib's HOG upsampling, ``faces.upsample``) doubles every scale that many times.
    """
    short = min(height, width)
    first = DETECT_SIDE / short if short > DETECT_SIDE else 2.0 if short < SMALL_SIDE else 1.0
    first *= 2**upsample
    scales = [first]
    second = 2 * first
    if second <= max(MAX_SCALE, first) and height * width * second**2 <= MAX_DETECT_PIXELS:
        scales.append(second)
    return scales


def _resized(frame: np.ndarray, scale: float) -> np.ndarray:
    """``frame`` scaled by ``scale`` (bilinear, antialiased when shrinking)."""
    h, w = frame.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))


def run_detector(detector: object, frame: np.ndarray, scale: float) -> Detections:
    """dlib's detector on ``frame`` scaled by ``scale``; boxes in ``frame``'s pixels.

    Power-of-two upscales use dlib's own pyramid (``upsample_num_times``), others a resized copy.
    """
    up = math.log2(scale) if scale >= 1 else -1.0
    if up >= 0 and up == int(up):
        rects, scores, _ = detector.run(frame, int(up), 0.0)  # type: ignore[attr-defined]
        factor_x = factor_y = 1.0
    else:
        small = _resized(frame, scale)
        rects, scores, _ = detector.run(small, 0, 0.0)  # type: ignore[attr-defined]
        factor_x = frame.shape[1] / small.shape[1]
        factor_y = frame.shape[0] / small.shape[0]
    boxes = np.array(
        [(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in rects], dtype=np.float64
    ).reshape(-1, 4)
    boxes *= [factor_x, factor_y, factor_x, factor_y]
    return Detections(boxes, np.asarray(scores, dtype=np.float64).reshape(-1))


def detect_faces(detector: object, frame: np.ndarray, upsample: int = 0) -> Detections:
    """All faces of one RGB uint8 frame, at the scales of :func:`detection_scales`."""
    frame = np.ascontiguousarray(frame)
    found = Detections(np.zeros((0, 4)), np.zeros(0))
    for scale in detection_scales(frame.shape[0], frame.shape[1], upsample):
        found = run_detector(detector, frame, scale)
        if len(found):
            break
    return found


def detect_near(
    detector: object, frame: np.ndarray, prev: np.ndarray, upsample: int = 0
) -> Detections:
    """The faces in the region around ``prev`` (the box of the face tracked in the frame
    before), boxes in ``frame``'s pixels: the box grown by :data:`TRACK_MARGIN` of its size on
    each side, detected at the scale that makes the face about :data:`TRACK_FACE_PX` wide
    (at most :data:`MAX_SCALE`, times ``2 ** upsample``). A fraction of the whole frame's
    cost; nothing found means the caller searches the whole frame."""
    h, w = frame.shape[:2]
    bw, bh = prev[2] - prev[0], prev[3] - prev[1]
    x0, x1 = int(max(0, prev[0] - TRACK_MARGIN * bw)), int(min(w, prev[2] + TRACK_MARGIN * bw))
    y0, y1 = int(max(0, prev[1] - TRACK_MARGIN * bh)), int(min(h, prev[3] + TRACK_MARGIN * bh))
    scale = min(MAX_SCALE, TRACK_FACE_PX / max(bw, 1.0)) * 2**upsample
    if min(x1 - x0, y1 - y0) * scale < 80:  # the region cannot hold the detector's window
        return Detections(np.zeros((0, 4)), np.zeros(0))
    found = run_detector(detector, np.ascontiguousarray(frame[y0:y1, x0:x1]), scale)
    return Detections(found.boxes + [x0, y0, x0, y0], found.scores)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (4,) with each of ``boxes`` (N, 4)."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = _area(box[None])[0] + _area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _centres(boxes: np.ndarray) -> np.ndarray:
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def _largest(found: Detections) -> int:
    areas = _area(found.boxes)
    return max(range(len(found)), key=lambda i: (areas[i], found.scores[i]))


def continuation(prev: np.ndarray, found: Detections) -> int | None:
    """The face of ``found`` that continues the box ``prev``: the largest overlap, else the
    nearest centre within one box width; None when no face continues it."""
    overlap = iou(prev, found.boxes)
    if overlap.max() > 0:
        return int(np.argmax(overlap))
    dist = np.linalg.norm(_centres(found.boxes) - _centres(prev[None])[0], axis=1)
    best = int(np.argmin(dist))
    return best if dist[best] <= prev[2] - prev[0] else None


def on_side(found: Detections, side: str, width: int) -> np.ndarray:
    """Indices of the faces of ``found`` whose centre lies in the ``left`` or ``right`` half of
    a frame ``width`` pixels wide."""
    x = _centres(found.boxes)[:, 0] if len(found) else np.zeros(0)
    keep = x < width / 2 if side == "left" else x >= width / 2
    return np.flatnonzero(keep)


def choose(
    found: Detections, select: str, shape: tuple[int, ...], prev: np.ndarray | None = None,
    side: str | None = None,
) -> int | None:  # fmt: skip
    """Index of the face to align among ``found`` (None when there is none).

    ``largest``: the largest box; ``center``: the box whose centre is nearest the frame's centre
    (``shape`` is the frame's); ``track``: the box that continues ``prev``, the previous chosen
    box of the clip (:func:`continuation`), else the largest (the first frame, or a lost track).
    ``side`` (``left`` / ``right``: the annotated person of a two-person video): only the faces
    centred in that half of the frame are candidates, so a lost track never jumps to the other
    person; None when that half has no face.
    """
    if side is not None:
        keep = on_side(found, side, int(shape[1]))
        sub = Detections(found.boxes[keep], found.scores[keep])
        best = choose(sub, select, shape, prev)
        return None if best is None else int(keep[best])
    if not len(found):
        return None
    if select == "largest":
        return _largest(found)
    if select == "center":
        centre = np.array([shape[1] / 2, shape[0] / 2])
        dist = np.linalg.norm(_centres(found.boxes) - centre, axis=1)
        return min(range(len(found)), key=lambda i: (dist[i], -found.scores[i]))
    if select == "track":
        if prev is not None and np.isfinite(prev).all():
            nxt = continuation(prev, found)
            if nxt is not None:
                return nxt
        return _largest(found)
    raise ValueError(f"unknown faces.select {select!r} (expected one of {', '.join(SELECT)})")
