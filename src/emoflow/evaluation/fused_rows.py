"""The fused prediction tables of every (fold, seed), read into one set of sorted arrays."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from emoflow.errors import EmoflowError
from emoflow.fusion.apply import has_categorical
from emoflow.storage.tables import META_KEY


@dataclass
class FusedRows:
    """All fused test predictions of every (fold, seed), sorted by method, fold, seed, clip."""

    classes: list[str]
    target: str
    fold: np.ndarray
    seed: np.ndarray
    clip_id: np.ndarray
    method: np.ndarray
    y: np.ndarray
    va_true: np.ndarray  # (N, 2): valence, arousal
    prob: np.ndarray  # (N, C)
    va: np.ndarray  # (N, 2)
    source: np.ndarray
    part: np.ndarray
    problems: dict[tuple[int, int], dict[str, str]]  # (fold, seed) -> {method: reason}
    fits: dict[tuple[int, int], dict[str, Any]]  # (fold, seed) -> what fusion was fitted on


def load_fused(paths: list[Path]) -> FusedRows:
    """Read and concatenate fused prediction files; check they share classes and target."""
    parts: list[dict[str, Any]] = []
    classes: list[str] | None = None
    target: str | None = None
    problems: dict[tuple[int, int], dict[str, str]] = {}
    fits: dict[tuple[int, int], dict[str, Any]] = {}
    for path in paths:
        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(META_KEY)
        if raw is None:
            raise EmoflowError(f"{Path(path).name}: no 'emoflow' schema metadata")
        meta = json.loads(raw)
        if classes is None:
            classes, target = list(meta["classes"]), meta["target"]
        elif list(meta["classes"]) != classes or meta["target"] != target:
            raise EmoflowError("fused predictions differ in classes or target")
        run = (int(meta["fold"]), int(meta["seed"]))
        problems[run] = dict(meta.get("fusion_problems", {}))
        fits[run] = dict(meta.get("fusion_fit", {}))
        cols = table.to_pydict()
        n = table.num_rows
        k = len(classes) if has_categorical(meta["target"]) else 0
        prob = np.asarray([p for p in cols["prob"]], dtype=np.float64).reshape(n, k)
        parts.append(
            {
                "fold": np.full(n, int(meta["fold"]), dtype=np.int64),
                "seed": np.full(n, int(meta["seed"]), dtype=np.int64),
                "clip_id": np.asarray(cols["clip_id"], dtype=object),
                "method": np.asarray(cols["method"], dtype=object),
                "y": np.asarray(cols["y"], dtype=np.int64),
                "va_true": np.asarray(
                    [cols["valence_true"], cols["arousal_true"]], dtype=np.float64
                ).T.reshape(n, 2),
                "prob": prob,
                "va": np.asarray([cols["valence"], cols["arousal"]], dtype=np.float64).T.reshape(
                    n, 2
                ),
                "source": np.asarray(cols["source"], dtype=object),
                "part": np.asarray(cols["part"], dtype=object),
            }
        )
    if classes is None or target is None:
        raise EmoflowError("no fused predictions to evaluate")
    joined = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    order = np.lexsort(
        (
            joined["clip_id"].astype(str),
            joined["seed"],
            joined["fold"],
            joined["method"].astype(str),
        )
    )
    ordered = {key: value[order] for key, value in joined.items()}
    return FusedRows(classes, target, **ordered, problems=dict(sorted(problems.items())),
                     fits=dict(sorted(fits.items())))  # fmt: skip
