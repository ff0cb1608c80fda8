"""The deployable model (``results/<name>/model``): how ``bundle.mode`` builds it.

- ``refit`` (default): each branch is retrained on every labelled clip of the protocol for the
  cross-validated epoch count (the median over folds and seeds of the epoch that early stopping
  chose), and fusion is refitted on the pooled out-of-fold test predictions of the first seed
  (each clip predicted by the fold model that never saw its speaker).
- ``ensemble``: every fold's first-seed branch models; ``predict`` averages their window outputs
  (each model with its own input normalisation); fusion refitted as for ``refit``.
- ``fold0``: the first fold's and first seed's branch models and fusion weights, as evaluated.

``bundle.json`` records the mode, the epochs and the clips it was fitted on; ``predict`` prints
the mode.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoflow.branches import selected_branches
from emoflow.errors import EmoflowError
from emoflow.paths import Layout
from emoflow.storage.atomic import write_text
from emoflow.study import corpus_of


def best_epoch(history_csv: Path) -> int:
    """The epoch early stopping kept: the first with the best
    :func:`emoflow.training.train.selection_key` (validation metric, then lower loss)."""
    from emoflow.training.train import selection_key

    table = pd.read_csv(history_csv)
    if table.empty:
        raise EmoflowError(f"{history_csv} has no epochs")
    keys = [
        selection_key(float(m), float(lo))
        for m, lo in zip(table["val_metric"], table["val_loss"], strict=True)
    ]
    best = max(range(len(keys)), key=lambda i: (keys[i], -i))
    return int(table["epoch"].iloc[best])


def refit_epochs(histories: list[Path]) -> int:
    """The median best epoch over ``histories`` (rounded half up, at least 1)."""
    if not histories:
        raise EmoflowError("no training histories to choose the refit epoch count from")
    return max(1, math.floor(float(np.median([best_epoch(h) for h in histories])) + 0.5))


def refit_folds(folds: pd.DataFrame) -> pd.DataFrame:
    """A one-fold table (fold -1) in which every labelled clip of the protocol trains."""
    labelled = folds[folds["role"].isin(["train", "val", "test"])]
    clips = labelled.drop_duplicates("clip_id").sort_values("clip_id", kind="mergesort")
    return pd.DataFrame(
        {"fold": -1, "clip_id": clips["clip_id"], "speaker": clips["speaker"], "role": "train"}
    ).reset_index(drop=True)


def history_paths(layout: Layout, branch: str, folds: list[int], seeds: list[int]) -> list[Path]:
    """The cross-validation histories of ``branch``."""
    return [layout.model_dir(branch, f, s) / "history.csv" for f in folds for s in seeds]


def run_refit(
    config: dict[str, Any], branch: str, folds: list[int], shards: list[Path],
    allowed: set[str] | None = None,
) -> Path:  # fmt: skip
    """Retrain ``branch`` on all labelled clips of ``shards`` (in a study: of the ``allowed``
    corpora) for the cross-validated epoch count of its ``folds``."""
    from emoflow.training.train import run_training

    layout = Layout.of(config)
    seed = config["train"]["seeds"][0]
    epochs = refit_epochs(history_paths(layout, branch, folds, config["train"]["seeds"]))
    train_cfg = {**config["train"], "epochs": epochs, "patience": epochs}
    out = layout.refit_dir(branch)
    table = refit_folds(pd.read_parquet(layout.folds))
    if allowed is not None:
        table = table[table["clip_id"].map(corpus_of).isin(allowed)].reset_index(drop=True)
    run_training({**config, "train": train_cfg}, branch, -1, seed, layout.manifest, table,
                 shards, out)  # fmt: skip
    write_text(out / "refit.json", json.dumps({"epochs": epochs, "clips": len(table)}) + "\n")
    return out


def pooled_fusion_weights(
    config: dict[str, Any], folds: list[int], refitted: bool = False
) -> dict[str, Any]:
    """Fusion refitted on the first seed's out-of-fold test predictions of every fold; with
    ``refitted``, the feature MLP on the refitted models' own embeddings of their training
    clips (the embeddings ``predict`` feeds it; another model's live in another space)."""
    from emoflow.fusion.apply import has_categorical
    from emoflow.fusion.inputs import align, out_of_fold, read_branch_predictions, subset
    from emoflow.fusion.methods import fit_problems, fuse_arrays, fusion_methods

    layout = Layout.of(config)
    seed = config["train"]["seeds"][0]
    branches = selected_branches(config)
    paths = {b: [layout.model_dir(b, f, seed) / "predictions.parquet" for f in folds]
             for b in branches}  # fmt: skip
    meta = read_branch_predictions(paths[branches[0]][0]).meta
    n_classes = len(meta["classes"]) if has_categorical(meta["target"]) else 0
    fit = out_of_fold(paths, n_classes)
    methods = fusion_methods(config)
    fits = {m: fit for m in methods}
    if refitted and "feature" in methods:
        own = align({b: read_branch_predictions(layout.refit_dir(b) / "predictions.parquet")
                     for b in branches}, n_classes)  # fmt: skip
        fits["feature"] = subset(own, own.part == "train")
    _, info = fuse_arrays(fit, fits, methods, meta["target"], n_classes, seed)
    fitted_on = f"out-of-fold test predictions of folds {folds}, seed {seed}"
    if refitted:
        fitted_on += "; feature: the refitted models' embeddings of their training clips"
    return {
        "classes": meta["classes"],
        "target": meta["target"],
        "methods": info,
        "fitted_on": fitted_on,
        "n_val_both": int(fit.both.sum()),
        "fusion_problems": fit_problems(info),
    }


def copy_model(src: Path, dst: Path) -> None:
    """Copy a branch model into the bundle atomically."""
    tmp = dst.with_name(f".tmp-{dst.name}")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)
