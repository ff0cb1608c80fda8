"""The one time grid every modality shares: windows of ``window_s`` every ``hop_s``, and face
samples at a fixed rate of ``frames`` per window along the whole clip.

Window *i* starts at sample ``i * hop`` (the audio rule of :func:`window_starts`); face sample *j*
is at ``(j + 0.5) / rate`` seconds with ``rate = frames / window_s``; window *i*'s frames are the
``frames`` samples starting at the first one inside it, so audio window *i* and face window *i*
cover the same seconds. Pure functions: the extraction stages, training and ``predict`` all
use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

GRID_KEYS = ("sample_rate", "window_s", "hop_s", "last_window")


@dataclass(frozen=True)
class TimeGrid:
    """Window and frame-sampling parameters (seconds, Hz)."""

    sample_rate: int
    window_s: float
    hop_s: float
    last_window: str  # "pad" | "drop"
    frames: int  # face samples per window

    @classmethod
    def of(cls, spec: dict[str, Any]) -> TimeGrid:
        """The grid recorded in an audio or faces spec (faces specs carry ``grid``)."""
        g = spec.get("grid", spec)
        return cls(
            sample_rate=int(g["sample_rate"]),
            window_s=float(g["window_s"]),
            hop_s=float(g["hop_s"]),
            last_window=str(g["last_window"]),
            frames=int(g.get("frames", spec.get("frames", 16))),
        )

    @property
    def rate(self) -> float:
        """Face samples per second."""
        return self.frames / self.window_s

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_s * self.sample_rate))

    def window_starts(self, n_samples: int) -> np.ndarray:
        """Start samples of the windows of a signal of ``n_samples`` (see :func:`window_starts`)."""
        return window_starts(n_samples, self.window_samples, self.hop_samples, self.last_window)

    def windows_for_duration(self, duration_s: float) -> np.ndarray:
        """Window start times (s) of a stream of ``duration_s`` seconds."""
        n = int(round(max(duration_s, 0.0) * self.sample_rate))
        return self.window_starts(n) / self.sample_rate

    def frame_times(self, duration_s: float, fps: float | None = None) -> np.ndarray:
        """Sample times inside a video of ``duration_s`` (its last frame starts one frame
        interval before the end); a video shorter than one sample interval gets ``[0.0]``."""
        last = duration_s - (1.0 / fps if fps else 0.0)
        n = int(math.floor(last * self.rate + 0.5 + 1e-9)) if last > 0 else 0
        if n <= 0:
            return np.zeros(1)
        return (np.arange(n) + 0.5) / self.rate

    def window_frame0(self, start_s: np.ndarray) -> np.ndarray:
        """Index of the first face sample at or after each window start."""
        j = np.ceil(np.asarray(start_s, dtype=np.float64) * self.rate - 0.5 - 1e-9)
        return np.maximum(j, 0).astype(np.int64)

    def describe(self) -> dict[str, Any]:
        """The grid as it goes into a spec."""
        return {
            "sample_rate": self.sample_rate,
            "window_s": self.window_s,
            "hop_s": self.hop_s,
            "last_window": self.last_window,
            "frames": self.frames,
        }


def window_starts(n_samples: int, win: int, hop: int, last_window: str) -> np.ndarray:
    """Start samples of windows of ``win`` samples every ``hop``.

    The last partial window is kept (zero-padded later) with ``last_window="pad"`` or dropped
    with ``"drop"``; a signal no longer than one window gives one window at 0.
    """
    if n_samples <= win:
        return np.zeros(1, dtype=np.int64)
    starts = list(range(0, n_samples - win + 1, hop))
    tail = starts[-1] + hop
    if last_window == "pad" and starts[-1] + win < n_samples and tail < n_samples:
        starts.append(tail)
    return np.asarray(starts, dtype=np.int64)


def window_frame_index(
    frame0: np.ndarray, frames: int, n_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(W, frames)`` indices into a clip's frame sequence and whether each exists.

    Indices past the last frame are clipped to it and flagged False (they are masked out,
    never used as faces).
    """
    idx = np.asarray(frame0, dtype=np.int64)[:, None] + np.arange(frames)[None, :]
    exists = idx < n_frames
    return np.minimum(idx, max(n_frames - 1, 0)), exists
