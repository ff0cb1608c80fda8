"""A model's clip-level outputs on a dataset and the validation metric that selects the epoch.

Each clip's window outputs are pooled by :func:`emoflow.models.pooling.pool_windows` (as
``predict`` pools them); the validation metric is UAR for a categorical target, the mean CCC of
valence and arousal for a dimensional one, and their mean for ``both``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from emoflow.evaluation.metrics import known_classes, uar
from emoflow.models.losses import branch_loss, ccc
from emoflow.models.pooling import pool_windows
from emoflow.storage.shards import VECTOR_KINDS
from emoflow.training.branch_data import FRAME_VECTOR_BRANCHES
from emoflow.training.datasets import collate_clips
from emoflow.training.loaders import make_loader
from emoflow.training.normalisation import face_model_input, normalise_audio, normalise_vectors
from emoflow.training.outputs import ClipOutputs
from emoflow.training.runtime import autocast


def mean_ccc(true: np.ndarray, pred: np.ndarray) -> float:
    """Mean CCC over the valence and arousal columns with at least two known targets."""
    values = []
    for d in range(true.shape[1]):
        known = ~np.isnan(true[:, d])
        if known.sum() >= 2:
            values.append(float(ccc(torch.tensor(pred[known, d]), torch.tensor(true[known, d]))))
    return float(np.mean(values)) if values else float("nan")


def val_metric(outputs: ClipOutputs, target: str) -> float:
    """UAR, mean CCC, or their mean for ``both`` (higher is better)."""
    parts = []
    if target in ("categorical", "both") and outputs.logits is not None:
        parts.append(uar(*known_classes(outputs.y, outputs.logits.argmax(axis=1))))
    if target in ("dimensional", "both") and outputs.va is not None:
        parts.append(mean_ccc(outputs.va_true, outputs.va))
    parts = [p for p in parts if not math.isnan(p)]
    return float(np.mean(parts)) if parts else float("nan")


def model_inputs(branch: str, batch: tuple, norm: dict[str, Any], device: torch.device) -> list:
    """A batch's model inputs on ``device``: raw log-mel / uint8 faces moved first, then
    standardised there with the functions ``predict`` uses."""
    x = batch[0].to(device, non_blocking=True)
    if branch == "audio":
        return [normalise_audio(x, norm)]
    if branch in VECTOR_KINDS:
        return [normalise_vectors(x, norm)]
    x = normalise_vectors(x, norm) if branch in FRAME_VECTOR_BRANCHES else face_model_input(x, norm)
    return [x, batch[1].to(device, non_blocking=True)]


def forward(
    model: nn.Module, branch: str, batch: tuple, device: torch.device, norm: dict[str, Any]
) -> dict:
    return model(*model_inputs(branch, batch, norm, device))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    branch: str,
    dataset: Any,
    batch_size: int,
    device: torch.device,
    norm: dict[str, Any],
    amp_dtype: torch.dtype | None = None,
) -> ClipOutputs:
    """Clip-level outputs in dataset order: each clip's window outputs pooled by
    :func:`emoflow.models.pooling.pool_windows` (as ``predict`` pools them)."""
    model.eval()
    loader = make_loader(dataset, batch_size, shuffle=False, seed=0, collate_fn=collate_clips)
    chunks: dict[str, list[torch.Tensor]] = {"embedding": [], "logits": [], "va": []}
    ys, vas = [], []
    for batch in loader:
        with autocast(device, amp_dtype):
            out = forward(model, branch, batch, device, norm)
        out = pool_windows({k: v.float().cpu() for k, v in out.items()}, batch[-3])
        for key, value in out.items():
            chunks[key].append(value)
        ys.append(batch[-2])
        vas.append(batch[-1])
    n = len(dataset)

    def cat(key: str) -> np.ndarray | None:
        if not chunks[key]:
            return None
        return torch.cat(chunks[key]).numpy().astype(np.float32)

    embedding = cat("embedding")
    return ClipOutputs(
        clip_ids=list(dataset.clip_ids),
        y=torch.cat(ys).numpy() if n else np.zeros(0, np.int64),
        va_true=torch.cat(vas).numpy() if n else np.zeros((0, 2), np.float32),
        embedding=embedding if embedding is not None else np.zeros((0, 0), np.float32),
        logits=cat("logits"),
        va=cat("va"),
    )


def clip_loss(outputs: ClipOutputs, target: str, weight: torch.Tensor | None) -> float:
    if not outputs.clip_ids:
        return float("nan")
    out = {"embedding": torch.tensor(outputs.embedding)}
    if outputs.logits is not None:
        out["logits"] = torch.tensor(outputs.logits)
    if outputs.va is not None:
        out["va"] = torch.tensor(outputs.va)
    loss = branch_loss(out, torch.tensor(outputs.y), torch.tensor(outputs.va_true), target, weight)
    return float(loss)
