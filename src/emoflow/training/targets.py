"""What each clip (and each window of a time-continuous clip) is trained and scored against.

A clip with clip-level labels has one target ``(class index or -1, valence or NaN, arousal or
NaN)``. A clip with a label track (:mod:`emoflow.labels.tracks`) has one target per window, from
the labels inside it (:func:`emoflow.labels.windows.window_targets`); its windows are trained on
and predicted one by one, as units ``<clip>@w<window>`` (:mod:`emoflow.labels.units`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoflow.labels.track_table import TRACKS_FILE, read_tracks
from emoflow.labels.units import unit_id
from emoflow.labels.windows import window_targets

Target = tuple[int, float, float]
EMPTY_TRACK = pd.DataFrame(
    {"time_s": np.zeros(0), "valence": np.zeros(0), "arousal": np.zeros(0), "expression": []}
)
UNKNOWN: Target = (-1, float("nan"), float("nan"))


@dataclass
class Targets:
    """Clip-level targets and, for time-continuous clips, per-window ones."""

    clips: dict[str, Target] = field(default_factory=dict)
    windows: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self.clips or clip_id in self.windows

    def windowed(self, clip_id: str) -> bool:
        """Whether the clip is time-continuous (scored per window)."""
        return clip_id in self.windows

    def of(self, clip_id: str, window: int | None = None) -> Target:
        """The target of a clip, or of one of its windows (time-continuous clips)."""
        if clip_id in self.windows:
            if window is None:
                return UNKNOWN
            y, va = self.windows[clip_id]
            if window >= len(y):
                return UNKNOWN
            return int(y[window]), float(va[window, 0]), float(va[window, 1])
        return self.clips.get(clip_id, UNKNOWN)

    def usable(self, clip_id: str, target: str, window: int | None = None) -> bool:
        """Whether the clip (or window) has what the run learns. A time-continuous clip is
        usable when one of its windows is."""
        if window is None and clip_id in self.windows:
            y, va = self.windows[clip_id]
            return any(_usable((int(y[w]), *va[w]), target) for w in range(len(y)))
        return _usable(self.of(clip_id, window), target)

    def unit(self, clip_id: str, window: int) -> str:
        """The id a window is predicted under: the clip's own id unless it is time-continuous."""
        return unit_id(clip_id, window) if clip_id in self.windows else clip_id


def _usable(t: Sequence[float], target: str) -> bool:
    y, v, a = t
    has_va = not (math.isnan(v) or math.isnan(a))
    if target == "categorical":
        return y >= 0
    if target == "dimensional":
        return has_va
    return y >= 0 or has_va


def clip_targets(manifest: pd.DataFrame, classes: Sequence[str]) -> Targets:
    """Clip-level targets of the clip table's rows (class index or -1, valence, arousal)."""
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, Target] = {}
    for row in manifest.itertuples(index=False):
        label = getattr(row, "label", None)
        y = index.get(str(label), -1) if isinstance(label, str) else -1
        v = getattr(row, "valence", np.nan)
        a = getattr(row, "arousal", np.nan)
        out[str(row.clip_id)] = (
            y,
            float(v) if v is not None and pd.notna(v) else float("nan"),
            float(a) if a is not None and pd.notna(a) else float("nan"),
        )
    return Targets(clips=out)


def add_window_targets(
    targets: Targets,
    tracks: dict[str, pd.DataFrame],
    starts_of: dict[str, np.ndarray],
    window_s: float,
    classes: Sequence[str],
    min_annotated: float,
) -> Targets:
    """``targets`` with per-window targets for each clip of ``tracks`` (its label track) that
    ``starts_of`` gives window start times for; those clips lose their clip-level target."""
    for clip_id in sorted(tracks):
        if clip_id not in starts_of:
            continue
        y, va = window_targets(tracks[clip_id], starts_of[clip_id], window_s, classes,
                               min_annotated)  # fmt: skip
        targets.windows[clip_id] = (y, va)
        targets.clips.pop(clip_id, None)
    return targets


def track_targets(
    config: dict, manifest: pd.DataFrame, root: Path, shards: Any, classes: Sequence[str]
) -> Targets:
    """The targets of a run's clips: clip-level from the clip table, per window for the clips
    with a label track in ``<root>/tracks.parquet`` (their windows as ``shards`` has them)."""
    targets = clip_targets(manifest, classes)
    path = Path(root) / TRACKS_FILE
    if not path.exists() or "track" not in manifest.columns:
        return targets
    # the clips with a track, and those without any label (a test video of such a corpus:
    # predicted window by window too)
    unlabelled = manifest["label"].isna() & manifest["valence"].isna()
    windowed = manifest["track"].fillna(False).astype(bool) | unlabelled
    tracked = [c for c in manifest["clip_id"].astype(str)[windowed] if c in shards]
    tracks = read_tracks(path, tracked)
    for clip_id in tracked:
        tracks.setdefault(clip_id, EMPTY_TRACK)
    starts = {c: np.asarray(shards.window_starts(c), np.float64) for c in tracks}
    cfg = config["tracks"]
    return add_window_targets(targets, tracks, starts, float(config["audio"]["window_s"]),
                              classes, float(cfg["min_annotated"]))  # fmt: skip
