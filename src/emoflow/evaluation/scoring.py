"""Scoring the fused test predictions: one clip set for every row, intervals, differences.

1. Each method's predictions are averaged over seeds per (fold, clip) (class probabilities and
   valence/arousal), so a clip counts once however many seeds ran.
2. Every row is scored on the **common clips**: the test (fold, clip) pairs that every method
   in the table has a prediction for. A method's ``missing`` counts the test clips it lacks.
3. Point estimates pool the common clips of all folds. Intervals: percentile bootstrap over speakers
   (:mod:`emoflow.evaluation.bootstrap`; clip level for clips without a speaker), on the same
   resamples for every method, so each fusion's difference to the best single branch is paired.
4. OMG-Emotion's challenge aggregation (``omg=True``): CCC over each video's utterances, averaged
   over videos; a video with fewer than two utterances has no CCC and is left out (the
   challenge's script would get NaN from ``pearsonr`` there and a NaN mean).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emoflow.branches import ALL_BRANCHES
from emoflow.evaluation.bootstrap import cluster_bootstrap
from emoflow.evaluation.frame_scoring import FRAMES, VIDEO_METRICS, FrameStats, score_frames
from emoflow.evaluation.metrics import (
    accuracy,
    ccc,
    known_classes,
    known_values,
    macro_f1,
    mae,
    mean_std,
    pearson_r,
    uar,
)
from emoflow.fusion.apply import has_categorical, has_dimensional

BRANCH_METHODS = ALL_BRANCHES
CAT_METRICS = ("accuracy", "uar", "macro_f1")
DIM_METRICS = ("arousal_ccc", "valence_ccc", "pearson_r", "mae")
OMG_METRICS = ("omg_arousal_ccc", "omg_valence_ccc")


@dataclass
class ClipPredictions:
    """One method's seed-averaged predictions, one row per (fold, clip)."""

    keys: list[tuple[int, str]]
    y: np.ndarray
    va_true: np.ndarray
    prob: np.ndarray
    va: np.ndarray

    def take(self, idx: np.ndarray) -> ClipPredictions:
        """The rows ``idx``, in that order."""
        keys = [self.keys[i] for i in idx]
        return ClipPredictions(keys, self.y[idx], self.va_true[idx], self.prob[idx], self.va[idx])


@dataclass
class MethodScores:
    """A table row: point estimates, intervals and the paired difference to the best branch."""

    method: str
    n: int
    missing: int
    point: dict[str, float] = field(default_factory=dict)
    interval: dict[str, tuple[float, float]] = field(default_factory=dict)
    seed_std: dict[str, float] = field(default_factory=dict)
    delta: tuple[float, float, float] | None = None  # (difference, low, high)


def metric_names(target: str, omg: bool | str = False) -> list[str]:
    """The table's metrics for ``target`` in column order. ``omg``: the scheme, True for
    OMG-Emotion's per-video aggregation, ``"frames"`` for time-continuous clips."""
    names = list(CAT_METRICS) if has_categorical(target) else []
    if has_dimensional(target):
        extra = list(VIDEO_METRICS) if omg == FRAMES else list(OMG_METRICS) if omg else []
        names += list(DIM_METRICS) + extra
    return names


def primary_metric(target: str) -> str:
    """The metric fusion is compared on: UAR (categorical, both) or mean CCC (dimensional)."""
    return "uar" if has_categorical(target) else "mean_ccc"


def average_seeds(
    keys: list[tuple[int, str]], y: np.ndarray, va_true: np.ndarray, prob: np.ndarray,
    va: np.ndarray,
) -> ClipPredictions:  # fmt: skip
    """Average rows that share a (fold, clip) key; output sorted by key."""
    unique = sorted(set(keys))
    pos = {k: i for i, k in enumerate(unique)}
    idx = np.array([pos[k] for k in keys], dtype=np.int64)
    count = np.bincount(idx, minlength=len(unique)).astype(np.float64)[:, None]

    def mean(a: np.ndarray) -> np.ndarray:
        out = np.zeros((len(unique), a.shape[1]))
        np.add.at(out, idx, a)
        return out / np.maximum(count, 1)

    first = np.zeros(len(unique), dtype=np.int64)
    first[idx[::-1]] = np.arange(len(keys))[::-1]
    return ClipPredictions(unique, y[first], va_true[first], mean(prob), mean(va))


def score(
    p: ClipPredictions | FrameStats, rows: np.ndarray, target: str, speakers: np.ndarray | None
) -> dict:
    """Every metric of ``p`` restricted to ``rows`` (OMG per-video CCC when ``speakers``;
    frame-level metrics for the :class:`FrameStats` of time-continuous clips)."""
    if isinstance(p, FrameStats):
        return score_frames(p, rows, has_categorical(target), has_dimensional(target))
    out: dict[str, float] = {}
    if has_categorical(target):
        t, pred = known_classes(p.y[rows], np.argmax(p.prob[rows], axis=1))
        out.update(accuracy=accuracy(t, pred), uar=uar(t, pred), macro_f1=macro_f1(t, pred))
    if has_dimensional(target):
        r, err = [], []
        for d, name in ((1, "arousal"), (0, "valence")):
            t, pred = known_values(p.va_true[rows, d], p.va[rows, d])
            out[f"{name}_ccc"] = ccc(t, pred) if t.size >= 2 else float("nan")
            if t.size >= 2:
                r.append(pearson_r(t, pred))
                err.append(mae(t, pred))
        out["pearson_r"] = float(np.mean(r)) if r else float("nan")
        out["mae"] = float(np.mean(err)) if err else float("nan")
        out["mean_ccc"] = float(np.mean([out["arousal_ccc"], out["valence_ccc"]]))
        if speakers is not None:
            out.update(per_video_ccc(p, rows, speakers[rows]))
    return out


def per_video_ccc(p: ClipPredictions, rows: np.ndarray, videos: np.ndarray) -> dict[str, float]:
    """OMG-Emotion's aggregation: CCC per video over its utterances, mean over the videos
    with at least two utterances (as ``calculateEvaluationCCC.py`` of the challenge)."""
    out = {}
    for d, name in ((1, "omg_arousal_ccc"), (0, "omg_valence_ccc")):
        values = []
        for video in sorted(set(videos.tolist())):
            sel = rows[videos == video]
            t, pred = known_values(p.va_true[sel, d], p.va[sel, d])
            if t.size >= 2:
                values.append(ccc(t, pred))
        out[name] = float(np.mean(values)) if values else float("nan")
    return out


def restrict(p: Any, keys: list[tuple[int, str]]) -> Any:
    """``p`` (:class:`ClipPredictions` or :class:`FrameStats`) on ``keys`` (all of which ``p``
    has), in that order."""
    pos = {k: i for i, k in enumerate(p.keys)}
    return p.take(np.array([pos[k] for k in keys], dtype=np.int64))


@dataclass
class Evaluation:
    """The scored table: rows in order, the common clips and what was resampled."""

    rows: list[MethodScores]
    common: list[tuple[int, str]]
    best_branch: str | None
    clusters: str  # "speaker" | "clip" | "speaker (clips without one: their own)"
    n_clusters: int
    n_seeds: int = 1  # the most seeds any row was trained with


def evaluate_methods(
    per_method: dict[str, ClipPredictions],
    per_seed: dict[str, list[ClipPredictions]],
    speaker_of: dict[str, str | None],
    target: str,
    n_boot: int = 1000,
    boot_seed: int = 0,
    omg: bool | str = False,
) -> Evaluation:
    """Score every method (``per_method`` in table order) on the common clips."""
    common = sorted(set.intersection(*(set(p.keys) for p in per_method.values())))
    universe = set().union(*(set(p.keys) for p in per_method.values()))
    spk = [speaker_of.get(c) for _, c in common]
    clusters = np.array(
        [s if s else f"clip:{f}:{c}" for s, (f, c) in zip(spk, common, strict=True)]
    )
    videos = None  # OMG-Emotion's per-video aggregation groups clips by video (speaker)
    if omg is True:
        videos = np.array([s or c for s, (_, c) in zip(spk, common, strict=True)])
    on_common = {m: restrict(p, common) for m, p in per_method.items()}
    every = np.arange(len(common))
    rows = [
        MethodScores(m, len(common), len(universe) - len(per_method[m].keys),
                     point=score(p, every, target, videos))
        for m, p in on_common.items()
    ]  # fmt: skip
    primary = primary_metric(target)
    branches = [r for r in rows if r.method in BRANCH_METHODS and np.isfinite(r.point[primary])]
    best = max(branches, key=lambda r: r.point[primary]).method if branches else None

    def statistic(sample: np.ndarray) -> dict[str, float]:
        values: dict[str, float] = {}
        scored = {m: score(p, sample, target, videos) for m, p in on_common.items()}
        for m, s in scored.items():
            values.update({f"{m}/{k}": v for k, v in s.items()})
            if best is not None and m not in BRANCH_METHODS:
                values[f"{m}/delta"] = s[primary] - scored[best][primary]
        return values

    intervals = cluster_bootstrap(statistic, clusters, n_boot, boot_seed) if common else {}
    nan2 = (float("nan"), float("nan"))
    for r in rows:
        r.interval = {k: intervals.get(f"{r.method}/{k}", nan2) for k in r.point}
        if best is not None and r.method not in BRANCH_METHODS:
            lo, hi = intervals.get(f"{r.method}/delta", nan2)
            r.delta = (r.point[primary] - _point(rows, best, primary), lo, hi)
        r.seed_std = _seed_std(per_seed.get(r.method, []), common, target, videos)
    has_spk = [bool(s) for s in spk]
    kind = "speaker" if all(has_spk) else "clip" if not any(has_spk) else "mixed"
    n_seeds = max((len(v) for v in per_seed.values()), default=1)
    return Evaluation(rows, common, best, kind, len(set(clusters.tolist())), n_seeds)


def _point(rows: list[MethodScores], method: str, metric: str) -> float:
    return next(r.point[metric] for r in rows if r.method == method)


def _seed_std(
    seeds: list[ClipPredictions], common: list[tuple[int, str]], target: str,
    videos: np.ndarray | None,
) -> dict[str, float]:  # fmt: skip
    """Sample std over seeds of each metric on the common clips each seed has."""
    values: dict[str, list[float]] = {}
    common_set = set(common)
    for p in seeds:
        keep = np.array([k in common_set for k in p.keys], dtype=bool)
        rows = np.flatnonzero(keep)
        vid = None
        if videos is not None:
            video_of = dict(zip(common, videos.tolist(), strict=True))
            vid = np.array([video_of.get(k, "") for k in p.keys])
        for name, v in score(p, rows, target, vid).items():
            values.setdefault(name, []).append(v)
    return {name: mean_std(v)[1] for name, v in values.items()}
