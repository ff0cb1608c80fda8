"""Train one branch model for one (fold, seed): early stopping, per-epoch checkpoints, resume.

``run_training`` writes into ``out_dir`` (each file atomically):

- ``model.pt``: the model bundle of the best epoch (see :mod:`emoflow.models.bundle`);
- ``history.csv``: ``epoch, train_loss, val_loss, val_metric`` (no times, so reruns are
  byte-identical);
- ``predictions.parquet``: one row per train, val, test (and unlabelled) clip this branch
  has features for (the contract read by fusion and evaluation; see
  :func:`emoflow.training.outputs.write_predictions`).

While it runs, ``out_dir/checkpoint.pt`` holds the model, optimizer, scaler, RNG states,
history and early-stopping state after every finished epoch. A run started again after a kill
resumes from it and gives byte-identical outputs to an uninterrupted run: each epoch reseeds
torch, numpy and ``random`` and the shuffle from (seed, epoch), so nothing depends on how many
epochs ran in this process. The checkpoint is tied to its parameters by a hash and removed
once the outputs are written.

Validation and selection: the validation metric is UAR (unweighted average recall) for a
categorical target, the mean CCC of valence and arousal for a dimensional one, and their mean
for ``both``; the best epoch has the highest metric (ties: lower validation loss); training
stops after ``patience`` epochs without improvement. Without validation clips the last epoch
is kept. The validation loss is computed on clip-level outputs.

Both branches train on windows of the one time grid (audio: log-mel windows; visual: the face frames
inside each window) and score a clip by pooling its window outputs with
:func:`emoflow.models.pooling.pool_windows`: the mean of the logits (softmax taken after the mean),
of the valence/arousal outputs and of the embeddings; ``predict`` pools the same way.

Device: CUDA when available and ``train.device`` is ``auto`` or ``cuda`` (then mixed precision
with ``torch.autocast`` when ``train.mixed_precision``: bfloat16 where supported, else float16
with a gradient scaler); otherwise the CPU, never with autocast.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from emoflow import __version__
from emoflow.branches import BRANCH_STAGE
from emoflow.config import stable_hash
from emoflow.errors import EmoflowError
from emoflow.labels.track_table import TRACKS_FILE, track_classes
from emoflow.models.arch import build_branch_model, model_arch
from emoflow.models.audio import load_torchvision_resnet18
from emoflow.models.bundle import save_bundle
from emoflow.models.losses import branch_loss, class_weights
from emoflow.protocols.folds import class_names
from emoflow.storage.atomic import write_bytes, write_text
from emoflow.storage.shards import open_shards
from emoflow.study import class_list
from emoflow.training.augment import augment_record, augmented
from emoflow.training.branch_data import FRAME_VECTOR_BRANCHES, BranchData, branch_data, fold_roles
from emoflow.training.checkpoint import (
    rng_state,
    set_rng_state,
    state_copy,
    to_cpu,
    torch_save_bytes,
)
from emoflow.training.evaluate import clip_loss, evaluate, forward, val_metric
from emoflow.training.loaders import epoch_seed, make_loader
from emoflow.training.outputs import history_csv, write_predictions
from emoflow.training.runtime import (
    autocast,
    seed_everything,
    select_device,
    setup_runtime,
    stop_hook,
)
from emoflow.training.targets import track_targets


def _log(message: str) -> None:
    logging.getLogger("emoflow.training.train").info("%s", message)


# --------------------------------------------------------------------------- training


def selection_key(metric: float, loss: float) -> tuple[float, float]:
    """Higher is better: the validation metric, then the negated validation loss."""
    return (
        -math.inf if math.isnan(metric) else metric,
        -math.inf if math.isnan(loss) else -loss,
    )


def new_state() -> dict[str, Any]:
    """The training state a run starts from (and checkpoints after each epoch)."""
    return {"epoch": 0, "history": [], "best_state": None, "best_metric": float("nan"),
            "best_loss": float("nan"), "bad_epochs": 0, "stopped": False}  # fmt: skip


def _resume(path: Path, run_key: str, model: nn.Module, optimizer: Any, scaler: Any) -> dict:
    """The state of ``path``'s checkpoint when it was written by the same run (its model,
    optimizer, scaler and RNG states restored), else a new state."""
    if path.exists():
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("run_key") == run_key:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scaler.load_state_dict(ckpt["scaler"])
            set_rng_state(ckpt["rng"])
            _log(f"resumed from {path} after epoch {ckpt['state']['epoch']}")
            return ckpt["state"]
        _log(f"ignoring {path}: written with other parameters")
    return new_state()


@dataclass
class Step:
    """What one optimisation step needs besides the batch."""

    model: nn.Module
    branch: str
    optimizer: Any
    scaler: Any
    device: torch.device
    norm: dict[str, Any]
    amp_dtype: torch.dtype | None
    target: str
    weight: torch.Tensor | None


def train_epoch(step: Step, loader: Any) -> float:
    """One pass over ``loader``; the mean training loss per item."""
    step.model.train()
    total, seen = 0.0, 0
    for batch in loader:
        step.optimizer.zero_grad(set_to_none=True)
        with autocast(step.device, step.amp_dtype):
            out = forward(step.model, step.branch, batch, step.device, step.norm)
        y, va = batch[-2].to(step.device), batch[-1].to(step.device)
        out = {k: v.float() for k, v in out.items()}
        loss = branch_loss(out, y, va, step.target, step.weight)
        step.scaler.scale(loss).backward()
        step.scaler.step(step.optimizer)
        step.scaler.update()
        total += float(loss.detach()) * len(y)
        seen += len(y)
    return total / max(seen, 1)


def record_epoch(state: dict, model: nn.Module, row: dict[str, float], has_val: bool,
                 patience: int) -> bool:  # fmt: skip
    """Add an epoch's ``row`` (epoch, losses, val_metric) to ``state``; keep the model when it
    is the best so far (or there is no validation part); return whether it was."""
    current = selection_key(row["val_metric"], row["val_loss"])
    best = selection_key(state["best_metric"], state["best_loss"])
    improved = state["best_state"] is None or not has_val or current > best
    if improved:
        state["best_state"] = state_copy(model)
        state["best_metric"], state["best_loss"] = row["val_metric"], row["val_loss"]
        state["bad_epochs"] = 0
    else:
        state["bad_epochs"] += 1
    state["history"].append(row)
    state["epoch"] = row["epoch"]
    state["stopped"] = state["bad_epochs"] >= patience
    return improved


def fit_epochs(step: Step, data: BranchData, state: dict, tcfg: dict[str, Any], seed: int,
               ckpt_path: Path, run_key: str) -> None:  # fmt: skip
    """Train from ``state``'s epoch until ``train.epochs`` or early stopping (``patience``
    epochs without a better validation score), writing a checkpoint after each epoch."""
    epochs, patience = int(tcfg["epochs"]), int(tcfg["patience"])
    batch_size = int(tcfg["batch_size"])
    weight = step.weight.cpu() if step.weight is not None else None
    while state["epoch"] < epochs and not state["stopped"]:
        epoch = state["epoch"]
        seed_everything(epoch_seed(seed, epoch))
        if hasattr(data.train, "set_epoch"):  # augmentation: drawn per (seed, epoch, clip)
            data.train.set_epoch(epoch)
        loader = make_loader(data.train, batch_size, shuffle=True, seed=seed, epoch=epoch,
                             num_workers=int(tcfg.get("num_workers", 0)),
                             pin_memory=step.device.type == "cuda")  # fmt: skip
        train_loss = train_epoch(step, loader)
        val_out = evaluate(step.model, step.branch, data.evals["val"], batch_size, step.device,
                           data.norm, step.amp_dtype)  # fmt: skip
        row = {"epoch": epoch + 1, "train_loss": train_loss,
               "val_loss": clip_loss(val_out, step.target, weight),
               "val_metric": val_metric(val_out, step.target)}  # fmt: skip
        improved = record_epoch(state, step.model, row, bool(data.evals["val"].clip_ids),
                                patience)  # fmt: skip
        _log(
            f"epoch {epoch + 1}/{epochs} train_loss {train_loss:.4f} val_loss "
            f"{row['val_loss']:.4f} val_metric {row['val_metric']:.4f}{' *' if improved else ''}"
        )
        ckpt = {"run_key": run_key, "model": state_copy(step.model),
                "optimizer": to_cpu(step.optimizer.state_dict()),
                "scaler": step.scaler.state_dict(), "rng": rng_state(), "state": state}  # fmt: skip
        write_bytes(ckpt_path, torch_save_bytes(ckpt))
        stop_hook(epoch + 1)
    if state["stopped"]:
        _log(f"early stop after epoch {state['epoch']} (patience {patience})")


def build_model(
    config: dict[str, Any], branch: str, n_classes: int, data: BranchData, spec: dict[str, Any]
) -> tuple[dict[str, Any], nn.Module]:
    """The branch model's constructor kwargs (as the bundle stores them) and the model, with
    pretrained ResNet-18 weights when the config names them."""
    tcfg = config["train"]
    layers = spec["n_layers"] if spec.get("layer") == "weighted" else 1
    frame_vectors = branch in FRAME_VECTOR_BRANCHES
    in_dim = len(data.norm["mean"]) if frame_vectors else spec.get("n_features")
    arch = model_arch(
        branch, tcfg, n_classes, in_dim, layers,
        config.get("face_cnn"), config.get("au"), config.get("visual"),
    )  # fmt: skip
    model = build_branch_model(branch, arch)
    if arch["name"] == "resnet18" and tcfg.get("resnet_weights"):
        load_torchvision_resnet18(model.backbone, tcfg["resnet_weights"])
    return arch, model


def run_training(
    config: dict[str, Any],
    branch: str,
    fold: int,
    seed: int,
    manifest_path: Path,
    folds_path: Path | pd.DataFrame,
    shard_paths: list[Path],
    out_dir: Path,
    inner: int | None = None,
) -> None:
    """Train ``branch`` (see :mod:`emoflow.branches`) on ``fold`` with ``seed``; write outputs.

    ``config`` is a validated config (defaults filled); ``folds_path`` is folds.parquet or the
    fold table itself. The ``train``, ``val``, ``test`` and ``unlabelled`` clips are
    predicted. Resumes from ``out_dir/checkpoint.pt`` when it was written with the same
    parameters. ``inner``: the fold table is inner fold ``inner`` of ``fold`` (recorded in the
    predictions' metadata).
    """
    if branch not in BRANCH_STAGE:
        raise EmoflowError(f"unknown branch {branch!r} ({', '.join(BRANCH_STAGE)})")
    tcfg = dict(config["train"])
    target = tcfg.get("target", "categorical")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    setup_runtime(tcfg, seed)
    device = select_device(tcfg)
    amp_dtype = None
    if device.type == "cuda" and tcfg.get("mixed_precision", True):
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    manifest = pd.read_parquet(manifest_path)
    folds = folds_path if isinstance(folds_path, pd.DataFrame) else pd.read_parquet(folds_path)
    folds = folds[folds["fold"] == fold]
    if folds.empty:
        raise EmoflowError(f"fold {fold} is not in the fold table")
    classes = [] if target == "dimensional" else (
        class_names(manifest, class_list(config))
        or track_classes(Path(manifest_path).parent / TRACKS_FILE)
    )  # fmt: skip
    shards = open_shards([Path(p) for p in shard_paths], BRANCH_STAGE[branch])
    targets = track_targets(config, manifest, Path(manifest_path).parent, shards, classes)
    roles, parts = fold_roles(folds, shards, targets, target)
    if not roles["train"]:
        raise EmoflowError(f"fold {fold}: no training clip has {branch} features")
    where = f"fold {fold}" + (f" inner fold {inner}" if inner is not None else "")
    _log(
        f"{branch} {where} seed {seed}: {len(roles['train'])} train, "
        f"{len(roles['val'])} val, {len(roles['test'])} test clips on {device}"
    )
    data = branch_data(config, branch, shards, roles, targets, parts)
    # training items only: data.evals (val, test, the train part's predictions) stay as stored
    aug = augment_record(config, branch)
    data.train = augmented(config, branch, data.train, seed, shards.spec, manifest)
    if aug:
        _log(f"augmenting {branch} training items: {', '.join(aug)}")

    arch, model = build_model(config, branch, len(classes), data, shards.spec)
    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=float(tcfg["lr"]), weight_decay=float(tcfg["weight_decay"])
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    weight = None
    if tcfg.get("class_weights") and target != "dimensional":
        labels = data.train.labels
        weight = class_weights(np.bincount(labels[labels >= 0], minlength=len(classes)).tolist())

    run_key = stable_hash({"train": tcfg, "classes": classes, "branch": branch, "fold": fold,
                           "seed": seed, "roles": roles, "spec": shards.spec,
                           "version": __version__, "arch": arch,
                           "features": data.features,
                           **({"augment": aug} if aug else {})})  # fmt: skip
    ckpt_path = out_dir / "checkpoint.pt"
    state = _resume(ckpt_path, run_key, model, optimizer, scaler)
    step = Step(model, branch, optimizer, scaler, device, data.norm, amp_dtype, target,
                weight.to(device) if weight is not None else None)  # fmt: skip
    fit_epochs(step, data, state, tcfg, seed, ckpt_path, run_key)
    batch_size = int(tcfg["batch_size"])
    model.load_state_dict(state["best_state"])
    outputs = {p: evaluate(model, branch, data.evals[p], batch_size, device, data.norm,
                           amp_dtype) for p in parts}  # fmt: skip
    meta = {"classes": classes, "branch": branch, "fold": fold, "seed": seed, "target": target}
    if inner is not None:
        meta["inner"] = inner
    write_predictions(out_dir / "predictions.parquet", outputs, meta)
    write_text(out_dir / "history.csv", history_csv(state["history"]))
    save_bundle(out_dir / "model.pt", branch=branch, arch=arch,
                state_dict=copy.deepcopy(state["best_state"]), classes=classes, target=target,
                norm=data.bundle_norm, spec=shards.spec,
                train_config={**tcfg, "branch": branch, "fold": fold, "seed": seed,
                              **({"augment": aug} if aug else {})})  # fmt: skip
    ckpt_path.unlink(missing_ok=True)
    shards.close()
    _log(f"wrote {out_dir}/model.pt, predictions.parquet, history.csv")
