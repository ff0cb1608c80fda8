"""The constructor kwargs of each branch model (``name`` plus its arguments), as training
builds them and the bundle stores them, and :func:`build_branch_model`, which rebuilds a model
from them."""

from __future__ import annotations

from typing import Any

from torch import nn

from emoflow.branches import BRANCH_STAGE
from emoflow.errors import EmoflowError
from emoflow.models.audio import AudioResNet18, AudioVGG
from emoflow.models.frames import FrameAggregation
from emoflow.models.vectors import WindowMLP
from emoflow.models.visual import VisualCNNGRU
from emoflow.storage.shards import VECTOR_KINDS

GRAY_FACES = True  # the visual branch sees grey face crops


def model_arch(
    branch: str,
    train_cfg: dict[str, Any],
    n_classes: int,
    in_dim: int | None = None,
    layers: int | None = None,
    face_cnn: dict[str, Any] | None = None,
    au: dict[str, Any] | None = None,
    visual: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The constructor kwargs (with ``name``) of a branch model, as stored in the bundle
    (``in_dim``: the width of a window vector (window-vector MLP) or of a frame's vector (au,
    face_cnn); ``layers``: encoder layers stored side by side in it, to be weighted;
    ``face_cnn``, ``au``, ``visual``: the config's sections of those branches)."""
    common = {
        "n_classes": n_classes,
        "target": train_cfg.get("target", "categorical"),
        "embedding_dim": int(train_cfg.get("embedding_dim", 64)),
        "dropout": 0.3,
    }
    if branch == "audio":
        if train_cfg.get("audio_model", "vgg") == "resnet18":
            return {"name": "resnet18", **common, "in_channels": 1}
        return {"name": "vgg", **common, "channels": [16, 32, 64, 128], "in_channels": 1}
    if branch in VECTOR_KINDS:
        return {"name": "mlp", **common, "in_dim": int(in_dim or 0), "hidden": 128,
                "layers": int(layers or 1)}  # fmt: skip
    if branch == "visual":
        return {
            "name": "cnn_gru",
            **common,
            "in_channels": 1 if GRAY_FACES else 3,
            "channels": [16, 32, 64, 64],
            "frame_dim": 64,
            "hidden": 64,
            **aggregation_kwargs(visual),
        }
    if branch in ("face_cnn", "au"):
        cfg = face_cnn if branch == "face_cnn" else au
        return {"name": "frame_aggregate", **common, "in_dim": int(in_dim or 0), "frame_dim": 64,
                "hidden": 64, **aggregation_kwargs(cfg)}  # fmt: skip
    raise EmoflowError(f"unknown branch {branch!r} ({', '.join(BRANCH_STAGE)})")


def aggregation_kwargs(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """A frame branch's temporal aggregation from its config section (default: gru)."""
    cfg = cfg or {}
    return {"aggregation": str(cfg.get("aggregation", "gru")),
            "clusters": int(cfg.get("clusters", 8))}  # fmt: skip


def build_branch_model(branch: str, arch: dict[str, Any]) -> nn.Module:
    """Construct a branch model from its ``arch`` dict (``name`` plus constructor kwargs)."""
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
