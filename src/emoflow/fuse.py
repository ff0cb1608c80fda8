"""Fusion of the selected branches (two or more) for one (fold, seed).

Three methods, each fit on the **validation** clips of the fold that have every branch and
applied to its test clips (branches concatenated in :mod:`emoflow.branches` order):

- ``late``: a weighted average of the branches' class probabilities (and, with its own
  weights, of valence/arousal); the weights are grid-searched on the simplex in steps of 0.05
  (0.1 from five branches on) for the best validation UAR (categorical) or mean CCC of valence
  and arousal (dimensional); ties go to the weights closest to equal, then to the
  lexicographically smallest (with two branches: ``w * audio + (1 - w) * visual``, ties to the
  ``w`` closest to 0.5, then the smaller ``w``);
- ``stacking``: logistic regression on the concatenated branch probabilities (categorical) and
  ridge regression on the concatenated branch valence/arousal (dimensional), re-applied from
  the stored coefficients;
- ``feature``: a small MLP (:mod:`emoflow.models.fusion`) on the concatenated embeddings; the
  weights file stores its parameters so it can be re-applied.

A clip missing a modality gets the prediction of the branches it has, for every method (see
:func:`emoflow.fusion_apply.apply_fusion`); its ``source`` says which (``both``,
``audio_only``, ``visual_only``, ...). When a method cannot be fit (too few validation clips
or classes) it falls back to the equal-weight average and says so in the weights file. With a
single branch selected there is nothing to fuse: the fused file holds that branch's rows.

:func:`run_fusion` is the thin I/O wrapper; the ``fit_*`` functions are pure, and every method
is applied by :func:`emoflow.fusion_apply.apply_fusion`, the one function that ``emoflow
predict`` calls too.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from emoflow.atomic import atomic_path, write_text
from emoflow.branches import ordered, selected_branches
from emoflow.errors import EmoflowError
from emoflow.fusion_apply import apply_fusion, has_categorical, has_dimensional, weighted
from emoflow.fusion_inputs import (
    META_KEY,
    Aligned,
    BranchPredictions,
    align,
    read_branch_predictions,
)
from emoflow.metrics import ccc, known_classes, known_values, uar

METHODS = ("late", "stacking", "feature")

FUSED_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("method", pa.string()),
        ("y", pa.int32()),
        ("valence_true", pa.float32()),
        ("arousal_true", pa.float32()),
        ("prob", pa.list_(pa.float32())),
        ("valence", pa.float32()),
        ("arousal", pa.float32()),
        ("source", pa.string()),
        ("part", pa.string()),
    ]
)


# --------------------------------------------------------------------------- pure fusion core


def _score_categorical(prob: np.ndarray, y: np.ndarray) -> float:
    t, p = known_classes(y, np.argmax(prob, axis=1) if len(prob) else np.zeros(0))
    return uar(t, p) if t.size else float("nan")


def _score_dimensional(va: np.ndarray, va_true: np.ndarray) -> float:
    scores = []
    for d in range(2):
        t, p = known_values(va_true[:, d], va[:, d])
        if t.size >= 2:
            scores.append(ccc(t, p))
    return float(np.mean(scores)) if scores else float("nan")


def weight_grid(n: int) -> list[tuple[float, ...]]:
    """Every weight vector of ``n`` branches on the simplex, in steps of 1/20 (1/10 from
    five branches on), in lexicographic order."""
    steps = 20 if n <= 4 else 10

    def parts(left: int, k: int) -> list[tuple[int, ...]]:
        if k == 1:
            return [(left,)]
        return [(i, *rest) for i in range(left + 1) for rest in parts(left - i, k - 1)]

    return [tuple(round(i / steps, 4) for i in p) for p in parts(steps, n)]


def grid_search_weight(scores: dict[tuple[float, ...], float]) -> tuple[float, ...]:
    """The best weights of ``{weights: score}``: highest score (NaN lowest), then closest to
    equal weights (L1), then lexicographically smallest."""

    def key(w: tuple[float, ...]) -> tuple[float, float, tuple[float, ...]]:
        s = scores[w]
        s = -np.inf if np.isnan(s) else round(float(s), 12)
        return (-s, round(sum(abs(x - 1 / len(w)) for x in w), 6), w)

    return min(scores, key=key)


def fit_late(a: Aligned, fit_rows: np.ndarray, target: str) -> dict[str, Any]:
    """Grid-search the branch weights per output kind on ``fit_rows`` (every branch)."""
    names = a.branches
    grid = weight_grid(len(names))
    weights: dict[str, Any] = {"branches": names}
    if has_categorical(target):
        ps, y = [a.prob[b][fit_rows] for b in names], a.y[fit_rows]
        scores = {w: _score_categorical(weighted(ps, np.array(w)), y) for w in grid}
        weights["categorical"] = list(grid_search_weight(scores))
    if has_dimensional(target):
        vs, t = [a.va[b][fit_rows] for b in names], a.va_true[fit_rows]
        scores = {w: _score_dimensional(weighted(vs, np.array(w)), t) for w in grid}
        weights["dimensional"] = list(grid_search_weight(scores))
    return weights


def fit_stacking(a: Aligned, fit_rows: np.ndarray, target: str, seed: int) -> dict[str, Any]:
    """Logistic regression on branch probabilities / ridge on branch valence-arousal; the
    coefficients (what :func:`apply_fusion` needs)."""
    from sklearn.linear_model import LogisticRegression, Ridge

    info: dict[str, Any] = {"branches": a.branches}
    if has_categorical(target):
        x = np.hstack([a.prob[b] for b in a.branches])
        rows = fit_rows & (a.y >= 0)
        if np.unique(a.y[rows]).size >= 2:
            model = LogisticRegression(solver="lbfgs", max_iter=2000, random_state=seed)
            model.fit(x[rows], a.y[rows])
            info["categorical"] = {
                "fitted": True,
                "classes": [int(c) for c in model.classes_],
                "coef": model.coef_.tolist(),
                "intercept": model.intercept_.tolist(),
                "n_fit": int(rows.sum()),
            }
        else:
            info["categorical"] = {
                "fitted": False,
                "n_fit": int(rows.sum()),
                "reason": f"{np.unique(a.y[rows]).size} class(es) among {int(rows.sum())} "
                "validation clips with both modalities; logistic regression needs 2",
            }
    if has_dimensional(target):
        x = np.hstack([a.va[b] for b in a.branches])
        dims: dict[str, Any] = {}
        for d, name in enumerate(("valence", "arousal")):
            rows = fit_rows & ~np.isnan(a.va_true[:, d]) & ~np.isnan(x).any(axis=1)
            if rows.sum() >= 2:
                model = Ridge(alpha=1.0).fit(x[rows], a.va_true[rows, d])
                dims[name] = {
                    "fitted": True,
                    "coef": model.coef_.tolist(),
                    "intercept": float(model.intercept_),
                    "n_fit": int(rows.sum()),
                }
            else:
                dims[name] = {
                    "fitted": False,
                    "n_fit": int(rows.sum()),
                    "reason": f"{int(rows.sum())} validation clips with both modalities and "
                    f"{name}; ridge regression needs 2",
                }
        info["dimensional"] = dims
    return info


def fit_feature(
    a: Aligned, fit_rows: np.ndarray, target: str, n_classes: int, seed: int
) -> dict[str, Any]:
    """The feature-level MLP on the branches' concatenated embeddings, trained on
    ``fit_rows``: its constructor ``kwargs`` and ``state`` (see
    :func:`emoflow.models.fusion.fusion_mlp_to_json`) and ``state_sha256``."""
    from emoflow.models.fusion import fusion_mlp_to_json, state_hash, train_fusion_mlp

    x = np.hstack([a.embedding[b] for b in a.branches])
    if int(fit_rows.sum()) < 2 or x.shape[1] == 0:
        return {
            "branches": a.branches,
            "fitted": False,
            "n_fit": int(fit_rows.sum()),
            "reason": f"{int(fit_rows.sum())} validation clips with both modalities; "
            "the MLP needs 2",
        }
    model = train_fusion_mlp(
        x[fit_rows],
        a.y[fit_rows] if has_categorical(target) else np.full(int(fit_rows.sum()), -1),
        a.va_true[fit_rows],
        n_classes=n_classes,
        target=target,
        seed=seed,
    )
    return {
        "branches": a.branches,
        "fitted": True,
        "n_fit": int(fit_rows.sum()),
        "state_sha256": state_hash(model),
        **fusion_mlp_to_json(model),
    }


def fuse_arrays(
    a: Aligned, methods: list[str], target: str, n_classes: int, seed: int
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """Fit every method on the validation clips with every branch; apply it to every clip
    with :func:`apply_fusion`.

    Returns ``{method: (prob, va)}`` over all rows of ``a`` (fallback applied) and the
    fitted parameters of each method.
    """
    fit_rows = (a.part == "val") & a.both
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    info: dict[str, Any] = {}
    for method in methods:
        if method == "late":
            info["late"] = {**fit_late(a, fit_rows, target), "n_fit": int(fit_rows.sum())}
            if not fit_rows.any():
                info["late"]["reason"] = "no validation clip with every branch"
        elif method == "stacking":
            info["stacking"] = fit_stacking(a, fit_rows, target, seed)
        elif method == "feature":
            info["feature"] = fit_feature(a, fit_rows, target, n_classes, seed)
        else:
            raise EmoflowError(f"unknown fusion method {method!r}")
        results[method] = apply_fusion(
            method, info[method], target, a.prob, a.va, a.has, a.embedding
        )
    return results, info


def fusion_methods(config: dict[str, Any]) -> list[str]:
    """The configured fusion methods in :data:`METHODS` order; none with fewer than two
    selected branches."""
    if len(selected_branches(config)) < 2:
        return []
    return [m for m in METHODS if m in config.get("fusion", {}).get("methods", list(METHODS))]


def fit_problems(info: dict[str, Any]) -> dict[str, str]:
    """``{method: reason}`` for every method (or part of one) that could not be fitted and so
    falls back to the equal-weight average; empty when all were fitted."""
    problems: dict[str, str] = {}
    for method, params in sorted(info.items()):
        parts = [params, *(v for v in params.values() if isinstance(v, dict))]
        parts += [d for v in params.values() if isinstance(v, dict) for d in v.values()
                  if isinstance(d, dict)]  # fmt: skip
        reasons = sorted({p["reason"] for p in parts if isinstance(p, dict) and "reason" in p})
        if reasons:
            problems[method] = "; ".join(reasons)
    return problems


# --------------------------------------------------------------------------- I/O wrapper


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


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` atomically with fixed writer options (same bytes for the same table)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", write_statistics=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


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
    write_parquet(fused_table(aligned, results, target, meta), Path(out_path))
    test = aligned.part == "test"
    weights = {
        **meta,
        "methods": info,
        "n_val_both": int(((aligned.part == "val") & aligned.both).sum()),
        "n_test": int(test.sum()),
        "n_test_fallback": int((test & ~aligned.both).sum()),
    }
    write_text(Path(weights_path), json.dumps(weights, sort_keys=True, indent=2) + "\n")
