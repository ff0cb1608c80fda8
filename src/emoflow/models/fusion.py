"""Feature-level fusion: a small MLP on the concatenated audio and visual embeddings.

It is trained on the validation clips that have both modalities (full batch, Adam, a fixed
number of epochs, seeded without touching the global random state), so two runs give
bitwise-identical parameters on the same machine.

:func:`fusion_mlp_to_json` gives everything needed to rebuild a fitted MLP (constructor
arguments and the state as nested lists of float32 values, which JSON holds exactly) and
:func:`fusion_mlp_from_json` rebuilds it, so the fusion can be re-applied at prediction time.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import nn

from emoflow.models.losses import ccc_loss, cross_entropy


class FusionMLP(nn.Module):
    """Standardise the input, one hidden ReLU layer, then class logits and/or tanh (v, a)."""

    def __init__(self, in_dim: int, n_classes: int, target: str, hidden: int = 32) -> None:
        super().__init__()
        if target not in ("categorical", "dimensional", "both"):
            raise ValueError(f"unknown target {target!r}")
        self.in_dim, self.n_classes, self.target, self.hidden = in_dim, n_classes, target, hidden
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        self.body = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.cat = nn.Linear(hidden, n_classes) if target != "dimensional" else None
        self.dim = nn.Linear(hidden, 2) if target != "categorical" else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.body((x - self.mean) / self.scale)
        out: dict[str, torch.Tensor] = {}
        if self.cat is not None:
            out["logits"] = self.cat(h)
        if self.dim is not None:
            out["va"] = torch.tanh(self.dim(h))
        return out


def train_fusion_mlp(
    x: np.ndarray,
    y: np.ndarray,
    va: np.ndarray,
    *,
    n_classes: int,
    target: str,
    seed: int,
    epochs: int = 200,
    lr: float = 0.01,
    weight_decay: float = 1e-3,
    hidden: int = 32,
) -> FusionMLP:
    """Fit a :class:`FusionMLP` on ``x`` (N, D) with classes ``y`` (N,, -1 unknown) and
    ``va`` (N, 2; NaN unknown). Deterministic for a given ``seed``."""
    x_t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    y_t = torch.as_tensor(np.asarray(y, dtype=np.int64))
    va_t = torch.as_tensor(np.asarray(va, dtype=np.float32).reshape(len(x), 2))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FusionMLP(x_t.shape[1], n_classes, target, hidden=hidden)
    if len(x_t):
        model.mean.copy_(x_t.mean(dim=0))
        std = x_t.std(dim=0, unbiased=False)
        model.scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    if len(x_t) == 0:
        return model.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster and thread-count independent
    try:
        _fit(model, optimiser, x_t, y_t, va_t, epochs)
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _fit(
    model: FusionMLP,
    optimiser: torch.optim.Optimizer,
    x_t: torch.Tensor,
    y_t: torch.Tensor,
    va_t: torch.Tensor,
    epochs: int,
) -> None:
    for _ in range(epochs):
        optimiser.zero_grad()
        out = model(x_t)
        loss = x_t.sum() * 0.0
        if "logits" in out:
            loss = loss + cross_entropy(out["logits"], y_t)
        if "va" in out:
            loss = loss + ccc_loss(out["va"], va_t)
        if not loss.requires_grad:
            break
        loss.backward()
        optimiser.step()


@torch.no_grad()
def predict_fusion_mlp(model: FusionMLP, x: np.ndarray) -> dict[str, np.ndarray]:
    """``prob`` (N, C softmax) and/or ``va`` (N, 2) as float32 numpy arrays."""
    out = model(torch.as_tensor(np.asarray(x, dtype=np.float32)))
    result: dict[str, np.ndarray] = {}
    if "logits" in out:
        result["prob"] = torch.softmax(out["logits"], dim=1).numpy().astype(np.float32)
    if "va" in out:
        result["va"] = out["va"].numpy().astype(np.float32)
    return result


def state_hash(model: nn.Module) -> str:
    """sha256 of the model's state (names, shapes, dtypes and bytes, in sorted name order)."""
    h = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        h.update(tensor.numpy().tobytes())
    return h.hexdigest()


def fusion_mlp_to_json(model: FusionMLP) -> dict[str, Any]:
    """``kwargs`` (the constructor arguments) and ``state`` (each state-dict tensor as nested
    lists of its float32 values) of ``model``: plain JSON that rebuilds it exactly."""
    state = model.state_dict()
    return {
        "kwargs": {
            "in_dim": int(model.in_dim),
            "n_classes": int(model.n_classes),
            "target": str(model.target),
            "hidden": int(model.hidden),
        },
        "state": {
            name: state[name].detach().cpu().to(torch.float32).numpy().tolist()
            for name in sorted(state)
        },
    }


def fusion_mlp_from_json(entry: dict[str, Any]) -> FusionMLP:
    """Rebuild the :class:`FusionMLP` stored by :func:`fusion_mlp_to_json` (``entry`` may hold
    more keys, such as fuse.py's ``fitted``/``n_fit``). When ``entry`` has ``state_sha256``
    the rebuilt parameters must hash to it (ValueError otherwise)."""
    if "kwargs" not in entry or "state" not in entry:
        raise ValueError("the fusion entry stores no MLP parameters ('kwargs' and 'state')")
    kwargs = entry["kwargs"]
    model = FusionMLP(
        int(kwargs["in_dim"]),
        int(kwargs["n_classes"]),
        str(kwargs["target"]),
        hidden=int(kwargs["hidden"]),
    )
    state = {
        name: torch.from_numpy(np.asarray(value, dtype=np.float32))
        for name, value in entry["state"].items()
    }
    model.load_state_dict(state, strict=True)
    model.eval()
    expected = entry.get("state_sha256")
    if expected is not None and state_hash(model) != expected:
        raise ValueError("the rebuilt fusion MLP does not match the stored state_sha256")
    return model
