"""The per-clip result that every face backend returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from emoflow.errors import ClipError
from emoflow.storage.row_spool import RowSpool


@dataclass
class FaceResult:
    """Faces of one clip's K sampled frames.

    faces: (K, S, S, 3) uint8 aligned RGB crops, zeros where ``mask`` is False (an array, or a
    :class:`~emoflow.storage.row_spool.RowSpool` for a long clip's crops). mask: (K,) bool, a
    face was found and aligned. landmarks: (K, 68, 2) float32 in the input frame's pixel
    coordinates, zeros where not found. n_faces: (K,) int16 faces detected per frame (embedded:
    detector count where it searched — the whole frame, or with ``select: track`` and one face in
    the last whole-frame search, around that face; 1 on a frame fitted from the previous
    frame's landmarks; openface: 1/0). confidence: (K,) float32 (embedded: detector score, on a
    landmark-tracked frame the score of the detection the track began from; openface: its
    confidence), 0 if none. au: (K, n_au) float32 AU
    intensities (openface only), NaN where not found. pose: (K, 6) float32 Tx, Ty, Tz, Rx, Ry, Rz
    (openface only), NaN where not found. gaze: (K, 8) float32 both eyes' gaze vectors and the two
    gaze angles (openface only; see ``openface_csv.GAZE_COLUMNS``), NaN where not found. boxes: (K,
    4) float32 x0, y0, x1, y1 of the aligned face in the frame's pixels (embedded: the detector's
    box, or on a landmark-tracked frame the box the previous landmarks gave; openface: the
    landmarks' bounding box), NaN where not found.
    """

    faces: np.ndarray | RowSpool
    mask: np.ndarray
    landmarks: np.ndarray
    n_faces: np.ndarray
    confidence: np.ndarray
    au: np.ndarray | None = None
    pose: np.ndarray | None = None
    boxes: np.ndarray | None = None
    gaze: np.ndarray | None = None

    @classmethod
    def empty(cls, k: int, size: int, n_au: int | None = None, spool: bool = False) -> FaceResult:
        """A result for ``k`` frames with no face anywhere (AU/pose NaN when ``n_au`` given;
        ``spool``: the crops in a :class:`RowSpool` on disk, set row by row)."""
        shape = (size, size, 3)
        return cls(
            faces=RowSpool.zeros(k, shape, np.uint8) if spool else np.zeros((k, *shape), np.uint8),
            mask=np.zeros(k, dtype=bool),
            landmarks=np.zeros((k, 68, 2), dtype=np.float32),
            n_faces=np.zeros(k, dtype=np.int16),
            confidence=np.zeros(k, dtype=np.float32),
            au=None if n_au is None else np.full((k, n_au), np.nan, dtype=np.float32),
            pose=None if n_au is None else np.full((k, 6), np.nan, dtype=np.float32),
            boxes=np.full((k, 4), np.nan, dtype=np.float32),
            gaze=None if n_au is None else np.full((k, 8), np.nan, dtype=np.float32),
        )

    @property
    def any_face(self) -> bool:
        """Whether at least one frame has a face."""
        return bool(self.mask.any())


_RESULT_FIELDS = ("faces", "mask", "landmarks", "n_faces", "confidence", "au", "pose", "boxes",
                  "gaze")  # fmt: skip


class FaceResultBuilder:
    """One clip's :class:`FaceResult` from its chunks' results, filled in place (what
    concatenating them gives): ``capacity`` frames expected. The crops go to a
    :class:`RowSpool` (12 MB per minute of video at 112 pixels), so memory stays flat with the
    clip's length; the other arrays are a few kilobytes per frame."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(int(capacity), 1)
        self.arrays: dict[str, np.ndarray | None] = {}
        self.n = 0

    def add(self, res: FaceResult) -> None:
        """Append one chunk's result."""
        k = len(res.mask)
        for name in _RESULT_FIELDS:
            value = getattr(res, name)
            if name not in self.arrays:  # a field the first chunk lacks stays None
                self.arrays[name] = None if value is None else self._new(name, np.asarray(value))
            arr = self.arrays[name]
            if arr is None:
                continue
            if isinstance(arr, RowSpool):
                arr.append(value)
                continue
            if self.n + k > len(arr):  # more frames than sample times: grow (not expected)
                arr = self.arrays[name] = np.concatenate([arr, np.empty_like(arr)])
            arr[self.n : self.n + k] = value
        self.n += k

    def _new(self, name: str, value: np.ndarray) -> np.ndarray | RowSpool:
        if name == "faces":
            return RowSpool(value.shape[1:], value.dtype)
        return np.empty((max(self.capacity, len(value)), *value.shape[1:]), value.dtype)

    def result(self) -> FaceResult:
        """The whole clip's result (views of the filled rows)."""
        got = {n: a if a is None or isinstance(a, RowSpool) else a[: self.n]
               for n, a in self.arrays.items()}  # fmt: skip
        return FaceResult(**got)


def checked_frames(clip_id: str, frames: Any) -> np.ndarray | ClipError:
    """A clip's sampled frames as a backend takes them, ``(K, H, W, 3)`` uint8 RGB, or the
    ``too_short`` ClipError when none were sampled (a wrong shape or type is a bug: ValueError)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"{clip_id}: frames must be (K, H, W, 3) uint8, got {frames.shape} {frames.dtype}"
        )
    if len(frames) == 0:
        return ClipError("too_short", "no frames were sampled from the clip")
    return frames
