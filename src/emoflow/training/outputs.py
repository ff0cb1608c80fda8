"""What a training run writes besides the model: clip-level outputs, ``predictions.parquet``
(the contract read by fusion and evaluation) and ``history.csv``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from emoflow.models.pooling import clip_probabilities
from emoflow.storage.tables import META_KEY, PREDICTION_SCHEMA, write_table


@dataclass
class ClipOutputs:
    """Clip-level outputs of a model on a list of clips (numpy, float32)."""

    clip_ids: list[str]
    y: np.ndarray  # (N,) int
    va_true: np.ndarray  # (N, 2)
    embedding: np.ndarray  # (N, E)
    logits: np.ndarray | None  # (N, C)
    va: np.ndarray | None  # (N, 2)


def write_predictions(path: Path, parts: dict[str, ClipOutputs], meta: dict[str, Any]) -> None:
    """Write ``predictions.parquet`` (schema :data:`PREDICTION_SCHEMA`, sorted by part, clip).

    ``prob`` is the softmax of the clip logits (empty list without a categorical head);
    ``valence``/``arousal`` are NaN without a dimensional head; schema metadata ``emoflow``
    holds JSON with classes, branch, fold, seed and target.
    """
    rows = []
    for part, out in parts.items():
        probs = (
            clip_probabilities(torch.tensor(out.logits)).numpy().astype(np.float32)
            if out.logits is not None
            else None
        )
        for i, clip_id in enumerate(out.clip_ids):
            rows.append(
                (
                    part,
                    clip_id,
                    int(out.y[i]),
                    float(out.va_true[i, 0]),
                    float(out.va_true[i, 1]),
                    probs[i].tolist() if probs is not None else [],
                    float(out.va[i, 0]) if out.va is not None else float("nan"),
                    float(out.va[i, 1]) if out.va is not None else float("nan"),
                    out.embedding[i].tolist(),
                )
            )
    rows.sort(key=lambda r: (r[0], r[1]))
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in range(9)]
    order = [1, 0, 2, 3, 4, 5, 6, 7, 8]
    arrays = [
        pa.array(list(columns[src]), type=PREDICTION_SCHEMA.field(dst).type)
        for dst, src in enumerate(order)
    ]
    schema = PREDICTION_SCHEMA.with_metadata({META_KEY: json.dumps(meta, sort_keys=True)})
    write_table(path, pa.Table.from_arrays(arrays, schema=schema))


def _fmt(x: float) -> str:
    return "nan" if x is None or math.isnan(x) else format(x, ".8g")


def history_csv(history: list[dict[str, float]]) -> str:
    """``history.csv`` text: epoch, train_loss, val_loss, val_metric (no times)."""
    lines = ["epoch,train_loss,val_loss,val_metric"]
    for h in history:
        lines.append(
            f"{int(h['epoch'])},{_fmt(h['train_loss'])},{_fmt(h['val_loss'])},"
            f"{_fmt(h['val_metric'])}"
        )
    return "\n".join(lines) + "\n"
