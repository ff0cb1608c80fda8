"""Read one clip's OpenFace ``FeatureExtraction`` output (CSV + aligned BMPs) into a FaceResult.

OpenFace's exit code says almost nothing, so a result is accepted only when the CSV has one row
per input frame; ``success`` decides per frame, and the numbers of failed rows (garbage pose,
zero landmarks) are never used.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from emoflow.errors import ClipError
from emoflow.faces.result import FaceResult

#: AU intensity columns OpenFace 2.x writes with ``-aus`` (AU28 has presence only).
AU_NAMES: list[str] = [
    f"AU{n:02d}_r" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
]
POSE_COLUMNS: list[str] = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
#: ``-gaze``: each eye's unit gaze vector (camera coordinates) and the two gaze angles (radians).
GAZE_COLUMNS: list[str] = [
    *(f"gaze_{eye}_{axis}" for eye in (0, 1) for axis in "xyz"),
    "gaze_angle_x",
    "gaze_angle_y",
]
LANDMARK_X = [f"x_{i}" for i in range(68)]
LANDMARK_Y = [f"y_{i}" for i in range(68)]
REQUIRED = ["frame", "confidence", "success", *POSE_COLUMNS, *LANDMARK_X, *LANDMARK_Y, *AU_NAMES]


def _rows(path: Path) -> Iterator[list[str]]:
    """The CSV's non-empty rows, one at a time (a long clip's CSV is tens of megabytes)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        yield from (row for row in csv.reader(fh, skipinitialspace=True) if row)


def _header(rows: Iterator[list[str]]) -> list[str]:
    """The first row's names, stripped of the spaces after OpenFace's ", " separators."""
    return [name.strip() for name in next(rows, [])]


def read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a whole CSV (:func:`parse_clip_output` reads one row at a time)."""
    rows = _rows(path)
    return _header(rows), list(rows)


def aligned_name(frame: int) -> str:
    """File name of the aligned face of a 1-based frame number (single face, ``-fdir``)."""
    return f"frame_det_00_{frame:06d}.bmp"


def load_aligned(path: Path, size: int) -> np.ndarray | None:
    """An aligned BMP as (size, size, 3) uint8 RGB (bilinear resize if needed), None if absent."""
    if not path.is_file():
        return None
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8).copy()


def parse_clip_output(csv_path: Path, aligned_dir: Path, k: int, size: int) -> FaceResult:
    """Parse ``<name>.csv`` and ``<name>_aligned/`` for a clip of ``k`` frames.

    Raises ClipError("tool_crash") when the CSV is empty, lacks columns, or does not hold
    exactly one row for each frame 1..k. Frames whose row has ``success`` 0 (or whose aligned
    image is missing) get mask False, zero landmarks/crop and NaN AU/pose/gaze. Gaze is read
    when the CSV has its columns (``-gaze``; NaN otherwise).
    """
    rows = _rows(csv_path)
    header = _header(rows)
    missing = [c for c in REQUIRED if c not in header]
    if not header or missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise ClipError(
            "tool_crash", f"OpenFace CSV {csv_path.name} lacks columns: {shown or 'no header'}"
        )
    col = {name: i for i, name in enumerate(header)}
    has_gaze = all(c in col for c in GAZE_COLUMNS)
    result = FaceResult.empty(k, size, n_au=len(AU_NAMES), spool=True)
    seen: set[int] = set()
    for row in rows:
        if len(row) != len(header):
            raise ClipError(
                "tool_crash",
                f"OpenFace CSV {csv_path.name}: a row has {len(row)} fields, header {len(header)}",
            )
        try:
            frame = int(float(row[col["frame"]]))
            success = int(float(row[col["success"]])) == 1
        except ValueError as exc:
            raise ClipError("tool_crash", f"OpenFace CSV {csv_path.name}: {exc}") from exc
        if not 1 <= frame <= k or frame in seen:
            raise ClipError("tool_crash", _row_count_error(csv_path, frame, k, len(seen)))
        seen.add(frame)
        if not success:
            continue
        i = frame - 1
        crop = load_aligned(aligned_dir / aligned_name(frame), size)
        if crop is None:
            continue
        try:
            values = np.array([float(v) for v in row], dtype=np.float64)
        except ValueError as exc:
            raise ClipError("tool_crash", f"OpenFace CSV {csv_path.name}: {exc}") from exc
        result.faces[i] = crop
        result.mask[i] = True
        result.n_faces[i] = 1
        result.confidence[i] = values[col["confidence"]]
        result.landmarks[i, :, 0] = values[[col[c] for c in LANDMARK_X]]
        result.landmarks[i, :, 1] = values[[col[c] for c in LANDMARK_Y]]
        pts = result.landmarks[i]
        result.boxes[i] = [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]
        result.au[i] = values[[col[c] for c in AU_NAMES]]
        result.pose[i] = values[[col[c] for c in POSE_COLUMNS]]
        if has_gaze:
            result.gaze[i] = values[[col[c] for c in GAZE_COLUMNS]]
    if len(seen) != k:
        raise ClipError("tool_crash", f"OpenFace CSV {csv_path.name} has {len(seen)} rows for "
                        f"{k} frames")  # fmt: skip
    return result


def _row_count_error(csv_path: Path, frame: int, k: int, rows_before: int) -> str:
    """The message for a frame number out of ``1..k`` or repeated: a CSV of more rows than
    frames says so, as a CSV of fewer rows does."""
    if rows_before >= k:
        return f"OpenFace CSV {csv_path.name} has more than {k} rows for {k} frames"
    return f"OpenFace CSV {csv_path.name}: frame {frame} is out of 1..{k} or repeated"
