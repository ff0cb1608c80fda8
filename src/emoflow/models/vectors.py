"""A branch on per-window feature vectors (eGeMAPS functionals, SSL embeddings): an MLP.

Input ``(B, D)`` standardised vectors; with ``layers > 1`` the vector holds that many encoder
layers side by side (``D = layers * H``) and the model first takes their softmax-weighted sum
(weights learned, as in SUPERB). The window outputs are pooled per clip like the audio CNN's
(:func:`emoflow.models.pooling.pool_windows`).
"""

from __future__ import annotations

import torch
from torch import nn

from emoflow.models.blocks import Heads


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
        layers: int = 1,
    ) -> None:
        super().__init__()
        if in_dim % layers:
            raise ValueError(f"in_dim {in_dim} is not a multiple of layers {layers}")
        self.layers = layers
        self.layer_logits = nn.Parameter(torch.zeros(layers)) if layers > 1 else None
        self.body = nn.Sequential(
            nn.Linear(in_dim // layers, hidden),
            nn.LayerNorm(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, embedding_dim),
            nn.ReLU(inplace=True),
        )
        self.heads = Heads(embedding_dim, n_classes, target)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.layer_logits is not None:
            w = torch.softmax(self.layer_logits, dim=0)
            x = (x.view(len(x), self.layers, -1) * w[:, None]).sum(dim=1)
        return self.heads(self.body(x))
