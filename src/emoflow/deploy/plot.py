"""The timeline figure of ``emoflow predict``: stacked class probabilities and/or valence and
arousal over time, with the face fraction and the modality of each window (matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from emoflow.deploy.timeline import Timeline

SOURCE_COLOURS = {
    "both": "#4c72b0",
    "all": "#4c72b0",
    "audio_only": "#dd8452",
    "visual_only": "#55a868",
    "none": "#bbbbbb",
}
OTHER_SOURCE = "#937860"  # some of three or more branches, or one other branch alone


def source_colour(source: str) -> str:
    """The band colour of a window's source (see :func:`emoflow.branches.source_label`)."""
    return SOURCE_COLOURS.get(source, OTHER_SOURCE)


def _edges(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Step positions: each window is drawn from its start to the next window's start."""
    if len(start) == 0:
        return np.zeros(0)
    return np.append(start, end[-1])


def _runs(sources: list[str]) -> list[tuple[int, int]]:
    """``(first, end)`` window indices of each run of consecutive windows of one source: one
    band per run, not one artist per window (a 15-minute file has 600 windows)."""
    runs: list[tuple[int, int]] = []
    for i, src in enumerate(sources):
        if runs and sources[runs[-1][0]] == src:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def plot_timeline(
    timeline: Timeline, classes: list[str], target: str, path: Path, title: str
) -> None:
    """Write the timeline PNG to ``path`` (no timestamp in the file's metadata)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch

    categorical = target in ("categorical", "both") and bool(classes)
    dimensional = target in ("dimensional", "both")
    panels = int(categorical) + int(dimensional) + 1
    heights = [3] * (panels - 1) + [1]
    fig, axes = plt.subplots(
        panels, 1, figsize=(10, 1.2 + 2.2 * (panels - 1) + 0.8), sharex=True,
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    axes = np.atleast_1d(axes)
    x = _edges(timeline.start_s, timeline.end_s)
    ax_i = 0
    if categorical:
        ax = axes[ax_i]
        ax_i += 1
        prob = np.nan_to_num(np.asarray(timeline.prob, dtype=float), nan=0.0)
        steps = np.vstack([prob, prob[-1:]]) if len(prob) else prob
        cmap = plt.get_cmap("tab10")
        ax.stackplot(x, steps.T, labels=classes, step="post",
                     colors=[cmap(i % 10) for i in range(len(classes))], alpha=0.85)  # fmt: skip
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if dimensional:
        ax = axes[ax_i]
        ax_i += 1
        va = np.asarray(timeline.fused_va, dtype=float)
        centres = (timeline.start_s + timeline.end_s) / 2
        ax.plot(centres, va[:, 0], label="valence", color="#8172b3")
        ax.plot(centres, va[:, 1], label="arousal", color="#c44e52")
        ax.axhline(0, color="#888888", lw=0.6)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("value")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax = axes[ax_i]
    sources = timeline.sources
    for lo, hi in _runs(sources):  # one band per run of windows of one source
        ax.axvspan(x[lo], x[hi], 0, 1, color=source_colour(sources[lo]), lw=0, alpha=0.35)
    ff = np.asarray(timeline.face_fraction, dtype=float)
    if len(ff):
        ax.step(x, np.append(ff, ff[-1]), where="post", color="black", lw=1)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("faces")
    ax.set_xlabel("time (s)")
    handles = [
        Patch(color=source_colour(s), alpha=0.35, label=s.replace("_", " "))
        for s in sorted(set(sources))
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False)  # fmt: skip
    if len(x):
        axes[0].set_xlim(x[0], x[-1])
    axes[0].set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
