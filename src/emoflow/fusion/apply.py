"""Applying a fitted fusion: the one function both ``fuse`` and ``emoflow predict`` call.

Pure numpy on per-row branch outputs; the parameters are what :mod:`emoflow.fusion.run` fitted and
stored (late weights, stacking coefficients, the feature MLP's JSON).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emoflow.branches import ordered
from emoflow.errors import EmoflowError, SpecMismatchError


def has_categorical(target: str) -> bool:
    """Whether ``target`` includes class probabilities."""
    return target in ("categorical", "both")


def has_dimensional(target: str) -> bool:
    """Whether ``target`` includes valence/arousal."""
    return target in ("dimensional", "both")


def apply_stacking_categorical(info: dict[str, Any], x: np.ndarray, n_classes: int) -> np.ndarray:
    """The fitted logistic regression (``coef``/``intercept``/``classes``) on ``x`` = the
    branches' probabilities concatenated in branch order: what ``predict_proba`` gives."""
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


def late_weights(params: dict[str, Any], kind: str, names: list[str]) -> np.ndarray:
    """The late-fusion weights of ``kind`` (``categorical``/``dimensional``) over ``names``:
    the fitted list, a stored single float (the first of two branches' weight), or equal."""
    w = params.get(kind)
    if w is None:
        return np.full(len(names), 1.0 / len(names))
    if isinstance(w, int | float):
        w = [float(w), 1.0 - float(w)]
    if len(w) != len(names):
        raise SpecMismatchError(f"late fusion has {len(w)} weights for {len(names)} branches")
    return np.asarray(w, dtype=np.float64)


def weighted(parts: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    """``sum_i w_i * parts[i]`` (parts of one shape)."""
    return sum((wi * p for wi, p in zip(w, parts, strict=True)), np.zeros_like(parts[0]))


def _apply_complete(
    method: str, params: dict[str, Any], target: str, names: list[str],
    prob: dict[str, np.ndarray], va: dict[str, np.ndarray], rows: np.ndarray,
    embedding: dict[str, np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The fused outputs of every row as if it had every branch in ``names`` (only ``rows``
    are used)."""
    ps, vs = [prob[b] for b in names], [va[b] for b in names]
    if method == "late":
        w_c, w_d = (late_weights(params, k, names) for k in ("categorical", "dimensional"))
        return weighted(ps, w_c), weighted(vs, w_d)
    equal = np.full(len(names), 1.0 / len(names))
    fused_p, fused_va = weighted(ps, equal), weighted(vs, equal)  # a method not fitted
    if method == "stacking":
        cat = params.get("categorical") or {}
        if has_categorical(target) and cat.get("fitted"):
            fused_p = apply_stacking_categorical(cat, np.hstack(ps), ps[0].shape[1])
        x = np.nan_to_num(np.hstack(vs), nan=0.0)
        for d, name in enumerate(("valence", "arousal")):
            ridge = (params.get("dimensional") or {}).get(name) or {}
            if has_dimensional(target) and ridge.get("fitted"):
                fused_va[:, d] = x @ np.asarray(ridge["coef"]) + float(ridge["intercept"])
    elif method == "feature":
        if params.get("fitted") and rows.any():
            out = _apply_feature_mlp(params, embedding or {}, rows, names)
            if "prob" in out:
                fused_p[rows] = out["prob"]
            if "va" in out:
                fused_va[rows] = out["va"]
    else:
        raise EmoflowError(f"unknown fusion method {method!r}")
    return fused_p, fused_va


def _apply_feature_mlp(
    params: dict[str, Any], embedding: dict[str, np.ndarray], rows: np.ndarray, names: list[str]
) -> dict[str, np.ndarray]:
    from emoflow.models.fusion import fusion_mlp_from_json, predict_fusion_mlp

    if any(b not in embedding for b in names):
        raise EmoflowError(f"feature fusion needs the embeddings of {', '.join(names)}")
    try:
        model = fusion_mlp_from_json(params)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise SpecMismatchError(f"the stored feature fusion MLP is broken: {exc}") from exc
    x = np.hstack([embedding[b][rows] for b in names])
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
    """Apply a fitted fusion (``params`` as :func:`emoflow.fusion.run.fuse_arrays` stores them) to
    per-row branch outputs.

    ``prob[b]`` (N, C), ``va[b]`` (N, 2), ``has[b]`` (N,) bool, ``embedding[b]`` (N, E_b) for
    the ``feature`` method. Rows with every branch the fusion was fitted on (``params
    ["branches"]``, else the branches given) get the method; rows with some of them get the
    late weights of the branches they have, renormalised (equal weights for the other
    methods); rows with one branch take its outputs; rows with none are NaN. With a single
    branch (``method="none"``) its outputs pass through. The workflow's ``fuse`` and ``emoflow
    predict`` both call this function.
    """
    names = ordered(params.get("branches") or prob) if method != "none" else ordered(prob)
    given = ordered(prob)
    n = len(has[given[0]])
    c = prob[given[0]].shape[1]
    out_p, out_va = np.full((n, c), np.nan), np.full((n, 2), np.nan)
    present = np.stack([has[b] if b in has else np.zeros(n, bool) for b in names], axis=1)
    complete = present.all(axis=1) if len(names) >= 2 else np.zeros(n, bool)
    if complete.any():
        fused_p, fused_va = _apply_complete(
            method, params, target, names, prob, va, complete, embedding
        )
        out_p[complete], out_va[complete] = fused_p[complete], fused_va[complete]
    partial = ~complete & (present.sum(axis=1) >= 2)
    for key in sorted({tuple(r) for r in present[partial].tolist()}):
        rows = partial & (present == np.array(key)).all(axis=1)
        sub = [b for b, k in zip(names, key, strict=True) if k]
        idx = [names.index(b) for b in sub]
        w_c, w_d = (late_weights(params if method == "late" else {}, k, names)[idx]
                    for k in ("categorical", "dimensional"))  # fmt: skip
        out_p[rows] = weighted([prob[b][rows] for b in sub], w_c / w_c.sum())
        out_va[rows] = weighted([va[b][rows] for b in sub], w_d / w_d.sum())
    for b in given:
        others = [has[o] for o in given if o != b]
        only = has[b] & ~np.any(others, axis=0) if others else has[b]
        out_p[only], out_va[only] = prob[b][only], va[b][only]
    return out_p, out_va
