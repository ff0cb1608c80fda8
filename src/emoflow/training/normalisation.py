"""Input normalisation: statistics fitted on a fold's training clips only, in one streaming
pass (running sums in float64, one clip in memory at a time), and the functions that apply them
on the model's device. Training, evaluation and ``predict`` all standardise with these:
per mel for log-mel windows, per value for window and frame vectors, per channel for faces."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from emoflow.errors import EmoflowError
from emoflow.training.windows import preprocess_faces


def norm_from_sums(parts: Iterable[tuple[np.ndarray, np.ndarray, int]], what: str) -> dict:
    """Mean and std (floored at 1e-5) from per-clip ``(sum, sum of squares, count)`` of
    float64 values, accumulated in order (one clip in memory at a time)."""
    total = sq = None
    count = 0
    for s, s2, n in parts:
        total = s if total is None else total + s
        sq = s2 if sq is None else sq + s2
        count += n
    if total is None or sq is None:
        raise EmoflowError(f"no training {what} to fit the normalisation on")
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
    return {
        "mean": torch.tensor(mean, dtype=torch.float32),
        "std": torch.tensor(np.maximum(std, 1e-5), dtype=torch.float32),
    }


def fit_audio_norm(
    shards: Any, clip_ids: Iterable[str], field: str = "logmel"
) -> dict[str, torch.Tensor]:
    """Per-row mean and std (per mel of the log-mel windows, per functional of the eGeMAPS
    windows: axis 1 of ``field``) over the windows of ``clip_ids`` (streaming, float64)."""

    def parts() -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        for clip_id in clip_ids:
            x = np.asarray(getattr(shards.get(clip_id), field), dtype=np.float64)
            if x.size:
                axes = tuple(i for i in range(x.ndim) if i != 1)
                yield x.sum(axis=axes), (x**2).sum(axis=axes), x.size // x.shape[1]

    return norm_from_sums(parts(), f"{field} window")


def normalise_audio(logmel: np.ndarray | torch.Tensor, norm: dict[str, Any]) -> torch.Tensor:
    """``(..., n_mels, T)`` log-mel -> float32 standardised per mel, on the input's device
    (training calls it on the model's device, ``predict`` on the CPU)."""
    x = torch.as_tensor(logmel, dtype=torch.float32)
    mean = norm["mean"].to(x.device)[:, None]
    std = norm["std"].to(x.device)[:, None]
    return (x - mean) / std


def normalise_vectors(vectors: np.ndarray | torch.Tensor, norm: dict[str, Any]) -> torch.Tensor:
    """``(..., D)`` window vectors (eGeMAPS functionals) -> float32 standardised per feature,
    on the input's device (training and ``predict`` both call it)."""
    x = torch.as_tensor(vectors, dtype=torch.float32)
    return (x - norm["mean"].to(x.device)) / norm["std"].to(x.device)


def face_model_input(x: torch.Tensor, norm: dict[str, Any]) -> torch.Tensor:
    """uint8 frames ``(..., C, s, s)`` -> float32 in [0, 1] standardised per channel, on the
    input's device (training: the model's device; ``predict``: the CPU)."""
    c = x.shape[-3]
    mean = norm["mean"].to(x.device).view(c, 1, 1)
    std = norm["std"].to(x.device).view(c, 1, 1)
    return (x.float() / 255.0 - mean) / std


def fit_face_norm(
    shards: Any, clip_ids: Iterable[str], size: int, gray: bool = True
) -> dict[str, torch.Tensor]:
    """Per-channel mean and std over the face frames (mask True) of ``clip_ids``, at model
    size (:func:`emoflow.training.windows.preprocess_faces`), in [0, 1]."""

    def parts() -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        for clip_id in clip_ids:
            rec = shards.get(clip_id)
            mask = np.asarray(rec.mask, dtype=bool)
            if mask.any():
                x = preprocess_faces(np.asarray(rec.faces)[mask], size, gray).double() / 255.0
                yield (x.sum(dim=(0, 2, 3)).numpy(), (x**2).sum(dim=(0, 2, 3)).numpy(),
                       x.shape[0] * x.shape[2] * x.shape[3])  # fmt: skip

    return norm_from_sums(parts(), "face frame")
