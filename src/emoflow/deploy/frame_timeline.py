"""The per-frame timeline of a model trained on time-continuous labels: ``<stem>.frames.csv``,
one row per video frame, the window outputs mapped to frames exactly as scoring maps them
(:mod:`emoflow.labels.frames`, the bundle's ``frames``: hold or linear)."""

from __future__ import annotations

import math

import numpy as np

from emoflow.deploy.timeline import Timeline
from emoflow.fusion.apply import has_categorical, has_dimensional
from emoflow.labels.frames import frame_classes, frame_values
from emoflow.media.ffmpeg import MediaInfo

DEFAULT_FPS = 25.0  # a file without a video stream: audio frames at this rate


def frame_times(info: MediaInfo) -> np.ndarray:
    """The times (s) of the file's video frames (``i / fps``)."""
    fps = info.fps or DEFAULT_FPS
    duration = info.video_duration_s or info.duration_s or 0.0
    return np.arange(int(math.floor(duration * fps + 1e-6))) / fps


def frames_csv(
    timeline: Timeline, classes: list[str], target: str, info: MediaInfo, method: str
) -> str:
    """``frame,time_s[,predicted][,valence,arousal]``: each frame's fused prediction (empty
    where no window of the file has an output)."""
    times = frame_times(info)
    centres = (timeline.start_s + timeline.end_s) / 2
    header = ["frame", "time_s"]
    columns: list[list[str]] = []
    if has_categorical(target) and len(timeline.prob):
        header.append("predicted")
        picked = frame_classes(centres, timeline.prob, times, method)
        columns.append([classes[k] if k >= 0 else "" for k in picked])
    if has_dimensional(target) and len(timeline.fused_va):
        header += ["valence", "arousal"]
        values = frame_values(centres, timeline.fused_va, times, method)
        for d in range(2):
            columns.append(["" if math.isnan(v) else f"{v:.6f}" for v in values[:, d]])
    lines = [",".join(header)]
    for i, t in enumerate(times):
        lines.append(",".join([str(i), f"{t:.6f}", *(col[i] for col in columns)]))
    return "\n".join(lines) + "\n"
