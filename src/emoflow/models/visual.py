"""Visual branch: a per-frame CNN, then a GRU over the frames that have a face.

Input ``x`` is ``(B, K, C, S, S)`` normalised face crops and ``mask`` ``(B, K)`` (True = face
found). Frames without a face never enter the CNN (so they cannot touch BatchNorm statistics
either); the frames with a face are moved to the front of the sequence in their time order, a
unidirectional GRU runs over them, and the clip vector is the mean of the GRU outputs over those
frames. The output therefore does not depend on the content of masked frames. A clip without any
face frame gets a zero embedding (its head outputs are the heads' biases).
"""

from __future__ import annotations

import torch
from torch import nn

from emoflow.models import Heads


class VisualCNNGRU(nn.Module):
    """Per-frame CNN (conv, BatchNorm, ReLU, max-pool blocks) + masked GRU + heads."""

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
    ) -> None:
        super().__init__()
        channels = list(channels or [16, 32, 64, 64])
        layers: list[nn.Module] = []
        prev = in_channels
        for width in channels:
            layers += [
                nn.Conv2d(prev, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            prev = width
        self.cnn = nn.Sequential(*layers)
        self.frame = nn.Sequential(nn.Linear(prev, frame_dim), nn.ReLU(inplace=True))
        self.gru = nn.GRU(frame_dim, hidden, batch_first=True)
        self.embed = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(hidden, embedding_dim), nn.ReLU(inplace=True)
        )
        self.frame_dim = frame_dim
        self.heads = Heads(embedding_dim, n_classes, target)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        b, k = x.shape[:2]
        mask = mask.bool()
        flat_mask = mask.reshape(b * k)
        frames = x.reshape(b * k, *x.shape[2:])
        feats = x.new_zeros(b * k, self.frame_dim)
        if bool(flat_mask.any()):
            valid = self.frame(self.cnn(frames[flat_mask]).mean(dim=(2, 3)))
            feats = feats.index_put((flat_mask.nonzero().squeeze(1),), valid.to(feats.dtype))
        feats = feats.reshape(b, k, self.frame_dim)
        # valid frames first, each group in time order (a stable sort on "no face")
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
        feats = torch.gather(feats, 1, order.unsqueeze(-1).expand(-1, -1, self.frame_dim))
        outputs, _ = self.gru(feats)  # causal: outputs before the padding ignore it
        lengths = mask.sum(dim=1)
        steps = torch.arange(k, device=x.device).unsqueeze(0)
        weights = (steps < lengths.unsqueeze(1)).to(outputs.dtype).unsqueeze(-1)
        pooled = (outputs * weights).sum(dim=1) / lengths.clamp(min=1).unsqueeze(1).to(
            outputs.dtype
        )
        embedding = self.embed(pooled) * (lengths > 0).to(outputs.dtype).unsqueeze(1)
        return self.heads(embedding)
