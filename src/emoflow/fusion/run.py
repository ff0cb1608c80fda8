"""The fuse job of one (fold, seed): read the branches' predictions, check they belong
together, fit and apply every method (:mod:`emoflow.fusion.methods`), and write the fused test
predictions and the fitted parameters (JSON). Rerunning gives the same bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from emoflow.branches import ordered
from emoflow.errors import EmoflowError
from emoflow.fusion.apply import has_categorical, has_dimensional
from emoflow.fusion.inputs import Aligned, BranchPredictions, align, read_branch_predictions
from emoflow.fusion.methods import fit_problems, fuse_arrays, fusion_methods
from emoflow.storage.atomic import write_text
from emoflow.storage.tables import FUSED_SCHEMA, META_KEY, write_table


def _check_meta(preds: dict[str, BranchPredictions], fold: int, seed: int) -> dict[str, Any]:
    metas = {b: p.meta for b, p in preds.items()}
    for branch, meta in metas.items():
        if meta.get("branch", branch) != branch:
            raise EmoflowError(f"{branch} predictions are labelled branch {meta.get('branch')!r}")
        if int(meta["fold"]) != fold or int(meta["seed"]) != seed:
            raise EmoflowError(
                f"{branch} predictions are for fold {meta['fold']} seed {meta['seed']}, "
                f"expected fold {fold} seed {seed}"
            )
    first = next(iter(metas.values()))
    for branch, meta in metas.items():
        if list(meta["classes"]) != list(first["classes"]) or meta["target"] != first["target"]:
            raise EmoflowError(
                f"{' and '.join(metas)} predictions differ in classes or target ({branch})"
            )
    return {"classes": list(first["classes"]), "target": first["target"], "fold": fold,
            "seed": seed, "branches": list(metas)}  # fmt: skip


def _check_parts(a: Aligned, folds_path: Path, fold: int) -> None:
    folds = pq.read_table(folds_path, columns=["fold", "clip_id", "role"]).to_pydict()
    role = {
        c: r
        for f, c, r in zip(folds["fold"], folds["clip_id"], folds["role"], strict=True)
        if int(f) == fold
    }
    for clip, part in zip(a.clip_id, a.part, strict=True):
        if part not in ("val", "test", "unlabelled"):
            raise EmoflowError(f"clip {clip!r}: unexpected part {part!r} in predictions")
        if role.get(clip) != part:
            raise EmoflowError(
                f"clip {clip!r}: predictions say {part!r}, folds say {role.get(clip)!r} "
                f"for fold {fold}"
            )


def fused_table(
    a: Aligned,
    results: dict[str, tuple[np.ndarray, np.ndarray]],
    target: str,
    meta: dict[str, Any],
) -> pa.Table:
    """The fused predictions of the test and unlabelled clips, sorted by (method, clip_id)."""
    test = np.isin(a.part, ["test", "unlabelled"])
    rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for branch in a.branches:
        sel = test & a.has[branch]
        src = np.full(len(a.clip_id), f"{branch}_only", dtype=object)
        rows.append((branch, sel, a.prob[branch], a.va[branch], src))
    source = a.source
    for method, (prob, va) in results.items():
        rows.append((method, test, prob, va, source))
    cols: dict[str, list[Any]] = {name: [] for name in FUSED_SCHEMA.names}
    for method, sel, prob, va, src in sorted(rows, key=lambda r: r[0]):
        idx = np.flatnonzero(sel)  # a.clip_id is sorted, so rows come sorted by clip_id
        cols["clip_id"].extend(a.clip_id[idx].tolist())
        cols["method"].extend([method] * len(idx))
        cols["y"].extend(a.y[idx].tolist())
        cols["valence_true"].extend(a.va_true[idx, 0].tolist())
        cols["arousal_true"].extend(a.va_true[idx, 1].tolist())
        if has_categorical(target):
            cols["prob"].extend(prob[idx].astype(np.float32).tolist())
        else:
            cols["prob"].extend([[] for _ in idx])
        vv = va[idx] if has_dimensional(target) else np.full((len(idx), 2), np.nan)
        cols["valence"].extend(vv[:, 0].tolist())
        cols["arousal"].extend(vv[:, 1].tolist())
        cols["source"].extend(src[idx].tolist())
        cols["part"].extend(a.part[idx].tolist())
    table = pa.Table.from_pydict(cols, schema=FUSED_SCHEMA)
    blob = json.dumps(meta, sort_keys=True).encode("utf-8")
    return table.replace_schema_metadata({META_KEY: blob})


def run_fusion(
    config: dict[str, Any],
    fold: int,
    seed: int,
    predictions: dict[str, Path],
    folds_path: Path,
    out_path: Path,
    weights_path: Path,
) -> None:
    """Fuse the branch predictions (``{branch: predictions.parquet}``) of one (fold, seed);
    write fused test predictions and the fitted weights (JSON, sorted keys). Rerunning gives
    the same bytes."""
    preds = {b: read_branch_predictions(Path(predictions[b])) for b in ordered(predictions)}
    meta = _check_meta(preds, fold, seed)
    n_classes = len(meta["classes"]) if has_categorical(meta["target"]) else 0
    aligned = align(preds, n_classes)
    _check_parts(aligned, Path(folds_path), fold)
    target = meta["target"]
    results, info = fuse_arrays(aligned, fusion_methods(config), target, n_classes, seed)
    meta = {**meta, "fusion_problems": fit_problems(info)}
    write_table(Path(out_path), fused_table(aligned, results, target, meta), "zstd")
    test = aligned.part == "test"
    weights = {
        **meta,
        "methods": info,
        "n_val_both": int(((aligned.part == "val") & aligned.both).sum()),
        "n_test": int(test.sum()),
        "n_test_fallback": int((test & ~aligned.both).sum()),
    }
    write_text(Path(weights_path), json.dumps(weights, sort_keys=True, indent=2) + "\n")
