"""Scoring time-continuous clips per annotated frame (the ABAW way).

Their windows are predicted as units ``<clip>@w<window>`` (:mod:`emoflow.labels.units`). For each
(fold, clip) the seed-averaged window outputs are mapped to the clip's labelled frames
(:mod:`emoflow.labels.frames`, ``tracks.frames``: hold or linear) and reduced to sufficient
statistics (centred moments, :func:`moments`), so that any resample of clips (the speaker
bootstrap) is scored by combining them (:func:`combine`):

- valence/arousal: CCC, Pearson r and MAE over **all annotated frames of all clips together**
  (ABAW's CCC), and the mean over clips of each clip's own CCC (``video_*_ccc``);
- expressions: accuracy, UAR and macro-F1 over annotated frames, from the summed confusion matrix.

A frame counts when it is annotated and some window of the clip has an output for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoflow.labels.frames import frame_classes, frame_values
from emoflow.labels.track_table import TRACKS_FILE, read_tracks, track_clip_ids
from emoflow.labels.units import split_unit

FRAMES = "frames"
"""The scoring scheme of time-continuous runs (passed where the OMG flag goes)."""
VIDEO_METRICS = ("video_arousal_ccc", "video_valence_ccc")
_N, _RT, _RP, _OT, _OP, _CTT, _CPP, _CTP, _SAE = range(9)
N_MOMENTS = 9
"""Length of a :func:`moments` vector (the last axis of :attr:`FrameStats.va`)."""


@dataclass
class FrameStats:
    """One method's per-(fold, clip) frame statistics.

    ``va[i, d]`` (d: valence, arousal) holds the clip's :func:`moments` (9 values: frame count,
    reference values and the means' offsets from them, centred sums of squares and co-moment,
    sum of absolute errors); the rows of any multiset (a bootstrap resample) combine with
    :func:`combine` without the cancellation of raw sums of squares. ``video_ccc[i, d]`` is
    each clip's own CCC, ``confusion[i]`` its frames' confusion matrix (rows true, columns
    predicted).
    """

    keys: list[tuple[int, str]]
    va: np.ndarray  # (N, 2, 9) float64: see moments()
    video_ccc: np.ndarray  # (N, 2)
    confusion: np.ndarray  # (N, C, C) int64 (C = 0 without a categorical target)

    def take(self, idx: np.ndarray) -> FrameStats:
        """The rows ``idx`` (repeats allowed: a bootstrap resample)."""
        return FrameStats([self.keys[i] for i in idx], self.va[idx], self.video_ccc[idx],
                          self.confusion[idx])  # fmt: skip


def _offset_mean(x: np.ndarray, ref: float) -> float:
    """Mean of ``x - ref``, refined once (a second pass over the residuals)."""
    d = x - ref
    m = d.mean()
    return float(m + (d - m).mean())


def moments(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The sufficient statistics of the pairs (``true``, ``pred``), a vector of 9:
    n; reference values ``rt = true[0]``, ``rp = pred[0]``; the means' offsets from them
    ``ot = mean(t - rt)``, ``op = mean(p - rp)``; the centred sums ``sum((t - mt) ** 2)``,
    ``sum((p - mp) ** 2)``, ``sum((t - mt) * (p - mp))`` (``mt = rt + ot``); ``sum(|t - p|)``.

    Everything is centred and the means are carried as small offsets from a data value, so a
    large common offset (values near 1000 varying by 1e-4) costs no precision, also in the
    difference of the means. All zero for empty input."""
    t, p = np.asarray(true, np.float64).ravel(), np.asarray(pred, np.float64).ravel()
    if t.size == 0:
        return np.zeros(N_MOMENTS)
    rt, rp = t[0], p[0]
    ot, op = _offset_mean(t, rt), _offset_mean(p, rp)
    dt, dp = (t - rt) - ot, (p - rp) - op
    return np.array([t.size, rt, rp, ot, op, dt @ dt, dp @ dp, dt @ dp, np.abs(t - p).sum()])


def combine(m: np.ndarray) -> np.ndarray:
    """The :func:`moments` of the union of the frames of the rows ``m[0], m[1], ...`` (shape
    (R, ..., 9); repeated rows count twice): the parallel update of Chan et al., all rows at
    once (within-row co-moments plus ``n_i`` times the products of the means' deviations),
    about the reference values of the row with the most frames."""
    m = np.asarray(m, np.float64)
    out = np.zeros(m.shape[1:])
    n = m[..., _N]
    total = n.sum(axis=0)
    safe = np.where(total > 0, total, 1.0)
    big = np.argmax(n, axis=0)[None] if len(m) else None
    dev = []
    for r, o in ((_RT, _OT), (_RP, _OP)):
        ref = np.take_along_axis(m[..., r], big, axis=0)[0] if len(m) else 0.0
        shift = (m[..., r] - ref) + m[..., o]  # each row's mean minus ref
        out[..., r] = ref
        out[..., o] = (n * shift).sum(axis=0) / safe
        dev.append(shift - out[..., o])
    dt, dp = dev
    out[..., _N] = total
    out[..., _CTT] = m[..., _CTT].sum(axis=0) + (n * dt * dt).sum(axis=0)
    out[..., _CPP] = m[..., _CPP].sum(axis=0) + (n * dp * dp).sum(axis=0)
    out[..., _CTP] = m[..., _CTP].sum(axis=0) + (n * dt * dp).sum(axis=0)
    out[..., _SAE] = m[..., _SAE].sum(axis=0)
    return out


def ccc_of(m: np.ndarray) -> float:
    """CCC from :func:`moments` (population variances, as ABAW's formula); NaN below 2 frames,
    1.0 when truth and prediction are the same constant (as
    :func:`emoflow.evaluation.metrics.ccc`)."""
    n = m[_N]
    if n < 2:
        return float("nan")
    bias = (m[_RT] - m[_RP]) + (m[_OT] - m[_OP])  # mean(t) - mean(p)
    denom = (m[_CTT] + m[_CPP]) / n + bias * bias
    return float(2 * (m[_CTP] / n) / denom) if denom > 0 else 1.0


def _pearson_of(m: np.ndarray) -> float:
    """Pearson r from :func:`moments`; 0 when either side is constant (as
    :func:`emoflow.evaluation.metrics.pearson_r`), NaN below 2 frames."""
    if m[_N] < 2:
        return float("nan")
    if m[_CTT] <= 0 or m[_CPP] <= 0:
        return 0.0
    return float(m[_CTP] / np.sqrt(m[_CTT] * m[_CPP]))


def clip_stats(
    track: pd.DataFrame, windows: np.ndarray, prob: np.ndarray, va: np.ndarray,
    centre_of: tuple[float, float], classes: list[str], method: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """A clip's (va moments (2, 9), own CCC (2,), confusion (C, C)) from its window outputs."""
    order = np.argsort(windows, kind="stable")
    hop, half = centre_of
    centres = windows[order] * hop + half
    times = track["time_s"].to_numpy(np.float64)
    stats = np.zeros((2, N_MOMENTS))
    own = np.full(2, np.nan)
    if va.size and np.isfinite(va).any():
        pred = frame_values(centres, va[order], times, method)
        for d, col in enumerate(("valence", "arousal")):
            true = track[col].to_numpy(np.float64)
            ok = np.isfinite(true) & np.isfinite(pred[:, d])
            stats[d] = moments(true[ok], pred[ok, d])
            own[d] = ccc_of(stats[d])
    k = len(classes)
    cm = np.zeros((k, k), np.int64)
    if k and prob.size:
        pred_c = frame_classes(centres, prob[order], times, method)
        index = {c: i for i, c in enumerate(classes)}
        true_c = np.array([index.get(e, -1) if isinstance(e, str) else -1
                           for e in track["expression"]], np.int64)  # fmt: skip
        ok = (true_c >= 0) & (pred_c >= 0)
        np.add.at(cm, (true_c[ok], pred_c[ok]), 1)
    return stats, own, cm


def frame_stats(
    p: Any, tracks: dict[str, pd.DataFrame], grid: tuple[float, float],
    classes: list[str], method: str,
) -> FrameStats:  # fmt: skip
    """Per (fold, clip) frame statistics of one method's unit predictions ``p`` (a
    :class:`emoflow.evaluation.scoring.ClipPredictions` keyed by (fold, unit)); ``grid`` is
    (hop_s, window_s). Units of clips without a track are ignored."""
    groups: dict[tuple[int, str], list[int]] = {}
    windows: dict[tuple[int, str], list[int]] = {}
    for i, (fold, unit) in enumerate(p.keys):
        parts = split_unit(unit)
        if parts is None or parts[0] not in tracks:
            continue
        groups.setdefault((fold, parts[0]), []).append(i)
        windows.setdefault((fold, parts[0]), []).append(parts[1])
    keys = sorted(groups)
    k = len(classes)
    va = np.zeros((len(keys), 2, N_MOMENTS))
    own = np.full((len(keys), 2), np.nan)
    cms = np.zeros((len(keys), k, k), np.int64)
    hop, window = grid
    for j, key in enumerate(keys):
        rows = np.array(groups[key])
        va[j], own[j], cms[j] = clip_stats(
            tracks[key[1]], np.array(windows[key]), p.prob[rows] if k else np.zeros((0, 0)),
            p.va[rows], (hop, window / 2), classes, method,
        )  # fmt: skip
    return FrameStats(keys, va, own, cms)


def _prf(cm: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0).astype(np.float64), cm.sum(axis=1)
    k = len(tp)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def per_class_frames(s: FrameStats) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-class precision/recall/F1/support over all frames of ``s``, and the confusion."""
    cm = s.confusion.sum(axis=0)
    return _prf(cm), cm


def score_frames(s: FrameStats, rows: np.ndarray, categorical: bool, dimensional: bool) -> dict:
    """Every frame-level metric over the clips ``rows`` of ``s`` (repeats count twice)."""
    out: dict[str, float] = {}
    if categorical:
        cm = s.confusion[rows].sum(axis=0)
        n = cm.sum()
        prf = _prf(cm)
        present = (prf["support"] > 0) | (cm.sum(axis=0) > 0)
        out["accuracy"] = float(np.trace(cm) / n) if n else float("nan")
        out["uar"] = float(prf["recall"][prf["support"] > 0].mean()) if n else float("nan")
        out["macro_f1"] = float(prf["f1"][present].mean()) if n else float("nan")
    if dimensional:
        m = combine(s.va[rows])
        for d, name in ((1, "arousal"), (0, "valence")):
            out[f"{name}_ccc"] = ccc_of(m[d])
            own = s.video_ccc[rows, d]
            out[f"video_{name}_ccc"] = (
                float(np.nanmean(own)) if np.isfinite(own).any() else float("nan")
            )
        r = [_pearson_of(m[d]) for d in (0, 1) if m[d, _N] >= 2]
        out["pearson_r"] = float(np.mean(r)) if r else float("nan")
        err = [m[d, _SAE] / m[d, _N] for d in (0, 1) if m[d, _N] >= 2]
        out["mae"] = float(np.mean(err)) if err else float("nan")
        out["mean_ccc"] = float(np.mean([out["arousal_ccc"], out["valence_ccc"]]))
    return out


@dataclass
class FrameContext:
    """What frame-level scoring needs besides the predictions: the tracks of the clips, the
    grid (hop_s, window_s) and how window outputs become frames (``tracks.frames``)."""

    tracks: dict[str, pd.DataFrame]
    grid: tuple[float, float]
    method: str

    def stats(self, p: Any, classes: list[str]) -> FrameStats:
        """:func:`frame_stats` of ``p``."""
        return frame_stats(p, self.tracks, self.grid, classes, self.method)

    def describe(self) -> str:
        """One sentence for the table's caption."""
        how = {"hold": "the nearest window's output held", "linear": "window outputs "
               "interpolated linearly between window centres"}[self.method]  # fmt: skip
        return (
            f"Time-continuous labels: scored per annotated frame ({how}); CCC over the "
            "frames of all clips together, and its mean per video."
        )


def frame_context(config: dict[str, Any], manifest_path: Path) -> FrameContext | None:
    """Frame-level scoring of the run's time-continuous clips (None when it has none)."""
    path = Path(manifest_path).parent / TRACKS_FILE
    if not track_clip_ids(path):
        return None
    grid = (float(config["audio"]["hop_s"]), float(config["audio"]["window_s"]))
    return FrameContext(read_tracks(path), grid, str(config["tracks"]["frames"]))
