"""Evaluation metrics: pure numpy functions on arrays.

Categorical metrics take integer class indices (``y_true``, ``y_pred``); rows with an unknown
true class (``y_true < 0``) must be dropped by the caller (see :func:`known_classes`).
Dimensional metrics take float arrays; drop NaN targets first (see :func:`known_values`).

Edge cases, decided once here:

- precision of a class that is never predicted is 0 (not NaN); recall of a class that never
  occurs is 0; F1 is 0 when precision + recall is 0 (scikit-learn's ``zero_division=0``);
- UAR is the mean recall over the classes that occur in ``y_true`` (scikit-learn's
  ``balanced_accuracy_score``); macro-F1 is the mean F1 over the classes that occur in
  ``y_true`` or ``y_pred`` (scikit-learn's ``f1_score(average="macro")``);
- CCC uses population moments. When both vectors are constant and equal (denominator 0) the
  agreement is perfect and CCC is 1; a constant prediction of a varying target gives 0;
- Pearson r is 0 when either vector is constant (the correlation is undefined);
- every metric of an empty array is NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

ArrayLike = np.ndarray | Sequence[float] | Sequence[int]


def known_classes(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Drop rows whose true class is unknown (``< 0``); return int64 arrays."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    keep = t >= 0
    return t[keep], p[keep]


def known_values(true: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Drop rows whose true or predicted value is NaN; return float64 arrays."""
    t = np.asarray(true, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    keep = ~(np.isnan(t) | np.isnan(p))
    return t[keep], p[keep]


# --------------------------------------------------------------------------- categorical


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` int64 counts; rows are true classes, columns predictions."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {t.shape} vs {p.shape}")
    if t.size and (t.min() < 0 or p.min() < 0 or t.max() >= n_classes or p.max() >= n_classes):
        raise ValueError(f"class indices must lie in [0, {n_classes})")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of rows where the prediction equals the true class."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.size == 0:
        return float("nan")
    return float(np.mean(t == p))


def _n_classes(*arrays: np.ndarray) -> int:
    return int(max((int(a.max()) for a in arrays if a.size), default=-1)) + 1


def per_class_prf(
    y_true: ArrayLike, y_pred: ArrayLike, n_classes: int | None = None
) -> dict[str, np.ndarray]:
    """Per-class ``precision``, ``recall``, ``f1`` (float64) and ``support`` (int64).

    A class never predicted has precision 0; a class that never occurs has recall 0.
    """
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    k = _n_classes(t, p) if n_classes is None else n_classes
    cm = confusion_matrix(t, p, k)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support.astype(np.float64), out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def uar(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Unweighted average recall: mean recall over the classes present in ``y_true``."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.size == 0:
        return float("nan")
    prf = per_class_prf(t, p)
    return float(np.mean(prf["recall"][prf["support"] > 0]))


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean F1 over the classes present in ``y_true`` or ``y_pred``."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.size == 0:
        return float("nan")
    prf = per_class_prf(t, p)
    k = len(prf["f1"])
    present = np.zeros(k, dtype=bool)
    present[np.unique(t)] = True
    present[np.unique(p)] = True
    return float(np.mean(prf["f1"][present]))


# --------------------------------------------------------------------------- dimensional


def ccc(true: ArrayLike, pred: ArrayLike) -> float:
    """Concordance correlation coefficient (population moments).

    1 for identical vectors (also when both are the same constant), -1 for ``pred = -true``
    around a zero mean, 0 for a constant prediction of a varying target.
    """
    t = np.asarray(true, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if t.size == 0:
        return float("nan")
    mt, mp = t.mean(), p.mean()
    vt, vp = t.var(), p.var()
    cov = np.mean((t - mt) * (p - mp))
    denom = vt + vp + (mt - mp) ** 2
    if denom <= 0.0:
        return 1.0
    return float(2.0 * cov / denom)


def pearson_r(true: ArrayLike, pred: ArrayLike) -> float:
    """Pearson correlation; 0 when either vector is constant (undefined correlation)."""
    t = np.asarray(true, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if t.size == 0:
        return float("nan")
    dt = t - t.mean()
    dp = p - p.mean()
    denom = np.sqrt(np.sum(dt * dt) * np.sum(dp * dp))
    if denom <= 0.0:
        return 0.0
    return float(np.clip(np.sum(dt * dp) / denom, -1.0, 1.0))


def mae(true: ArrayLike, pred: ArrayLike) -> float:
    """Mean absolute error."""
    t = np.asarray(true, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if t.size == 0:
        return float("nan")
    return float(np.mean(np.abs(t - p)))


# --------------------------------------------------------------------------- aggregation


def bootstrap_ci(
    metric_fn: Callable[..., float],
    *arrays: ArrayLike,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric_fn(*arrays)``; deterministic for a seed.

    Rows (the first axis, shared by all ``arrays``) are resampled with replacement ``n`` times
    with ``numpy.random.default_rng(seed)``; resamples whose metric is NaN are ignored.
    Returns ``(nan, nan)`` for empty input or ``n == 0``.
    """
    arrs = [np.asarray(a) for a in arrays]
    if not arrs:
        raise ValueError("bootstrap_ci needs at least one array")
    size = len(arrs[0])
    if any(len(a) != size for a in arrs):
        raise ValueError("all arrays must have the same length")
    if size == 0 or n <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, size, size=(n, size))
    stats = np.array([metric_fn(*(a[i] for a in arrs)) for i in idx], dtype=np.float64)
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(stats, [tail, 100.0 - tail])
    return float(lo), float(hi)


def mean_std(values: ArrayLike) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value), ignoring NaN."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    std = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return float(np.mean(v)), std


def format_number(x: float, digits: int = 3) -> str:
    """Fixed-point text with ``digits`` decimals; ``-`` for NaN; never ``-0.000``."""
    if x is None or np.isnan(x):
        return "-"
    text = f"{x:.{digits}f}"
    if text.startswith("-") and float(text) == 0.0:
        text = text[1:]
    return text


def format_mean_std(values: ArrayLike, digits: int = 3, sep: str = " ± ") -> str:
    """``"mean ± std"`` of ``values`` in fixed-point notation (see :func:`mean_std`)."""
    m, s = mean_std(values)
    if np.isnan(m):
        return "-"
    return f"{format_number(m, digits)}{sep}{format_number(s, digits)}"
