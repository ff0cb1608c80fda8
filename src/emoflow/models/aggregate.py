"""Temporal aggregation of per-frame embeddings under a mask: ``gru``, ``netvlad`` or ``mean``.

Every aggregator takes ``feats (B, K, D)`` and ``mask (B, K)`` (True = a frame with a face)
and returns ``(B, out_dim)``. Masked frames never contribute: their content cannot change the
output. A row without any valid frame gives zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

AGGREGATIONS = ("gru", "netvlad", "mean")


def _weights(mask: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, K, 1)`` 0/1 weights and ``(B, 1)`` counts (at least 1)."""
    w = mask.to(dtype).unsqueeze(-1)
    return w, w.sum(dim=1).clamp(min=1.0)


class MaskedMean(nn.Module):
    """The mean of the valid frames' embeddings."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w, n = _weights(mask, feats.dtype)
        return (feats * w).sum(dim=1) / n


class MaskedGRU(nn.Module):
    """A GRU over the valid frames (moved to the front in time order), mean of its outputs."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.gru = nn.GRU(dim, hidden, batch_first=True)
        self.out_dim = hidden

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        feats = feats * mask.to(feats.dtype).unsqueeze(-1)
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
        feats = torch.gather(feats, 1, order.unsqueeze(-1).expand(-1, -1, feats.shape[-1]))
        outputs, _ = self.gru(feats)  # causal: outputs before the padding ignore it
        lengths = mask.sum(dim=1)
        steps = torch.arange(feats.shape[1], device=feats.device).unsqueeze(0)
        w = (steps < lengths.unsqueeze(1)).to(outputs.dtype).unsqueeze(-1)
        return (outputs * w).sum(dim=1) / lengths.clamp(min=1).unsqueeze(1).to(outputs.dtype)


class NetVLAD(nn.Module):
    """NetVLAD (Arandjelović et al. 2016) over the valid frames: soft-assign each embedding to
    ``clusters`` learned centres, sum the residuals per centre, intra-normalise each centre's
    vector, flatten and L2-normalise (``clusters * dim`` outputs), as in the AFEW system that
    aggregates face-CNN embeddings with NetVLAD before a fully connected layer."""

    def __init__(self, dim: int, clusters: int = 8) -> None:
        super().__init__()
        self.assign = nn.Linear(dim, clusters)
        self.centroids = nn.Parameter(torch.randn(clusters, dim) * 0.1)
        self.out_dim = clusters * dim

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w, _ = _weights(mask, feats.dtype)
        a = torch.softmax(self.assign(feats), dim=-1) * w  # (B, K, C)
        residual = feats.unsqueeze(2) - self.centroids.unsqueeze(0).unsqueeze(0)  # (B, K, C, D)
        vlad = (a.unsqueeze(-1) * residual).sum(dim=1)  # (B, C, D)
        vlad = F.normalize(vlad, dim=-1).flatten(1)
        return F.normalize(vlad, dim=-1)


def make_aggregator(kind: str, dim: int, hidden: int = 64, clusters: int = 8) -> nn.Module:
    """The aggregator ``kind`` (:data:`AGGREGATIONS`) over ``dim``-wide frame embeddings; its
    ``out_dim`` attribute is the output width."""
    if kind == "gru":
        return MaskedGRU(dim, hidden)
    if kind == "netvlad":
        return NetVLAD(dim, clusters)
    if kind == "mean":
        return MaskedMean(dim)
    raise ValueError(f"unknown aggregation {kind!r} ({', '.join(AGGREGATIONS)})")
