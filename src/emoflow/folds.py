"""Speaker-independent folds (``folds.parquet``) and the leakage check.

``make_folds`` turns the clip table into one row per (fold, clip) with the clip's role in
that fold: ``train``, ``val`` (early stopping, fusion weights) or ``test``.

- **k-fold** (default): speakers are the groups. Groups are shuffled with ``folds.seed`` and
  then dealt greedily, largest first, to the fold with the fewest clips so far, so folds are
  balanced by clip count. Each fold's test set is one group set; its validation speakers are
  drawn (seeded by ``seed`` and the fold) from the remaining training speakers, a fraction
  ``val_speakers`` of them and at least one.
- **official split**: with ``use_official`` and a ``split`` column holding both ``train`` and
  ``test`` values there is a single fold 0: ``test`` rows are the test set, ``val`` /
  ``validation`` rows the validation set, or, when there are none, validation speakers are
  drawn from the training speakers as above. Rows with any other split value are left out.
- **clips without a speaker** are each their own group (named ``clip:<clip_id>``), so they
  never tie two folds together; the ``speaker`` column keeps the missing value.
- clips without a usable target are left out: no ``label`` for a categorical target, no
  valence and no arousal for a dimensional one, neither for ``both``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from emoflow.errors import EmoflowError

ROLES = ("train", "val", "test")
_ROLE_OF_SPLIT = {"train": "train", "test": "test", "val": "val", "validation": "val"}


def _usable(manifest: pd.DataFrame, target: str) -> pd.Series:
    has_label = manifest["label"].notna()
    va_cols = [c for c in ("valence", "arousal") if c in manifest.columns]
    if va_cols:
        has_va = manifest[va_cols].notna().all(axis=1)
    else:
        has_va = pd.Series(False, index=manifest.index)
    if target == "categorical":
        return has_label
    if target == "dimensional":
        return has_va
    if target == "both":
        return has_label | has_va
    raise EmoflowError(f"unknown target {target!r} (categorical, dimensional, both)")


def _groups(table: pd.DataFrame) -> pd.Series:
    """The grouping key of each clip: its speaker, or ``clip:<id>`` when it has none."""
    speakers = table["speaker"]
    keys = [
        f"speaker:{s}"
        if s is not None and not (isinstance(s, float) and math.isnan(s))
        else f"clip:{c}"
        for s, c in zip(speakers, table["clip_id"], strict=True)
    ]
    return pd.Series(keys, index=table.index)


def _draw_val(train_groups: list[str], fraction: float, rng: np.random.Generator) -> set[str]:
    """Draw ``max(1, round(fraction * n))`` validation groups, keeping one group to train."""
    groups = sorted(train_groups)
    if len(groups) < 2:
        raise EmoflowError(
            f"cannot draw validation speakers: only {len(groups)} training speaker(s) in a fold"
        )
    n_val = min(max(1, round(fraction * len(groups))), len(groups) - 1)
    picked = rng.permutation(len(groups))[:n_val]
    return {groups[i] for i in sorted(picked)}


def _assign_kfold(counts: pd.Series, k: int, seed: int) -> dict[str, int]:
    """Deal groups to ``k`` folds: seeded shuffle, then largest first to the lightest fold."""
    names = sorted(counts.index)
    if len(names) < k:
        raise EmoflowError(f"{len(names)} speaker groups cannot make {k} folds; lower folds.k")
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]
    # a stable sort keeps the shuffled order among groups of equal size
    order.sort(key=lambda g: -int(counts[g]))
    totals = [0] * k
    assignment: dict[str, int] = {}
    for group in order:
        fold = min(range(k), key=lambda f: (totals[f], f))
        assignment[group] = fold
        totals[fold] += int(counts[group])
    return assignment


def uses_official_split(manifest: pd.DataFrame, folds_cfg: dict[str, Any]) -> bool:
    """Whether the folds come from the official split: ``use_official`` and a ``split`` column
    holding both ``train`` and ``test`` (then there is one fold, 0)."""
    if not folds_cfg.get("use_official", True) or "split" not in manifest.columns:
        return False
    values = {str(x).lower() for x in manifest["split"] if isinstance(x, str)}
    return {"train", "test"} <= values


def make_folds(
    manifest: pd.DataFrame, folds_cfg: dict[str, Any], target: str = "categorical"
) -> pd.DataFrame:
    """Build the fold table: columns ``fold``, ``clip_id``, ``speaker``, ``role``.

    One row per (fold, clip), sorted by (fold, clip_id); deterministic for a given
    manifest and ``folds_cfg`` (``k``, ``val_speakers``, ``use_official``, ``seed``).
    """
    k = int(folds_cfg.get("k", 5))
    fraction = float(folds_cfg.get("val_speakers", 0.2))
    seed = int(folds_cfg.get("seed", 0))

    table = manifest.loc[_usable(manifest, target), ["clip_id", "speaker"]].copy()
    if "split" in manifest.columns:
        table["split"] = manifest.loc[table.index, "split"]
    else:
        table["split"] = None
    table["clip_id"] = table["clip_id"].astype(str)
    table = table.sort_values("clip_id", kind="mergesort").reset_index(drop=True)
    if table.empty:
        raise EmoflowError("no clip has a usable target; cannot make folds")
    if table["clip_id"].duplicated().any():
        raise EmoflowError("duplicate clip ids in the manifest")
    table["group"] = _groups(table)

    rows: list[pd.DataFrame] = []
    if uses_official_split(manifest, folds_cfg):
        role = pd.Series(
            [
                _ROLE_OF_SPLIT.get(str(x).lower(), "") if isinstance(x, str) else ""
                for x in table["split"]
            ],
            index=table.index,
        )
        if not (role == "val").any():
            train_groups = table.loc[role == "train", "group"].unique().tolist()
            val = _draw_val(train_groups, fraction, np.random.default_rng([seed, 0]))
            role[(role == "train") & table["group"].isin(val)] = "val"
        keep = role != ""
        rows.append(
            pd.DataFrame(
                {
                    "fold": 0,
                    "clip_id": table.loc[keep, "clip_id"],
                    "speaker": table.loc[keep, "speaker"],
                    "role": role[keep],
                }
            )
        )
    else:
        counts = table["group"].value_counts()
        assignment = _assign_kfold(counts, k, seed)
        fold_of = table["group"].map(assignment)
        for fold in range(k):
            test = fold_of == fold
            train_groups = table.loc[~test, "group"].unique().tolist()
            val = _draw_val(train_groups, fraction, np.random.default_rng([seed, fold + 1]))
            role = np.where(test, "test", np.where(table["group"].isin(val), "val", "train"))
            rows.append(
                pd.DataFrame(
                    {
                        "fold": fold,
                        "clip_id": table["clip_id"],
                        "speaker": table["speaker"],
                        "role": role,
                    }
                )
            )
    folds = pd.concat(rows, ignore_index=True)
    folds["fold"] = folds["fold"].astype("int64")
    folds["speaker"] = folds["speaker"].astype(object).where(folds["speaker"].notna(), None)
    folds = folds.sort_values(["fold", "clip_id"], kind="mergesort").reset_index(drop=True)
    check_leakage(folds)
    return folds


def check_leakage(folds: pd.DataFrame) -> None:
    """Raise EmoflowError naming the speakers found in train/val and test of the same fold."""
    problems: list[str] = []
    duplicated = folds.duplicated(["fold", "clip_id"])
    if duplicated.any():
        clips = sorted(folds.loc[duplicated, "clip_id"].astype(str).unique())
        problems.append(f"clips listed twice in a fold: {', '.join(clips[:10])}")
    known = folds[folds["speaker"].notna()]
    for fold, part in known.groupby("fold", sort=True):
        test = set(part.loc[part["role"] == "test", "speaker"].astype(str))
        seen = set(part.loc[part["role"].isin(["train", "val"]), "speaker"].astype(str))
        leaked = sorted(test & seen)
        if leaked:
            problems.append(f"fold {fold}: speaker(s) {', '.join(leaked)} in train/val and test")
    if problems:
        raise EmoflowError("speaker leakage: " + "; ".join(problems))


def class_names(manifest: pd.DataFrame, dataset_cfg: dict[str, Any]) -> list[str]:
    """The class order: ``dataset.labels`` when configured, else the sorted unique labels."""
    configured = dataset_cfg.get("labels")
    if configured:
        return [str(x) for x in configured]
    return sorted({str(x) for x in manifest["label"].dropna()})
