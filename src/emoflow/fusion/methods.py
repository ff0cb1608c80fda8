"""Fusion of the selected branches (two or more) for one (fold, seed).

Three methods, each fitted on the fold's **fit clips** that have every branch and applied to its
test clips (branches concatenated in :mod:`emoflow.branches` order). The fit clips
(``fusion.fit_on``) are ``inner`` (default): out-of-fold predictions of every clip of the outer
fold's training part, from branches retrained on inner speaker-independent folds (first seed;
:func:`emoflow.protocols.folds.inner_folds`) for late fusion and stacking, and the fold's own
models' embeddings of that training part for the feature MLP (embeddings of other models live in
other spaces); or ``val``: the outer fold's validation clips, predicted by the fold's own models
(:func:`emoflow.fusion.run.fit_clips`).

- ``late``: a weighted average of the branches' class probabilities (and, with its own
  weights, of valence/arousal); the weights are grid-searched on the simplex in steps of 0.05
  (0.1 from five branches on) for the best UAR (categorical) or mean CCC of valence and arousal
  (dimensional) on the fit clips; ties go to the weights closest to the best single branch,
  then to the lexicographically smallest (:func:`grid_search_weight`);
- ``stacking``: logistic regression on the concatenated branch probabilities (categorical) and
  ridge regression on the concatenated branch valence/arousal (dimensional), re-applied from
  the stored coefficients;
- ``feature``: a small MLP (:mod:`emoflow.models.fusion`) on the concatenated embeddings; the
  weights file stores its parameters so it can be re-applied.

A clip missing a modality gets the prediction of the branches it has, for every method (see
:func:`emoflow.fusion.apply.apply_fusion`); its ``source`` says which (``both``,
``audio_only``, ``visual_only``, ...). When a method cannot be fit (too few fit clips or
classes) it falls back to the equal-weight average and says so in the weights file. With a
single branch selected there is nothing to fuse: the fused file holds that branch's rows.

:func:`emoflow.fusion.run.run_fusion` is the thin I/O wrapper; the ``fit_*`` functions are
pure, and every method is applied by :func:`emoflow.fusion.apply.apply_fusion`, the one
function that ``emoflow predict`` calls too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from emoflow.branches import selected_branches
from emoflow.errors import EmoflowError
from emoflow.evaluation.metrics import ccc, known_classes, known_values, uar
from emoflow.fusion.apply import apply_fusion, has_categorical, has_dimensional, weighted
from emoflow.fusion.inputs import Aligned

METHODS = ("late", "stacking", "feature")


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
    """The best weights of ``{weights: score}``: highest score (NaN lowest), then closest (L1)
    to the best single branch (the one-hot weights that score highest, the first branch on a
    tie), then lexicographically smallest. A tie never moves the fusion away from the branch
    that does best alone, so an already perfect branch is kept rather than diluted."""

    def score(w: tuple[float, ...]) -> float:
        s = scores[w]
        return -np.inf if np.isnan(s) else round(float(s), 12)

    n = len(next(iter(scores)))
    singles = [w for w in scores if max(w) == 1.0] or [tuple(1.0 / n for _ in range(n))]
    best = min(singles, key=lambda w: (-score(w), w.index(max(w))))

    def key(w: tuple[float, ...]) -> tuple[float, float, tuple[float, ...]]:
        return (-score(w), round(sum(abs(x - b) for x, b in zip(w, best, strict=True)), 6), w)

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
                "fit clips with every modality; logistic regression needs 2",
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
                    "reason": f"{int(rows.sum())} fit clips with every modality and "
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
            "reason": f"{int(fit_rows.sum())} fit clips with every modality; the MLP needs 2",
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
    a: Aligned, fits: dict[str, Aligned], methods: list[str], target: str, n_classes: int,
    seed: int,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Any]]:  # fmt: skip
    """Fit every method on the clips of its ``fits[method]`` that have every branch; apply it
    to every clip of ``a`` with :func:`apply_fusion`.

    Returns ``{method: (prob, va)}`` over all rows of ``a`` (fallback applied) and the
    fitted parameters of each method.
    """
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    info: dict[str, Any] = {}
    with threadpool_limits(limits=1):  # BLAS sums in one order, whatever OMP_NUM_THREADS says
        for method in methods:
            fit = fits[method]
            fit_rows = fit.both
            if method == "late":
                info["late"] = {**fit_late(fit, fit_rows, target), "n_fit": int(fit_rows.sum())}
                if not fit_rows.any():
                    info["late"]["reason"] = "no fit clip with every branch"
            elif method == "stacking":
                info["stacking"] = fit_stacking(fit, fit_rows, target, seed)
            elif method == "feature":
                info["feature"] = fit_feature(fit, fit_rows, target, n_classes, seed)
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
