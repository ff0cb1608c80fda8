"""Evaluation protocols: the fold table (``folds.parquet``), its guards and the leakage check.

``make_split`` turns the clip table into one row per (fold, clip) with the clip's role in that
fold: ``train``, ``val`` (early stopping, fusion weights), ``test`` (scored) or ``unlabelled``
(official test clips without labels: predicted and written out, never scored). Which protocol
applies is ``folds.protocol``; ``auto`` takes the corpus's own (:data:`CORPUS_PROTOCOL`):

- **kfold**: speakers are the groups. Groups are shuffled with ``folds.seed`` and dealt
  greedily, largest first, to the fold with the fewest clips so far, so folds are balanced by
  clip count. Each fold's test set is one group set; its validation speakers are drawn (seeded
  by ``seed`` and the fold) from the remaining training speakers, a fraction ``val_speakers``
  of them and at least one.
- **official**: one fold 0 from the ``split`` column. ``test`` rows with labels are the test
  set; when no test row has a label (AFEW, OMG-Emotion without test labels) the labelled
  ``val`` rows are scored instead. Validation is the ``val`` rows when they are not the test
  set, else speakers drawn from the training speakers as above.
- **file**: a user's CSV (:mod:`emoflow.protocols.fold_file`) reproduces a published split exactly.

Clips without a speaker are each their own group (``clip:<clip_id>``), so they never tie two
folds together. Clips without a usable target (no label for a categorical target, no valence
and arousal for a dimensional one) are left out, except as ``unlabelled`` in an official split.
Every fold must have non-empty train, validation and test parts, and a categorical test part
needs two classes (:func:`check_parts`).

**Inner folds** (:func:`inner_folds`, for fusion fitted on out-of-fold predictions): inside each
outer fold, the speakers of its training part (train and val) are dealt into ``n`` inner folds
the k-fold way; inner fold ``j`` holds out its speakers (role ``test``), draws validation
speakers from the rest as above (early stopping) and trains on the others. The outer test
speakers never appear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoflow.errors import EmoflowError
from emoflow.protocols.validation import draw_val, val_by_corpus

ROLES = ("train", "val", "test", "unlabelled")
PROTOCOLS = ("auto", "kfold", "official", "file")
CORPUS_PROTOCOL = {
    "ravdess": "kfold",
    "cremad": "kfold",
    "enterface": "kfold",
    "afew": "official",
    "omg": "official",
    "csv": "official if the CSV has a split column with train and val/test rows, else kfold",
}
_ROLE_OF_SPLIT = {"train": "train", "test": "test", "val": "val", "validation": "val"}


@dataclass
class Split:
    """The fold table and the protocol that made it (``protocol`` goes into every table)."""

    folds: pd.DataFrame
    protocol: dict[str, Any] = field(default_factory=dict)


def usable_target(manifest: pd.DataFrame, target: str) -> pd.Series:
    """Whether each clip has what ``target`` trains on (see the module docstring)."""
    has_label = manifest["label"].notna()
    va_cols = [c for c in ("valence", "arousal") if c in manifest.columns]
    if va_cols:
        has_va = manifest[va_cols].notna().all(axis=1)
    else:
        has_va = pd.Series(False, index=manifest.index)
    if "track" in manifest.columns:  # time-continuous labels: targets per window
        has_label = has_label | manifest["track"].fillna(False).astype(bool)
        has_va = has_va | manifest["track"].fillna(False).astype(bool)
    if target == "categorical":
        return has_label
    if target == "dimensional":
        return has_va
    if target == "both":
        return has_label | has_va
    raise EmoflowError(f"unknown target {target!r} (categorical, dimensional, both)")


def group_keys(table: pd.DataFrame) -> pd.Series:
    """The grouping key of each clip: ``speaker:<s>``, or ``clip:<id>`` when it has none."""
    keys = [
        f"speaker:{s}"
        if s is not None and not (isinstance(s, float) and math.isnan(s))
        else f"clip:{c}"
        for s, c in zip(table["speaker"], table["clip_id"], strict=True)
    ]
    return pd.Series(keys, index=table.index)


def assign_kfold(counts: pd.Series, k: int, seed: int) -> dict[str, int]:
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


def _split_values(manifest: pd.DataFrame) -> set[str]:
    if "split" not in manifest.columns:
        return set()
    values = {
        _ROLE_OF_SPLIT.get(str(x).lower(), "") for x in manifest["split"] if isinstance(x, str)
    }
    return values - {""}


def resolve_protocol(manifest: pd.DataFrame, folds_cfg: dict[str, Any], adapter: str) -> str:
    """``folds.protocol``, with ``auto`` resolved to the corpus's protocol."""
    protocol = folds_cfg.get("protocol", "auto")
    if protocol not in PROTOCOLS:
        raise EmoflowError(f"unknown folds.protocol {protocol!r} ({', '.join(PROTOCOLS)})")
    if protocol != "auto":
        return protocol
    if folds_cfg.get("file"):
        return "file"
    if adapter in ("afew", "omg"):
        return "official"
    if adapter == "csv" and {"train"} < _split_values(manifest):
        return "official"
    return "kfold"


def fold_numbers(manifest: pd.DataFrame, folds_cfg: dict[str, Any], adapter: str) -> list[int]:
    """The folds a protocol makes: ``range(k)``, ``[0]`` (official) or the file's folds."""
    protocol = resolve_protocol(manifest, folds_cfg, adapter)
    if protocol == "official":
        return [0]
    if protocol == "file":
        from emoflow.protocols.fold_file import read_fold_file

        return sorted(int(f) for f in read_fold_file(_fold_file(folds_cfg))["fold"].unique())
    return list(range(int(folds_cfg.get("k", 5))))


def _fold_file(folds_cfg: dict[str, Any]) -> Path:
    if not folds_cfg.get("file"):
        raise EmoflowError("folds.protocol is 'file' but folds.file is not set")
    return Path(folds_cfg["file"])


def clip_groups(manifest: pd.DataFrame, target: str) -> pd.DataFrame:
    """The clips sorted by id with ``speaker``, ``split``, ``usable`` (has the target) and
    ``group`` (:func:`group_keys`): what every protocol deals into folds."""
    cols = ["clip_id", "speaker"]
    table = manifest[cols].copy()
    table["split"] = manifest["split"] if "split" in manifest.columns else None
    table["usable"] = usable_target(manifest, target).to_numpy()
    table["clip_id"] = table["clip_id"].astype(str)
    table = table.sort_values("clip_id", kind="mergesort").reset_index(drop=True)
    if not table["usable"].any():
        raise EmoflowError("no clip has a usable target; cannot make folds")
    if table["clip_id"].duplicated().any():
        raise EmoflowError("duplicate clip ids in the manifest")
    table["group"] = group_keys(table)
    return table


def fold_frame(fold: int, table: pd.DataFrame, role: Any) -> pd.DataFrame:
    """Fold-table rows (fold, clip_id, speaker, role) of ``table``'s clips."""
    return pd.DataFrame(
        {"fold": fold, "clip_id": table["clip_id"], "speaker": table["speaker"], "role": role}
    )


def _kfold(table: pd.DataFrame, k: int, fraction: float, seed: int) -> pd.DataFrame:
    table = table[table["usable"]]
    assignment = assign_kfold(table["group"].value_counts(), k, seed)
    fold_of = table["group"].map(assignment)
    rows = []
    for fold in range(k):
        test = fold_of == fold
        train_groups = table.loc[~test, "group"].unique().tolist()
        val = draw_val(train_groups, fraction, np.random.default_rng([seed, fold + 1]))
        role = np.where(test, "test", np.where(table["group"].isin(val), "val", "train"))
        rows.append(fold_frame(fold, table, role))
    return pd.concat(rows, ignore_index=True)


def _official(table: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, str]:
    """Fold 0 of the official split and how its validation/test parts were chosen."""
    split = pd.Series(
        [
            _ROLE_OF_SPLIT.get(str(x).lower(), "") if isinstance(x, str) else ""
            for x in table["split"]
        ],
        index=table.index,
    )
    if not (split == "train").any():
        raise EmoflowError("folds.protocol official: no clip has split 'train'")
    usable = table["usable"]
    role = split.where(usable, "")
    note = "official test part"
    if not (role == "test").any() and (role == "val").any():
        role[role == "val"] = "test"
        note = "official validation part scored (the test part has no labels)"
    if not (role == "val").any():
        train_groups = table.loc[role == "train", "group"].unique().tolist()
        val = draw_val(train_groups, fraction, np.random.default_rng([seed, 0]))
        role[(role == "train") & table["group"].isin(val)] = "val"
        note += f"; validation: {fraction:g} of the training speakers, drawn with seed {seed}"
    else:
        note += "; validation: the official validation part"
    role[~usable & split.isin(["test", "val"])] = "unlabelled"
    keep = role != ""
    return fold_frame(0, table[keep], role[keep]), note


def make_split(
    manifest: pd.DataFrame,
    folds_cfg: dict[str, Any],
    target: str = "categorical",
    adapter: str = "csv",
) -> Split:
    """Build the fold table (columns ``fold``, ``clip_id``, ``speaker``, ``role``; one row per
    (fold, clip), sorted) and describe its protocol; check leakage and every fold's parts.

    Deterministic for a given manifest and ``folds_cfg``.
    """
    k = int(folds_cfg.get("k", 5))
    fraction = float(folds_cfg.get("val_speakers", 0.2))
    seed = int(folds_cfg.get("seed", 0))
    protocol = resolve_protocol(manifest, folds_cfg, adapter)
    table = clip_groups(manifest, target)
    if protocol == "kfold":
        folds = _kfold(table, k, fraction, seed)
        how = (
            f"speaker-independent {k}-fold cross-validation (validation: {fraction:g} of each "
            f"fold's training speakers, drawn with seed {seed})"
        )
    elif protocol == "official":
        folds, note = _official(table, fraction, seed)
        how = f"official split ({note})"
    else:
        from emoflow.protocols.fold_file import folds_from_file

        path = _fold_file(folds_cfg)
        folds = folds_from_file(table, path)
        how = f"fold file {path.name} ({folds['fold'].nunique()} folds, roles as listed)"
    folds["fold"] = folds["fold"].astype("int64")
    folds["speaker"] = folds["speaker"].astype(object).where(folds["speaker"].notna(), None)
    folds = folds.sort_values(["fold", "clip_id"], kind="mergesort").reset_index(drop=True)
    check_leakage(folds)
    check_parts(folds, protocol, part_labels(manifest, target))
    info = {
        "name": protocol,
        "k": int(folds["fold"].nunique()),
        "description": how,
        "unlabelled": int((folds["role"] == "unlabelled").sum()),
    }
    return Split(folds, info)


def make_folds(
    manifest: pd.DataFrame,
    folds_cfg: dict[str, Any],
    target: str = "categorical",
    adapter: str = "csv",
) -> pd.DataFrame:
    """The fold table of :func:`make_split`."""
    return make_split(manifest, folds_cfg, target, adapter).folds


def inner_folds(
    folds: pd.DataFrame, n: int, fraction: float, seed: int, by_corpus: bool = False
) -> pd.DataFrame:
    """The inner folds of every outer fold of ``folds`` (see the module docstring): columns
    ``fold`` (outer), ``inner``, ``clip_id``, ``speaker``, ``role``; sorted; leakage-checked.
    ``by_corpus`` (a study): validation drawn per corpus
    (:func:`emoflow.protocols.validation.val_by_corpus`).

    Raises EmoflowError naming the fold when its training part has too few speakers."""
    frames = []
    for fold, part in folds.groupby("fold", sort=True):
        part = part[part["role"].isin(["train", "val"])].sort_values("clip_id", kind="mergesort")
        groups = group_keys(part)
        counts = groups.value_counts()
        inner_of = pd.Series(0, index=groups.index)
        if len(counts) >= n:
            inner_of = groups.map(assign_kfold(counts, n, seed + 1000 * (int(fold) + 1)))
        if len(counts) < n or min(groups[inner_of != j].nunique() for j in range(n)) < 2:
            raise EmoflowError(
                f"fold {fold}: its training part has {len(counts)} speaker group(s), too few for "
                f"{n} inner folds (each needs held-out speakers and two or more others for "
                "validation and training); set fusion.inner_folds lower or fusion.fit_on: val"
            )
        for j in range(n):
            held = (inner_of == j).to_numpy()
            key = [seed, int(fold) + 1, j + 1]
            if by_corpus:
                val = np.zeros(len(part), dtype=bool)
                val[~held] = val_by_corpus(part[~held].assign(group=groups[~held]), fraction, key)
            else:
                rest = groups[~held].unique().tolist()
                val = groups.isin(draw_val(rest, fraction, np.random.default_rng(key))).to_numpy()
            role = np.where(held, "test", np.where(val, "val", "train"))
            frame = fold_frame(int(fold), part, role)
            frame.insert(1, "inner", j)
            frames.append(frame)
    if not frames:
        raise EmoflowError("no fold to make inner folds of")
    table = pd.concat(frames, ignore_index=True)
    table = table.sort_values(["fold", "inner", "clip_id"], kind="mergesort")
    table = table.reset_index(drop=True)
    check_leakage(table.assign(fold=table["fold"] * 1000 + table["inner"]))
    return table


def part_labels(manifest: pd.DataFrame, target: str) -> pd.Series | None:
    """The clip labels whose classes :func:`check_parts` checks per test part: None for a
    dimensional target, or when the clips' labels are per frame (``track``)."""
    if target == "dimensional" or ("track" in manifest.columns and manifest["track"].any()):
        return None
    return manifest.set_index(manifest["clip_id"].astype(str))["label"]


def check_parts(folds: pd.DataFrame, protocol: str, labels: pd.Series | None) -> None:
    """Raise naming the fold, protocol and counts when a fold has an empty train, validation
    or test part, or (``labels`` given: a categorical target) a test part of one class."""
    problems = []
    for fold, part in folds.groupby("fold", sort=True):
        counts = {r: int((part["role"] == r).sum()) for r in ("train", "val", "test")}
        text = f"train {counts['train']}, val {counts['val']}, test {counts['test']} clips"
        empty = [r for r, n in counts.items() if n == 0]
        if empty:
            problems.append(f"fold {fold}: empty {' and '.join(empty)} part ({text})")
            continue
        if labels is not None:
            test_labels = labels.reindex(part.loc[part["role"] == "test", "clip_id"]).dropna()
            if test_labels.nunique() < 2:
                problems.append(
                    f"fold {fold}: the test part has {test_labels.nunique()} class "
                    f"({', '.join(sorted(map(str, test_labels.unique())))}; {text}); "
                    "categorical scores need at least two"
                )
    if problems:
        raise EmoflowError(f"folds.protocol {protocol}: " + "; ".join(problems))


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


def class_names(manifest: pd.DataFrame, configured: list[str] | None) -> list[str]:
    """The class order: the configured class list (``dataset.labels``, ``study.labels``) when
    given, else the sorted unique labels."""
    if configured:
        return [str(x) for x in configured]
    return sorted({str(x) for x in manifest["label"].dropna()})
