"""The inputs of fusion: a branch's ``predictions.parquet`` read into arrays, and the selected
branches aligned on one sorted list of clips (a missing modality has zero/NaN rows)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from emoflow.branches import ordered, row_sources
from emoflow.errors import EmoflowError
from emoflow.storage.tables import META_KEY

# --------------------------------------------------------------------------- reading


@dataclass
class BranchPredictions:
    """The arrays of one branch's ``predictions.parquet`` (row order of the file)."""

    meta: dict[str, Any]
    clip_id: np.ndarray  # (N,) object (str)
    part: np.ndarray  # (N,) object (str)
    y: np.ndarray  # (N,) int64, -1 unknown
    va_true: np.ndarray  # (N, 2) float64: valence, arousal; NaN unknown
    prob: np.ndarray  # (N, C) float64; C == 0 for a dimensional target
    va: np.ndarray  # (N, 2) float64; NaN when categorical only
    embedding: np.ndarray  # (N, D) float64


def _list_matrix(column: pa.ChunkedArray, name: str, path: Path) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    lengths = arr.value_lengths().to_numpy(zero_copy_only=False) if n else np.zeros(0)
    width = int(lengths[0]) if n else 0
    if n and np.any(lengths != width):
        raise EmoflowError(f"{path}: column {name!r} has lists of different lengths")
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    return values.reshape(n, width)


def read_branch_predictions(path: Path) -> BranchPredictions:
    """Read a branch's ``predictions.parquet`` following the training contract."""
    path = Path(path)
    table = pq.read_table(path)
    raw_meta = (table.schema.metadata or {}).get(META_KEY)
    if raw_meta is None:
        raise EmoflowError(f"{path}: no 'emoflow' schema metadata")
    meta = json.loads(raw_meta)

    def col(name: str) -> pa.ChunkedArray:
        if name not in table.column_names:
            raise EmoflowError(f"{path}: missing column {name!r}")
        return table.column(name)

    def floats(name: str) -> np.ndarray:
        return np.asarray(col(name).to_numpy(), dtype=np.float64)

    return BranchPredictions(
        meta=meta,
        clip_id=np.asarray(col("clip_id").to_pylist(), dtype=object),
        part=np.asarray(col("part").to_pylist(), dtype=object),
        y=np.asarray(col("y").to_numpy(), dtype=np.int64),
        va_true=np.stack([floats("valence_true"), floats("arousal_true")], axis=1),
        prob=_list_matrix(col("prob"), "prob", path),
        va=np.stack([floats("valence"), floats("arousal")], axis=1),
        embedding=_list_matrix(col("embedding"), "embedding", path),
    )


# --------------------------------------------------------------------------- alignment


@dataclass
class Aligned:
    """The branches on one sorted list of clips; a missing modality has zero/NaN rows."""

    clip_id: np.ndarray
    part: np.ndarray
    y: np.ndarray
    va_true: np.ndarray
    has: dict[str, np.ndarray]
    prob: dict[str, np.ndarray]
    va: dict[str, np.ndarray]
    embedding: dict[str, np.ndarray]

    @property
    def branches(self) -> list[str]:
        return ordered(self.has)

    @property
    def both(self) -> np.ndarray:
        """Rows that have every branch (what fusion is fitted on)."""
        return np.logical_and.reduce([self.has[b] for b in self.branches])

    @property
    def source(self) -> np.ndarray:
        """``both``/``all``/``<branch>_only``/``a+b`` per row (see
        :func:`emoflow.branches.row_sources`)."""
        return np.asarray(row_sources(self.has), dtype=object)


def align(preds: dict[str, BranchPredictions], n_classes: int) -> Aligned:
    """Outer-join the branches on ``clip_id`` (sorted); check labels and parts agree.

    ``n_classes`` is the width of the probability vectors (0 for a dimensional target).
    """
    ids = sorted(set().union(*(set(p.clip_id.tolist()) for p in preds.values())))
    n = len(ids)
    pos = {c: i for i, c in enumerate(ids)}
    part = np.full(n, None, dtype=object)
    y = np.full(n, -2, dtype=np.int64)
    va_true = np.full((n, 2), np.nan)
    has, prob, va, emb = {}, {}, {}, {}
    for branch in ordered(preds):
        p = preds[branch]
        if len(set(p.clip_id.tolist())) != len(p.clip_id):
            raise EmoflowError(f"{branch} predictions list a clip twice")
        idx = np.array([pos[c] for c in p.clip_id], dtype=np.int64)
        has[branch] = np.zeros(n, dtype=bool)
        has[branch][idx] = True
        if len(idx) and p.prob.shape[1] != n_classes:
            raise EmoflowError(
                f"{branch} predictions have {p.prob.shape[1]} probabilities, expected {n_classes}"
            )
        prob[branch] = np.zeros((n, n_classes))
        prob[branch][idx] = p.prob.reshape(len(idx), n_classes)
        va[branch] = np.full((n, 2), np.nan)
        va[branch][idx] = p.va
        emb[branch] = np.zeros((n, p.embedding.shape[1]))
        emb[branch][idx] = p.embedding
        for i, j in enumerate(idx):
            if part[j] is not None and part[j] != p.part[i]:
                raise EmoflowError(f"clip {ids[j]!r}: branches disagree on its part")
            part[j] = p.part[i]
            if y[j] != -2 and y[j] != p.y[i]:
                raise EmoflowError(f"clip {ids[j]!r}: branches disagree on its class")
            y[j] = p.y[i]
        known = ~np.isnan(va_true[idx])
        va_true[idx] = np.where(known, va_true[idx], p.va_true)
    return Aligned(np.asarray(ids, dtype=object), part, y, va_true, has, prob, va, emb)


# --------------------------------------------------------------------------- fitting rows


def pooled_test(parts: list[BranchPredictions]) -> BranchPredictions:
    """The ``test`` rows of several runs of one branch (folds, or the inner folds of one fold)
    concatenated and relabelled ``fit``: out-of-fold predictions to fit fusion on."""
    fields = ("clip_id", "part", "y", "va_true", "prob", "va", "embedding")
    sel = [p.part == "test" for p in parts]
    joined = {f: np.concatenate([getattr(p, f)[s] for p, s in zip(parts, sel, strict=True)])
              for f in fields}  # fmt: skip
    joined["part"] = np.full(len(joined["clip_id"]), "fit", dtype=object)
    return replace(parts[0], **joined)


def out_of_fold(paths: dict[str, list[Path]], n_classes: int) -> Aligned:
    """Each branch's pooled test rows of the runs in ``paths`` (``{branch: [predictions]}``),
    aligned: the clips fusion is fitted on (a clip held out twice is an error)."""
    return align({b: pooled_test([read_branch_predictions(p) for p in paths[b]])
                  for b in ordered(paths)}, n_classes)  # fmt: skip


def subset(a: Aligned, rows: np.ndarray) -> Aligned:
    """``a`` restricted to ``rows`` (a boolean mask or indices)."""
    return Aligned(
        a.clip_id[rows], a.part[rows], a.y[rows], a.va_true[rows],
        {b: v[rows] for b, v in a.has.items()}, {b: v[rows] for b, v in a.prob.items()},
        {b: v[rows] for b, v in a.va.items()}, {b: v[rows] for b, v in a.embedding.items()},
    )  # fmt: skip
