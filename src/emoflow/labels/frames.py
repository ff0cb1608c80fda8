"""Per-window model outputs mapped back to frame times, for frame-level scoring and timelines.

A clip's windows each give one output (V/A values, class probabilities) placed at the window's
centre (``start + window_s / 2``). Two documented ways turn them into a value per frame time:

- ``hold``: a frame takes the output of the usable window whose centre is nearest to it. A frame
  exactly midway between two usable centres takes the **earlier** window's output. Frames
  before the first / after the last usable centre take the first / last output.
- ``linear``: linear interpolation between the two usable centres around the frame
  (:func:`numpy.interp`), held constant before the first and after the last usable centre.
  A frame exactly on a centre takes that window's output.

A window is *usable* for a column when its output there is finite: windows with NaN outputs
(e.g. no face was found in them) are skipped, and their frames get the neighbours' outputs. A
frame with no usable window at all (no window has a finite output) gets NaN; so does a NaN
frame time. Each column of a ``(W, D)`` output is treated on its own;
:func:`frame_classes` instead skips a window when any of its probabilities is NaN.
"""

from __future__ import annotations

import numpy as np

METHODS = ("hold", "linear")


def _check(centres: np.ndarray, n_values: int, method: str) -> np.ndarray:
    c = np.asarray(centres, dtype=np.float64).reshape(-1)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if len(c) != n_values:
        raise ValueError(f"{len(c)} centres but {n_values} window outputs")
    if not np.all(np.isfinite(c)):
        raise ValueError("window centres must be finite")
    if c.size > 1 and np.any(np.diff(c) <= 0):
        raise ValueError("window centres must be strictly ascending")
    return c


def hold_index(centres: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the centre nearest to each time (ties to the earlier one); centres ascending
    and non-empty, times finite."""
    c = np.asarray(centres, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    j = np.searchsorted(c, t, side="left")  # c[j-1] < t <= c[j]
    right = np.minimum(j, len(c) - 1)
    left = np.maximum(j - 1, 0)
    take_right = (c[right] - t) < (t - c[left])
    return np.where((j == 0) | take_right, right, left).astype(np.int64)


def _column(c: np.ndarray, v: np.ndarray, t: np.ndarray, method: str) -> np.ndarray:
    """One column of outputs at the finite times ``t``."""
    usable = np.isfinite(v)
    if not usable.any():
        return np.full(len(t), np.nan)
    cu, vu = c[usable], v[usable]
    if method == "hold":
        return vu[hold_index(cu, t)]
    return np.interp(t, cu, vu)


def frame_values(
    centres: np.ndarray, values: np.ndarray, times: np.ndarray, method: str
) -> np.ndarray:
    """Per-window outputs at frame times (see the module docstring for ``hold`` / ``linear``).

    Args:
        centres: ``(W,)`` window centres in seconds, strictly ascending.
        values: ``(W,)`` or ``(W, D)`` outputs; NaN marks an unusable window.
        times: ``(T,)`` frame times in seconds (any order).
        method: ``"hold"`` or ``"linear"``.

    Returns:
        float64 ``(T,)`` or ``(T, D)`` (the shape of ``values`` with ``W`` replaced by ``T``);
        NaN where no window is usable.
    """
    vals = np.asarray(values, dtype=np.float64)
    if vals.ndim not in (1, 2):
        raise ValueError(f"values must be (W,) or (W, D), not {vals.shape}")
    c = _check(centres, vals.shape[0], method)
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    v2 = vals[:, None] if vals.ndim == 1 else vals
    out = np.full((len(t), v2.shape[1]), np.nan)
    ok = np.isfinite(t)
    if c.size and ok.any():
        for d in range(v2.shape[1]):
            out[ok, d] = _column(c, v2[:, d], t[ok], method)
    return out[:, 0] if vals.ndim == 1 else out


def frame_classes(
    centres: np.ndarray, probs: np.ndarray, times: np.ndarray, method: str
) -> np.ndarray:
    """Per-frame class index from per-window class probabilities ``(W, C)``.

    ``hold``: the argmax of the nearest usable window (ties between windows to the earlier);
    ``linear``: the argmax of the linearly interpolated probabilities. A window is usable when
    all its probabilities are finite. Ties between classes go to the lowest index; a frame with
    no usable window gets -1. Returns int64 ``(T,)``.
    """
    p = np.array(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be (W, C), not {p.shape}")
    p[~np.all(np.isfinite(p), axis=1)] = np.nan
    at = frame_values(centres, p, times, method)
    known = np.all(np.isfinite(at), axis=1) & (at.shape[1] > 0)
    out = np.full(len(at), -1, dtype=np.int64)
    if known.any():
        out[known] = np.argmax(at[known], axis=1)
    return out
