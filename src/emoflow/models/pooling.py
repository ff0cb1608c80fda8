"""How a clip's score is made from its window outputs: the same in evaluation and ``predict``."""

from __future__ import annotations

import torch


def pool_windows(out: dict[str, torch.Tensor], counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean of every output (logits, va, embedding) over each clip's windows.

    ``out[key]`` holds the windows of several clips one after the other, ``counts[i]`` of clip
    ``i``; the result has one row per clip. Class probabilities are the softmax of the pooled
    logits (:func:`clip_probabilities`).
    """
    owner = torch.repeat_interleave(torch.arange(len(counts)), counts)
    pooled = {}
    for key, value in out.items():
        summed = torch.zeros(len(counts), value.shape[1], dtype=value.dtype)
        summed.index_add_(0, owner, value)
        pooled[key] = summed / counts.clamp(min=1).unsqueeze(1).to(value.dtype)
    return pooled


def clip_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities of pooled clip logits (float32 softmax, as stored in predictions)."""
    return torch.softmax(logits.float(), dim=1)
