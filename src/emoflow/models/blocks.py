"""The layers several branch models share: the output heads and the conv stack."""

from __future__ import annotations

import torch
from torch import nn

TARGETS = ("categorical", "dimensional", "both")


class Heads(nn.Module):
    """Output heads on an embedding: class logits and/or tanh valence/arousal."""

    def __init__(self, embedding_dim: int, n_classes: int, target: str) -> None:
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}")
        self.target = target
        self.cat = nn.Linear(embedding_dim, n_classes) if target != "dimensional" else None
        self.dim = nn.Linear(embedding_dim, 2) if target != "categorical" else None

    def forward(self, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"embedding": embedding}
        if self.cat is not None:
            out["logits"] = self.cat(embedding)
        if self.dim is not None:
            out["va"] = torch.tanh(self.dim(embedding))
        return out


def conv_stack(in_channels: int, channels: list[int]) -> tuple[nn.Sequential, int]:
    """Blocks of conv 3x3 (no bias), BatchNorm, ReLU and max-pool 2x2 (ceil), one per width of
    ``channels``; and the last width. (Parameter names ``<i>.weight`` as the models always had.)"""
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
    return nn.Sequential(*layers), prev
