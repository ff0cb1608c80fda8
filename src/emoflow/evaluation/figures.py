"""Report figures: pooled confusion matrices and training curves, as PNG bytes.

matplotlib's object API with the Agg canvas is used directly (no pyplot, no global backend
switch); PNGs carry no ``Software`` metadata, so the same data gives the same bytes with the
same matplotlib and fonts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

PNG_METADATA: dict[str, str | None] = {"Software": None}
DPI = 100


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata=PNG_METADATA)
    return buf.getvalue()


def confusion_png(cm: np.ndarray, classes: Sequence[str], title: str) -> bytes:
    """A row-normalised confusion matrix (colour = share of the true class) with counts."""
    cm = np.asarray(cm, dtype=np.int64)
    k = len(classes)
    rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    side = max(3.5, 0.6 * k + 2.0)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(k), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            colour = "white" if norm[i, j] > 0.5 else "black"
            text = f"{norm[i, j]:.2f}\n({cm[i, j]})"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    return _png(fig)


def curves_png(
    histories: Sequence[tuple[str, dict[str, np.ndarray]]], title: str, metric_name: str
) -> bytes:
    """Training/validation loss (left) and validation metric (right) per epoch.

    ``histories`` is ``[(label, {"epoch", "train_loss", "val_loss", "val_metric"}), ...]``,
    one line per fold/seed, drawn in the given order.
    """
    fig = Figure(figsize=(10.0, 4.0))
    ax_loss = fig.add_subplot(1, 2, 1)
    ax_metric = fig.add_subplot(1, 2, 2)
    for i, (label, h) in enumerate(histories):
        colour = f"C{i % 10}"
        ax_loss.plot(h["epoch"], h["train_loss"], color=colour, label=f"{label} train")
        ax_loss.plot(h["epoch"], h["val_loss"], color=colour, linestyle="--", label=f"{label} val")
        ax_metric.plot(h["epoch"], h["val_metric"], color=colour, label=label)
    for ax in (ax_loss, ax_metric):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss (solid: train, dashed: validation)")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel(metric_name)
    ax_metric.set_title(f"validation {metric_name}")
    if histories:
        ax_metric.legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)
