"""The branches on one vector per face frame (``au``: OpenFace's action units, head pose and
gaze; ``face_cnn``: the frozen FER encoder's embedding or probabilities, see
:mod:`emoflow.training.frame_inputs`): a per-frame layer -> masked temporal aggregation over the
window's frames (``gru``, ``netvlad`` or ``mean``, :mod:`emoflow.models.aggregate`) -> FC ->
heads.

Input ``x (B, K, D)`` standardised per value
(:func:`emoflow.training.normalisation.normalise_vectors`) and ``mask (B, K)`` (True = a frame with
a face); masked frames never change the output, and a window without any face gets a zero embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from emoflow.models.aggregate import make_aggregator
from emoflow.models.blocks import Heads


class FrameAggregation(nn.Module):
    """Linear + LayerNorm + ReLU per frame, then ``gru`` / ``netvlad`` / ``mean`` over frames."""

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        target: str = "categorical",
        embedding_dim: int = 64,
        dropout: float = 0.3,
        frame_dim: int = 64,
        aggregation: str = "gru",
        clusters: int = 8,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        self.frame = nn.Sequential(
            nn.Linear(in_dim, frame_dim), nn.LayerNorm(frame_dim), nn.ReLU(inplace=True)
        )
        self.aggregate = make_aggregator(aggregation, frame_dim, hidden, clusters)
        self.embed = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(int(self.aggregate.out_dim), embedding_dim),
            nn.ReLU(inplace=True),
        )
        self.heads = Heads(embedding_dim, n_classes, target)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = mask.bool()
        feats = self.frame(x) * mask.to(x.dtype).unsqueeze(-1)
        pooled = self.aggregate(feats, mask)
        has = mask.any(dim=1).to(pooled.dtype).unsqueeze(1)
        return self.heads(self.embed(pooled) * has)
