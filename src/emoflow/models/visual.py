"""Visual branch: a per-frame CNN, then temporal aggregation over the frames that have a face.

Input ``x`` is ``(B, K, C, S, S)`` normalised face crops and ``mask`` ``(B, K)`` (True = face
found). Frames without a face never enter the CNN (so they cannot touch BatchNorm statistics
either); the frame embeddings are aggregated under the mask by ``aggregation``
(:mod:`emoflow.models.aggregate`: ``gru``, the default — a unidirectional GRU over the frames
with a face, in their time order, averaged — ``netvlad`` or ``mean``). The output therefore does
not depend on the content of masked frames. A clip without any face frame gets a zero
embedding (its head outputs are the heads' biases).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emoflow.models.aggregate import make_aggregator
from emoflow.models.blocks import Heads, conv_stack


class VisualCNNGRU(nn.Module):
    """Per-frame CNN (conv, BatchNorm, ReLU, max-pool blocks) + masked aggregation + heads."""

    def __init__(
        self,
        n_classes: int,
        target: str = "categorical",
        embedding_dim: int = 64,
        in_channels: int = 1,
        channels: list[int] | None = None,
        frame_dim: int = 64,
        hidden: int = 64,
        dropout: float = 0.3,
        aggregation: str = "gru",
        clusters: int = 8,
    ) -> None:
        super().__init__()
        channels = list(channels or [16, 32, 64, 64])
        self.cnn, prev = conv_stack(in_channels, channels)
        self.frame = nn.Sequential(nn.Linear(prev, frame_dim), nn.ReLU(inplace=True))
        self.aggregate = make_aggregator(aggregation, frame_dim, hidden, clusters)
        self.embed = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(int(self.aggregate.out_dim), embedding_dim),
            nn.ReLU(inplace=True),
        )
        self.frame_dim = frame_dim
        self.heads = Heads(embedding_dim, n_classes, target)
        self._register_load_state_dict_pre_hook(_older_names)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        b, k = x.shape[:2]
        mask = mask.bool()
        flat_mask = mask.reshape(b * k)
        frames = x.reshape(b * k, *x.shape[2:])
        feats = x.new_zeros(b * k, self.frame_dim)
        if bool(flat_mask.any()):
            valid = self.frame(self.cnn(frames[flat_mask]).mean(dim=(2, 3)))
            feats = feats.index_put((flat_mask.nonzero().squeeze(1),), valid.to(feats.dtype))
        pooled = self.aggregate(feats.reshape(b, k, self.frame_dim), mask)
        has = mask.any(dim=1).to(pooled.dtype).unsqueeze(1)
        return self.heads(self.embed(pooled) * has)


def _older_names(state: dict[str, Any], prefix: str, *args: Any) -> None:
    """Models saved before the aggregation was configurable named the GRU ``gru``."""
    for key in [k for k in state if k.startswith(prefix + "gru.")]:
        state[prefix + "aggregate." + key[len(prefix) :]] = state.pop(key)
