"""Cluster (speaker-level) bootstrap: resample whole clusters, never single clips of one.

Clips of one speaker are not independent (same voice, same face, same recording session), so
the bootstrap draws speakers with replacement and takes all of a drawn speaker's clips; a clip
without a speaker is its own cluster. Every statistic computed from one set of draws is paired:
two methods scored on the same draw give a paired difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np


def cluster_members(clusters: np.ndarray) -> list[np.ndarray]:
    """Row indices of each cluster, clusters in sorted order."""
    labels = np.asarray(clusters).astype(str)
    names, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(names)))[:-1]
    return np.split(order, bounds)


def cluster_draws(clusters: np.ndarray, n: int, seed: int) -> Iterator[np.ndarray]:
    """``n`` bootstrap resamples of rows: each draws as many clusters as there are, with
    replacement (``numpy.random.default_rng(seed)``), and yields the rows of the drawn
    clusters."""
    members = cluster_members(clusters)
    if not members or n <= 0:
        return
    rng = np.random.default_rng(seed)
    for _ in range(n):
        picked = rng.integers(0, len(members), size=len(members))
        yield np.concatenate([members[g] for g in picked])


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the finite ``values`` (``(nan, nan)`` when there are none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(v, [tail, 100.0 - tail])
    return float(lo), float(hi)


def cluster_bootstrap(
    statistic: Callable[[np.ndarray], dict[str, float]],
    clusters: np.ndarray,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every value ``statistic(rows)`` returns, over ``n`` cluster
    resamples (rows: an index array into the arrays ``statistic`` closes over)."""
    samples: dict[str, list[float]] = {}
    for rows in cluster_draws(clusters, n, seed):
        for name, value in statistic(rows).items():
            samples.setdefault(name, []).append(value)
    return {name: percentile_interval(np.asarray(v), level) for name, v in samples.items()}
