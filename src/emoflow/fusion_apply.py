"""Applying a fitted fusion: the one function both ``fuse`` and ``emoflow predict`` call.

Pure numpy on per-row branch outputs; the parameters are what :mod:`emoflow.fuse` fitted and
stored (late weights, stacking coefficients, the feature MLP's JSON).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emoflow.errors import EmoflowError, SpecMismatchError

BRANCHES = ("audio", "visual")


def has_categorical(target: str) -> bool:
    """Whether ``target`` includes class probabilities."""
    return target in ("categorical", "both")


def has_dimensional(target: str) -> bool:
    """Whether ``target`` includes valence/arousal."""
    return target in ("dimensional", "both")


def apply_stacking_categorical(info: dict[str, Any], x: np.ndarray, n_classes: int) -> np.ndarray:
    """The fitted logistic regression (``coef``/``intercept``/``classes``) on ``x`` =
    concatenated audio and visual probabilities: what ``predict_proba`` gives."""
    coef = np.asarray(info["coef"], dtype=np.float64)
    intercept = np.asarray(info["intercept"], dtype=np.float64)
    classes = [int(c) for c in info["classes"]]
    scores = x @ coef.T + intercept
    if len(classes) == 2 and coef.shape[0] == 1:
        p1 = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        fitted = np.stack([1.0 - p1, p1], axis=1)
    else:
        fitted = softmax(scores)
    prob = np.zeros((len(x), n_classes))
    prob[:, classes] = fitted
    return prob


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    x = np.asarray(x, dtype=np.float64)
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _apply_both(
    method: str, params: dict[str, Any], target: str, prob: dict[str, np.ndarray],
    va: dict[str, np.ndarray], both: np.ndarray, embedding: dict[str, np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The fused outputs of every row as if it had both branches (only ``both`` rows are used)."""
    pa_, pv, vaa, vav = prob["audio"], prob["visual"], va["audio"], va["visual"]
    if method == "late":
        w_c, w_d = params.get("categorical", 0.5), params.get("dimensional", 0.5)
        return w_c * pa_ + (1 - w_c) * pv, w_d * vaa + (1 - w_d) * vav
    fused_p, fused_va = 0.5 * pa_ + 0.5 * pv, 0.5 * vaa + 0.5 * vav  # a method not fitted
    if method == "stacking":
        cat = params.get("categorical") or {}
        if has_categorical(target) and cat.get("fitted"):
            fused_p = apply_stacking_categorical(cat, np.hstack([pa_, pv]), pa_.shape[1])
        x = np.nan_to_num(np.hstack([vaa, vav]), nan=0.0)
        for d, name in enumerate(("valence", "arousal")):
            ridge = (params.get("dimensional") or {}).get(name) or {}
            if has_dimensional(target) and ridge.get("fitted"):
                fused_va[:, d] = x @ np.asarray(ridge["coef"]) + float(ridge["intercept"])
    elif method == "feature":
        if params.get("fitted") and both.any():
            out = _apply_feature_mlp(params, embedding or {}, both)
            if "prob" in out:
                fused_p[both] = out["prob"]
            if "va" in out:
                fused_va[both] = out["va"]
    else:
        raise EmoflowError(f"unknown fusion method {method!r}")
    return fused_p, fused_va


def _apply_feature_mlp(
    params: dict[str, Any], embedding: dict[str, np.ndarray], rows: np.ndarray
) -> dict[str, np.ndarray]:
    from emoflow.models.fusion import fusion_mlp_from_json, predict_fusion_mlp

    if "audio" not in embedding or "visual" not in embedding:
        raise EmoflowError("feature fusion needs the embeddings of both branches")
    try:
        model = fusion_mlp_from_json(params)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise SpecMismatchError(f"the stored feature fusion MLP is broken: {exc}") from exc
    x = np.hstack([embedding["audio"][rows], embedding["visual"][rows]])
    if x.shape[1] != model.in_dim:
        raise SpecMismatchError(
            f"the fusion MLP expects {model.in_dim} embedding values, the branch models give "
            f"{x.shape[1]}"
        )
    return {k: v.astype(np.float64) for k, v in predict_fusion_mlp(model, x).items()}


def apply_fusion(
    method: str,
    params: dict[str, Any],
    target: str,
    prob: dict[str, np.ndarray],
    va: dict[str, np.ndarray],
    has: dict[str, np.ndarray],
    embedding: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a fitted fusion (``params`` as :func:`fuse_arrays` stores them) to per-row branch
    outputs; rows missing a branch take the other's, rows with neither are NaN.

    ``prob[b]`` (N, C), ``va[b]`` (N, 2), ``has[b]`` (N,) bool, ``embedding[b]`` (N, E_b) for
    the ``feature`` method. With a single branch (``method="none"``) its outputs pass through.
    The workflow's ``fuse`` and ``emoflow predict`` both call this function.
    """
    names = [b for b in BRANCHES if b in prob]
    n = len(has[names[0]])
    c = prob[names[0]].shape[1]
    out_p, out_va = np.full((n, c), np.nan), np.full((n, 2), np.nan)
    if len(names) == 2:
        both = has["audio"] & has["visual"]
        fused_p, fused_va = _apply_both(method, params, target, prob, va, both, embedding)
        out_p[both], out_va[both] = fused_p[both], fused_va[both]
    for b in names:
        others = [has[o] for o in names if o != b]
        only = has[b] & ~np.any(others, axis=0) if others else has[b]
        out_p[only], out_va[only] = prob[b][only], va[b][only]
    return out_p, out_va
