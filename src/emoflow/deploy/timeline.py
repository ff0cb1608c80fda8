"""The timeline of one new file: per-window and clip-level fused predictions, the clip's JSON
document and the ``<stem>.timeline.csv`` text.

Each branch's window outputs are pooled per clip with :func:`emoflow.models.pooling.pool_windows`
as evaluation pools them; the fusion chosen at training is applied with
:func:`emoflow.fusion.apply.apply_fusion`, per window (the timeline) and per clip (the JSON).

A window with audio and a face is ``both``; without a face ``audio_only``; a file without audio
gives ``visual_only`` windows (a window with neither is ``none`` and has empty values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emoflow import __version__
from emoflow.branches import BRANCH_STAGE, FACE_BRANCHES, is_fused, ordered, row_sources
from emoflow.deploy.branch_outputs import BranchWindows, branch_windows
from emoflow.deploy.predictor import Predictor
from emoflow.fusion.apply import apply_fusion, has_categorical, has_dimensional
from emoflow.media.ffmpeg import MediaInfo
from emoflow.models.pooling import clip_probabilities, pool_windows

FORMAT = "emoflow-prediction"
FORMAT_VERSION = 1
_DIGITS = 6


@dataclass
class Timeline:
    """Per-window outputs of one file (numpy, float64)."""

    start_s: np.ndarray  # (W,)
    end_s: np.ndarray  # (W,)
    face_fraction: np.ndarray  # (W,)
    has: dict[str, np.ndarray]  # branch -> (W,) bool
    prob: np.ndarray  # fused (W, C)
    fused_va: np.ndarray  # fused (W, 2)

    @property
    def sources(self) -> list[str]:
        return row_sources(self.has)


def _arrays(got: dict[str, BranchWindows], n: int, predictor: Predictor, pooled: bool) -> tuple:
    """prob, va, has, embedding per branch: per window (``n`` rows) or per clip (one row)."""
    c = len(predictor.classes) if has_categorical(predictor.target) else 0
    prob, va, has, emb = {}, {}, {}, {}
    for b, bw in got.items():
        out = bw.out
        w = len(bw.has)
        if pooled:
            rows = torch.as_tensor(np.flatnonzero(bw.has))
            out = pool_windows({k: v[rows] for k, v in out.items()}, torch.tensor([len(rows)]))
            has[b] = np.array([bool(bw.has.any())])
        else:
            has[b] = np.zeros(n, bool)
            has[b][:w] = bw.has
            out = {k: torch.cat([v, v.new_zeros(n - w, v.shape[1])]) for k, v in out.items()}
        rows_n = len(has[b])
        prob[b] = (clip_probabilities(out["logits"]).double().numpy() if "logits" in out
                   else np.zeros((rows_n, c)))  # fmt: skip
        va[b] = out["va"].double().numpy() if "va" in out else np.full((rows_n, 2), np.nan)
        emb[b] = out["embedding"].double().numpy()
    return prob, va, has, emb


def predict_timeline(path: Path, predictor: Predictor, info: MediaInfo) -> tuple[Timeline, dict]:
    """Per-window and clip-level predictions of one file (see the module docstring)."""
    got, why = branch_windows(path, predictor, info)
    grid = predictor.grid
    longest = max(got.values(), key=lambda bw: len(bw.start_s))
    start_s = np.asarray(longest.start_s, dtype=np.float64)
    n = len(start_s)
    duration = info.duration_s or (n * grid.hop_s)
    end_s = np.minimum(start_s + grid.window_s, max(duration, float(start_s[-1]) + 1e-3))
    face_fraction = np.zeros(n)
    for name in FACE_BRANCHES:
        ff = got[name].face_fraction if name in got else None
        if ff is not None:
            face_fraction[: len(ff)] = ff
            break
    plan = predictor.fusion
    prob, va, has, emb = _arrays(got, n, predictor, pooled=False)
    fused_p, fused_va = apply_fusion(
        plan.applied, plan.params, predictor.target, prob, va, has, emb
    )
    timeline = Timeline(start_s, end_s, face_fraction, has, fused_p, fused_va)
    cprob, cva, chas, cemb = _arrays(got, 1, predictor, pooled=True)
    clip_p, clip_va = apply_fusion(plan.applied, plan.params, predictor.target, cprob, cva, chas,
                                   cemb)  # fmt: skip
    clip = {"prob": clip_p, "va": clip_va, "branch_prob": cprob, "branch_va": cva,
            "has": chas, "n_windows": {b: int(bw.has.sum()) for b, bw in got.items()},
            "why": why}  # fmt: skip
    return timeline, clip


def _round(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else round(x, _DIGITS)


def _outputs(prob: np.ndarray, va: np.ndarray, classes: list[str], target: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if has_categorical(target) and classes:
        p = prob[0]
        out["probabilities"] = {c: _round(p[i]) for i, c in enumerate(classes)}
        out["label"] = None if np.isnan(p).any() else classes[int(np.argmax(p))]
    if has_dimensional(target):
        out["valence"], out["arousal"] = _round(va[0, 0]), _round(va[0, 1])
    return out


def clip_prediction(
    timeline: Timeline, clip: dict[str, Any], predictor: Predictor, video: str, info: MediaInfo
) -> dict[str, Any]:
    """The clip-level JSON document of one file (deterministic, no times)."""
    target, classes = predictor.target, predictor.classes
    branches = {
        b: {**_outputs(clip["branch_prob"][b], clip["branch_va"][b], classes, target),
            "n_windows": clip["n_windows"][b]}
        for b in sorted(clip["has"]) if clip["has"][b][0]
    }  # fmt: skip
    source = row_sources(clip["has"])[0]
    grid = predictor.grid
    fusion = predictor.fusion.describe()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "file": video,
        "model": predictor.model_path,
        "model_mode": predictor.mode,
        "target": target,
        "classes": classes,
        **_outputs(clip["prob"], clip["va"], classes, target),
        "source": source,
        "modalities": sorted(branches),
        "missing": {m: clip["why"][m] for m in ordered(clip["why"]) if m not in branches},
        "fusion": fusion if is_fused(source) else {**fusion, "used": False},
        "branches": branches,
        "n_windows": len(timeline.start_s),
        "window_s": grid.window_s,
        "hop_s": grid.hop_s,
        "duration_s": _round(info.duration_s) if info.duration_s else None,
        "face_fraction": _round(timeline.face_fraction.mean()) if len(timeline.start_s) else 0.0,
        "spec_hashes": {
            BRANCH_STAGE[b]: predictor.branches[b].spec_hash for b in predictor.branches
        },
        "warnings": list(predictor.warnings),
        "emoflow_version": __version__,
    }


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.{_DIGITS}f}"


def timeline_csv(timeline: Timeline, classes: list[str], target: str) -> str:
    """The ``<stem>.timeline.csv`` text: start_s, end_s, p_<class>.../valence, arousal,
    face_fraction, source."""
    header = ["start_s", "end_s"]
    if has_categorical(target):
        header += [f"p_{c}" for c in classes]
    if has_dimensional(target):
        header += ["valence", "arousal"]
    header += ["face_fraction", "source"]
    lines = [",".join(header)]
    for i, src in enumerate(timeline.sources):
        row = [f"{timeline.start_s[i]:.3f}", f"{timeline.end_s[i]:.3f}"]
        if has_categorical(target):
            row += [_fmt(p) for p in timeline.prob[i]]
        if has_dimensional(target):
            row += [_fmt(v) for v in timeline.fused_va[i]]
        row += [f"{timeline.face_fraction[i]:.4f}", src]
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"
