"""Losses: cross-entropy (optionally class-weighted) and the concordance correlation (CCC) loss.

Unknown targets are ignored: class index ``-1`` for cross-entropy, NaN for valence/arousal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_weights(counts: torch.Tensor | list[int]) -> torch.Tensor:
    """Inverse-frequency weights ``n / (k * count_c)``; a class never seen gets weight 0."""
    counts = torch.as_tensor(counts, dtype=torch.float32)
    present = counts > 0
    weights = torch.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy over rows with a known class (``y >= 0``); 0 when there are none."""
    known = y >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known].float(), y[known], weight=weight)


def ccc(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Concordance correlation coefficient of two 1-D tensors (population moments)."""
    pred = pred.float()
    true = true.float()
    mp, mt = pred.mean(), true.mean()
    vp = ((pred - mp) ** 2).mean()
    vt = ((true - mt) ** 2).mean()
    cov = ((pred - mp) * (true - mt)).mean()
    return 2 * cov / (vp + vt + (mp - mt) ** 2 + 1e-8)


def ccc_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """``1 - CCC`` averaged over the columns (valence, arousal), ignoring NaN targets.

    ``pred`` and ``true`` are ``(N, D)``; a column with fewer than two known targets
    contributes nothing.
    """
    losses = []
    for d in range(pred.shape[1]):
        known = ~torch.isnan(true[:, d])
        if int(known.sum()) >= 2:
            losses.append(1.0 - ccc(pred[known, d], true[known, d]))
    if not losses:
        return pred.sum() * 0.0
    return torch.stack(losses).mean()


def branch_loss(
    out: dict[str, torch.Tensor],
    y: torch.Tensor,
    va: torch.Tensor,
    target: str,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training loss of a branch: CE, CCC, or their sum for ``target == "both"``."""
    loss = out["embedding"].sum() * 0.0
    if target in ("categorical", "both"):
        loss = loss + cross_entropy(out["logits"], y, weight)
    if target in ("dimensional", "both"):
        loss = loss + ccc_loss(out["va"], va)
    return loss
