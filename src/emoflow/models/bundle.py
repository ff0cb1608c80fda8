"""The model bundle (``model.pt``): a trained branch model and everything needed to use it.

Format ``emoflow-model``, version 1. The file is a dict written with ``torch.save`` that holds
only tensors, str, int, float, bool, None, lists and dicts, so it loads with
``torch.load(path, map_location="cpu", weights_only=True)`` (no pickled code runs)::

    format          "emoflow-model" format_version  1 branch          a branch of emoflow.branches
    ("audio", "visual", "face_cnn", ...) arch            constructor kwargs of the model, with
    "name" ("vgg", "resnet18", "cnn_gru") state_dict      parameter and buffer tensors (CPU) classes
    class names in logit order ([] for a dimensional-only model) target          "categorical" |
    "dimensional" | "both" norm            input normalisation: {"mean": tensor, "std": tensor} per
    mel (audio) or per channel (visual); visual adds {"size": int, "gray": bool} spec            the
    feature extraction spec of the shards the model was trained on; a prediction must extract
    features with exactly this spec emoflow_version the package version that wrote it train_config
    the ``train`` section of the config (plus branch, fold, seed)

A reader rejects another ``format`` or a newer ``format_version`` with a clear error.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emoflow import __version__
from emoflow.errors import SpecMismatchError
from emoflow.storage.atomic import write_bytes

FORMAT = "emoflow-model"
FORMAT_VERSION = 1
_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _plain(obj: Any, where: str = "bundle") -> Any:
    """Copy ``obj`` into plain containers (dict, list), rejecting anything else."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, _PLAIN):
        return obj
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is not a string")
            out[key] = _plain(value, f"{where}.{key}")
        return out
    if isinstance(obj, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where}: {type(obj).__name__} cannot go into a model bundle")


def save_bundle(
    path: str | Path,
    *,
    branch: str,
    arch: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    classes: list[str],
    target: str,
    norm: dict[str, Any],
    spec: dict[str, Any],
    train_config: dict[str, Any],
) -> None:
    """Write a model bundle atomically (see the module docstring for the format)."""
    bundle = _plain(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "branch": branch,
            "arch": arch,
            "state_dict": dict(state_dict),
            "classes": list(classes),
            "target": target,
            "norm": norm,
            "spec": spec,
            "emoflow_version": __version__,
            "train_config": train_config,
        }
    )
    buffer = io.BytesIO()  # in memory: the zip's archive name must not be the temp file's
    torch.save(bundle, buffer)
    write_bytes(path, buffer.getvalue())


def load_bundle(path: str | Path) -> dict[str, Any]:
    """Read a model bundle with ``weights_only=True``; reject other formats or versions."""
    path = Path(path)
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pickle errors, zip errors, unsafe globals
        raise SpecMismatchError(f"{path} is not a readable emoflow model bundle: {exc}") from exc
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise SpecMismatchError(f"{path} is not an emoflow model bundle (format {FORMAT!r})")
    version = bundle.get("format_version")
    if version != FORMAT_VERSION:
        raise SpecMismatchError(
            f"{path} has model bundle format version {version!r}; this emoflow "
            f"({__version__}) reads version {FORMAT_VERSION}"
        )
    return bundle


def build_model(bundle: dict[str, Any]) -> nn.Module:
    """The bundle's model with its weights loaded, in eval mode, on the CPU."""
    from emoflow.models.arch import build_branch_model

    model = build_branch_model(bundle["branch"], bundle["arch"])
    model.load_state_dict(bundle["state_dict"], strict=True)
    return model.eval()
