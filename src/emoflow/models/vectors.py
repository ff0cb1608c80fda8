"""A branch on per-window feature vectors (eGeMAPS functionals): an MLP per window.

Input ``(B, D)`` standardised vectors; the window outputs are pooled per clip like the audio
CNN's (:func:`emoflow.pooling.pool_windows`).
"""

from __future__ import annotations

import torch
from torch import nn

from emoflow.models import Heads


class WindowMLP(nn.Module):
    """Two hidden layers (Linear, LayerNorm, ReLU, dropout) -> embedding -> heads."""

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        target: str = "categorical",
        embedding_dim: int = 64,
        hidden: int = 128,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.LayerNorm(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, embedding_dim),
            nn.ReLU(inplace=True),
        )
        self.heads = Heads(embedding_dim, n_classes, target)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.body(x))
