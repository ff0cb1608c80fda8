"""The fuse job of one (fold, seed): read the branches' predictions, check they belong
together, fit every method (:mod:`emoflow.fusion.methods`) on the fit clips (the inner folds'
out-of-fold predictions, or the fold's validation clips), apply it, and write the fused test
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
from emoflow.fusion.inputs import (
    Aligned,
    BranchPredictions,
    align,
    out_of_fold,
    read_branch_predictions,
    subset,
)
from emoflow.fusion.methods import fit_problems, fuse_arrays, fusion_methods
from emoflow.labels.units import lookup
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


def _fold_roles(folds_path: Path, fold: int) -> tuple[dict[str, str], dict[str, str]]:
    """``{clip: role}`` and ``{clip: speaker group}`` of one fold of folds.parquet."""
    folds = pq.read_table(folds_path, columns=["fold", "clip_id", "speaker", "role"]).to_pydict()
    role, group = {}, {}
    for f, c, s, r in zip(folds["fold"], folds["clip_id"], folds["speaker"], folds["role"],
                          strict=True):  # fmt: skip
        if int(f) == fold:
            role[c], group[c] = r, f"speaker:{s}" if s is not None else f"clip:{c}"
    return role, group


def _check_parts(a: Aligned, role: dict[str, str], fold: int) -> None:
    for clip, part in zip(a.clip_id, a.part, strict=True):
        if part not in ("train", "val", "test", "unlabelled"):
            raise EmoflowError(f"clip {clip!r}: unexpected part {part!r} in predictions")
        if lookup(role, clip) != part:
            raise EmoflowError(
                f"clip {clip!r}: predictions say {part!r}, folds say {lookup(role, clip)!r} "
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


def _fit_record(fit: Aligned, how: str, role: dict[str, str], group: dict[str, str]) -> dict:
    used = fit.clip_id[fit.both].tolist()
    return {
        "on": how,
        "n_clips": len(used),
        "n_speakers": len({lookup(group, c) for c in used}),
        "n_training_part": sum(r in ("train", "val") for r in role.values()),
    }


def fit_clips(
    aligned: Aligned, methods: list[str], inner: dict[str, list[Path]] | None, n_classes: int,
    role: dict[str, str], group: dict[str, str], fold: int,
) -> tuple[dict[str, Aligned], dict[str, dict[str, Any]]]:  # fmt: skip
    """What each method is fitted on, and a record of it per method.

    Without ``inner``: the fold's validation clips. With ``inner`` (``{branch:
    [predictions.parquet]}`` of the inner folds, which must hold out clips of the fold's
    training part only): late fusion and stacking on those out-of-fold predictions, and the
    feature MLP on the fold's own models' embeddings of its whole training part (train and
    validation clips), since another model's embeddings live in another space."""
    if inner is None:
        val = subset(aligned, aligned.part == "val")
        return {m: val for m in methods}, {m: _fit_record(val, "val", role, group)
                                           for m in methods}  # fmt: skip
    oof = out_of_fold(inner, n_classes)
    outside = sorted(c for c in oof.clip_id.tolist() if lookup(role, c) not in ("train", "val"))
    if outside:
        raise EmoflowError(
            f"fold {fold}: inner-fold predictions of clips outside its training part "
            f"({', '.join(outside[:5])}); rerun inner_split"
        )
    own = subset(aligned, np.isin(aligned.part, ["train", "val"]))
    fits = {m: own if m == "feature" else oof for m in methods}
    how = {m: "training part" if m == "feature" else "inner" for m in methods}
    return fits, {m: _fit_record(fits[m], how[m], role, group) for m in methods}


def run_fusion(
    config: dict[str, Any],
    fold: int,
    seed: int,
    predictions: dict[str, Path],
    folds_path: Path,
    out_path: Path,
    weights_path: Path,
    inner: dict[str, list[Path]] | None = None,
) -> None:
    """Fuse the branch predictions (``{branch: predictions.parquet}``) of one (fold, seed),
    fitted on the inner folds' predictions (``inner``: ``{branch: [predictions.parquet]}``)
    or, without them, on the fold's validation clips; write fused test predictions and the
    fitted weights (JSON, sorted keys). Rerunning gives the same bytes."""
    preds = {b: read_branch_predictions(Path(predictions[b])) for b in ordered(predictions)}
    meta = _check_meta(preds, fold, seed)
    n_classes = len(meta["classes"]) if has_categorical(meta["target"]) else 0
    aligned = align(preds, n_classes)
    role, group = _fold_roles(Path(folds_path), fold)
    _check_parts(aligned, role, fold)
    methods = fusion_methods(config) if len(preds) >= 2 else []  # a study's one-branch fold
    fits, fit_info = fit_clips(aligned, methods, inner, n_classes, role, group, fold)
    target = meta["target"]
    results, info = fuse_arrays(aligned, fits, methods, target, n_classes, seed)
    meta = {**meta, "fusion_problems": fit_problems(info), "fusion_fit": fit_info}
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
