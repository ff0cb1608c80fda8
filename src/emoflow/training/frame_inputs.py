"""The input of the branches that learn from one vector per face frame: ``au`` and ``face_cnn``.

- ``au``: OpenFace's outputs stored in the face shards next to the crops: the 17 AU
  intensities (``AU01_r`` … ``AU45_r``), the head pose (``pose_Tx`` … ``pose_Rz``) and gaze
  (both eyes' vectors and the two angles) — 31 values, concatenated in that order.
- ``face_cnn``: the face_cnn stage's frozen encoder outputs (:mod:`emoflow.features.face_cnn`),
  the columns its spec's ``fields`` give for ``face_cnn.features``.

Frames without a face are masked (their values are NaN or 0 in the shard, 0 here); the windows
are the face grid's, as for the ``visual`` branch. Training, evaluation and ``predict`` all
build a clip's input with :func:`clip_frame_vectors` and standardise it with
:func:`emoflow.training.normalisation.normalise_vectors` (statistics from :func:`fit_frame_norm`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from emoflow.errors import EmoflowError
from emoflow.training.normalisation import norm_from_sums
from emoflow.training.windows import ClipFaces, frame_windows

AU_FIELDS = ("au", "pose", "gaze")
READ_FIELDS = {"au": ("mask", *AU_FIELDS), "face_cnn": None}
"""The per-frame arrays each branch reads from its shards (``au``: never the crops)."""


def frame_vectors(branch: str, rec: Any, columns: Sequence[int] | None = None) -> np.ndarray:
    """``(F, D)`` float32: a clip's per-frame vectors for ``branch`` (NaN -> 0); face_cnn: the
    stored columns ``columns`` (start, stop)."""
    if branch == "face_cnn":
        start, stop = columns or (0, None)
        return np.asarray(rec.vectors, np.float32)[:, start:stop]
    parts = [getattr(rec, name, None) for name in AU_FIELDS]
    missing = [name for name, part in zip(AU_FIELDS, parts, strict=True) if part is None]
    if missing:
        raise EmoflowError(
            f"the face features have no {', '.join(missing)}: the au branch needs faces "
            "extracted with faces.backend: openface (rerun the faces stage with it)"
        )
    x = np.concatenate([np.asarray(p, np.float32).reshape(len(p), -1) for p in parts], axis=1)
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def clip_frame_vectors(
    branch: str, rec: Any, frames: int, columns: Sequence[int] | None = None
) -> ClipFaces:
    """A clip's windows of per-frame vectors (``frames (F, D)`` float32) with the face mask."""
    x = frame_vectors(branch, rec, columns)
    return frame_windows(torch.from_numpy(np.ascontiguousarray(x)), np.asarray(rec.mask, bool),
                         rec.window_frame0, frames)  # fmt: skip


def fit_frame_norm(
    branch: str, shards: Any, clip_ids: Iterable[str], columns: Sequence[int] | None = None
) -> dict[str, torch.Tensor]:
    """Per-value mean and std over the face frames (mask True) of ``clip_ids`` (float64 sums)."""

    def parts() -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        for clip_id in clip_ids:
            rec = shards.get(clip_id, READ_FIELDS[branch])
            x = frame_vectors(branch, rec, columns)[np.asarray(rec.mask, bool)]
            x = x.astype(np.float64)
            if len(x):
                yield x.sum(0), (x**2).sum(0), len(x)

    return norm_from_sums(parts(), f"{branch} face frame")
