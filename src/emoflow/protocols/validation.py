"""How a fold's validation clips are drawn from its training speakers (early stopping)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emoflow.errors import EmoflowError
from emoflow.study import corpus_of


def draw_val(train_groups: list[str], fraction: float, rng: np.random.Generator) -> set[str]:
    """Draw ``max(1, round(fraction * n))`` validation groups, keeping one group to train."""
    groups = sorted(train_groups)
    if len(groups) < 2:
        raise EmoflowError(
            f"cannot draw validation speakers: only {len(groups)} training speaker(s) in a fold"
        )
    n_val = min(max(1, round(fraction * len(groups))), len(groups) - 1)
    picked = rng.permutation(len(groups))[:n_val]
    return {groups[i] for i in sorted(picked)}


def val_by_corpus(part: pd.DataFrame, fraction: float, key: list[int]) -> np.ndarray:
    """Validation mask over ``part`` (training rows with ``clip_id`` and ``group``): per
    corpus, a fraction of its speaker groups, or of its clips when it has one group."""
    mask = np.zeros(len(part), dtype=bool)
    corpus = part["clip_id"].map(corpus_of).to_numpy()
    for i, name in enumerate(sorted(set(corpus))):
        rows = np.flatnonzero(corpus == name)
        groups = sorted(set(part["group"].iloc[rows]))
        rng = np.random.default_rng([*key, i + 1])
        if len(groups) >= 2:
            val = draw_val(groups, fraction, rng)
            mask[rows] = part["group"].iloc[rows].isin(val).to_numpy()
        elif len(rows) >= 2:
            n_val = min(max(1, round(fraction * len(rows))), len(rows) - 1)
            mask[rows[np.sort(rng.permutation(len(rows))[:n_val])]] = True
    return mask
