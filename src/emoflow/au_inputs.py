"""The ``au`` branch's input: OpenFace's per-frame outputs stored in the face shards.

Per face frame: the 17 AU intensities (``AU01_r`` … ``AU45_r``), the head pose (``pose_Tx`` …
``pose_Rz``) and gaze (both eyes' vectors and the two angles) that the ``openface`` backend
writes into the faces stage's shards next to the crops — 31 values, concatenated in that order.
Frames without a face are masked (their values are NaN in the shard and 0 here); the windows
are the faces stage's, as for the ``visual`` branch. Training, evaluation and ``predict`` all
build a clip's input with :func:`clip_au` and standardise it with
:func:`emoflow.data.normalise_vectors` (statistics from :func:`fit_au_norm`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from emoflow.data import ClipFaces, frame_windows
from emoflow.errors import EmoflowError

AU_FIELDS = ("au", "pose", "gaze")
READ_FIELDS = ("mask", *AU_FIELDS)
"""The face shard's per-frame arrays the branch reads (never the crops)."""


def frame_vectors(rec: Any) -> np.ndarray:
    """``(F, 31)`` float32: a face record's AU intensities, pose and gaze per frame (NaN -> 0)."""
    parts = [getattr(rec, name, None) for name in AU_FIELDS]
    missing = [name for name, part in zip(AU_FIELDS, parts, strict=True) if part is None]
    if missing:
        raise EmoflowError(
            f"the face features have no {', '.join(missing)}: the au branch needs faces "
            "extracted with faces.backend: openface (rerun the faces stage with it)"
        )
    x = np.concatenate([np.asarray(p, np.float32).reshape(len(p), -1) for p in parts], axis=1)
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def clip_au(rec: Any, frames: int) -> ClipFaces:
    """A clip's windows of per-frame vectors (``frames (F, 31)`` float32) with the face mask."""
    x = frame_vectors(rec)
    return frame_windows(torch.from_numpy(x), np.asarray(rec.mask, bool), rec.window_frame0, frames)


def fit_au_norm(shards: Any, clip_ids: Iterable[str]) -> dict[str, torch.Tensor]:
    """Per-value mean and std over the face frames (mask True) of ``clip_ids`` (float64 sums)."""
    total = sq = None
    count = 0
    for clip_id in clip_ids:
        rec = shards.get(clip_id, READ_FIELDS)
        x = frame_vectors(rec)[np.asarray(rec.mask, bool)].astype(np.float64)
        if not len(x):
            continue
        total = x.sum(0) if total is None else total + x.sum(0)
        sq = (x**2).sum(0) if sq is None else sq + (x**2).sum(0)
        count += len(x)
    if total is None or sq is None:
        raise EmoflowError("no training face frame to fit the au normalisation on")
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
    return {
        "mean": torch.tensor(mean, dtype=torch.float32),
        "std": torch.tensor(np.maximum(std, 1e-5), dtype=torch.float32),
    }
