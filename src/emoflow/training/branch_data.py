"""What a training run of one branch and fold learns from: the clips of each role, and the
branch's datasets and normalisation (fitted on the training clips only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from emoflow.models.arch import GRAY_FACES
from emoflow.storage.shards import VECTOR_KINDS
from emoflow.training.datasets import AudioClips, AudioWindows, FaceClips, FaceWindows
from emoflow.training.frame_inputs import fit_frame_norm
from emoflow.training.normalisation import fit_audio_norm, fit_face_norm
from emoflow.training.targets import Targets

# the parts a run predicts (unlabelled: if any); train: the clips it learned from, whose
# embeddings feature-level fusion is fitted on (emoflow.fusion.methods)
EVAL_PARTS = ("train", "val", "test", "unlabelled")
FRAME_VECTOR_BRANCHES = (
    "au",
    "face_cnn",
)  # one vector per face frame (emoflow.training.frame_inputs)


def fold_roles(
    folds: pd.DataFrame, shards: Any, targets: Targets, target: str
) -> tuple[dict[str, list[str]], list[str]]:
    """The sorted clip ids of each role of one fold that have features and targets (training
    clips: usable targets), and the parts to predict (``unlabelled`` only when it has clips)."""
    roles: dict[str, list[str]] = {}
    for role in EVAL_PARTS:
        ids = sorted(folds.loc[folds["role"] == role, "clip_id"].astype(str))
        roles[role] = [c for c in ids if c in shards and c in targets]
    parts = [p for p in EVAL_PARTS if p != "unlabelled" or roles[p]]
    roles["train"] = [c for c in roles["train"] if targets.usable(c, target)]
    return roles, parts


@dataclass
class BranchData:
    """A branch's training dataset, evaluation datasets per part and normalisation."""

    train: Any
    evals: dict[str, Any]
    norm: dict[str, Any]  # what model_inputs standardises with
    bundle_norm: dict[str, Any]  # what the bundle keeps (norm + the input's settings)
    features: str | None  # face_cnn: the encoder outputs it learns from


def branch_data(
    config: dict[str, Any],
    branch: str,
    shards: Any,
    roles: dict[str, list[str]],
    targets: Targets,
    parts: list[str],
) -> BranchData:
    """The datasets of ``branch`` for these roles (see :mod:`emoflow.training.datasets`)."""
    size = int(config["train"].get("visual_size", 64))
    features = config["face_cnn"]["features"] if branch == "face_cnn" else None
    columns = tuple(shards.spec["fields"][features]) if features else None
    if branch == "audio" or branch in VECTOR_KINDS:
        field = "logmel" if branch == "audio" else "vectors"
        norm = fit_audio_norm(shards, roles["train"], field)
        train = AudioWindows(shards, roles["train"], targets, field=field)
        evals = {p: AudioClips(shards, roles[p], targets, field=field) for p in parts}
        return BranchData(train, evals, norm, dict(norm), None)
    if branch in FRAME_VECTOR_BRANCHES:
        norm = fit_frame_norm(branch, shards, roles["train"], columns)
        kw: dict[str, Any] = {"inputs": branch, "columns": columns}
        train = FaceWindows(shards, roles["train"], targets, size, **kw)
        evals = {p: FaceClips(shards, roles[p], targets, size, **kw) for p in parts}
        bundle_norm = {**norm, **({"features": features} if features else {})}
        return BranchData(train, evals, norm, bundle_norm, features)
    norm = fit_face_norm(shards, roles["train"], size, GRAY_FACES)
    train = FaceWindows(shards, roles["train"], targets, size, GRAY_FACES)
    evals = {p: FaceClips(shards, roles[p], targets, size, GRAY_FACES) for p in parts}
    return BranchData(train, evals, norm, {**norm, "size": size, "gray": GRAY_FACES}, None)
