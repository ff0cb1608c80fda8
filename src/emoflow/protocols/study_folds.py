"""Protocols across the corpora of a study: ``within``, ``pooled`` and ``cross``, in one fold table.

Every protocol is a set of folds of ``folds.parquet`` (numbered in the order within, pooled,
cross), so training, fusion and the bundle work on a study exactly as on one corpus; the
protocol record says which protocol and test corpus each fold belongs to, and the report pools
each protocol's folds and scores them per test corpus.

- **within**: each corpus with its own protocol (k-fold over its speakers, ``k`` capped at its
  speaker count; or its official split), train and test inside the corpus.
- **pooled**: speaker-independent k-fold over the union of the corpora.
- **cross**: leave one corpus out: train on the others, test on the held-out corpus (EmoBox's
  cross-corpus setting); one fold per corpus.

Validation clips are drawn **per corpus** among each fold's training speakers (a fraction
``folds.val_speakers`` of each corpus's, at least one), so a branch trained on some of the
corpora always has validation clips of its own corpora. A corpus with a single training
speaker in a fold (TESS has two speakers) gives that fraction of the speaker's clips instead:
validation only stops training early, and the test speakers stay apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from emoflow.errors import EmoflowError
from emoflow.protocols.folds import (
    Split,
    assign_kfold,
    check_leakage,
    check_parts,
    clip_groups,
    fold_frame,
    make_split,
    part_labels,
    resolve_protocol,
)
from emoflow.protocols.validation import val_by_corpus
from emoflow.study import FACE_STAGES, audio_only, branch_corpora, corpora, corpus_of

PROTOCOL_ORDER = ("within", "pooled", "cross")


def _kfold(table: pd.DataFrame, k: int, fraction: float, seed: int, first: int) -> pd.DataFrame:
    """Speaker-independent k-fold over ``table``'s usable clips, validation by corpus."""
    table = table[table["usable"]]
    counts = table["group"].value_counts()
    if len(counts) < 2:
        raise EmoflowError(
            f"{len(counts)} speaker group(s) with a usable target cannot make folds "
            f"(corpora: {', '.join(sorted(set(table['clip_id'].map(corpus_of))))})"
        )
    k = min(k, len(counts))
    fold_of = table["group"].map(assign_kfold(counts, k, seed))
    tests = [(fold_of == fold).to_numpy() for fold in range(k)]
    return _folds(table, tests, fraction, seed, first)


def _folds(
    table: pd.DataFrame, tests: list[np.ndarray], fraction: float, seed: int, first: int
) -> pd.DataFrame:
    """Folds ``first``, ``first + 1``, ... testing each mask of ``tests``; validation drawn
    per corpus among the rest."""
    frames = []
    for i, test in enumerate(tests):
        val = np.zeros(len(table), dtype=bool)
        val[~test] = val_by_corpus(table[~test], fraction, [seed, first + i + 1])
        role = np.where(test, "test", np.where(val, "val", "train"))
        frames.append(fold_frame(first + i, table, role))
    return pd.concat(frames, ignore_index=True)


def _cross(table: pd.DataFrame, names: list[str], fraction: float, seed: int, first: int):
    table = table[table["usable"]]
    corpus = table["clip_id"].map(corpus_of)
    return _folds(table, [(corpus == name).to_numpy() for name in names], fraction, seed, first)


def _within(manifest, table, cfg, folds_cfg, target, first) -> tuple[pd.DataFrame, str]:
    """One corpus's own protocol, its folds numbered from ``first``."""
    name = cfg["name"]
    rows = table["clip_id"].map(corpus_of) == name
    sub_manifest = manifest[manifest["clip_id"].astype(str).map(corpus_of) == name]
    own = resolve_protocol(sub_manifest, folds_cfg, cfg["adapter"])
    k, fraction, seed = int(folds_cfg["k"]), float(folds_cfg["val_speakers"]), folds_cfg["seed"]
    if own == "kfold":
        folds = _kfold(table[rows], k, fraction, seed, first)
        n = folds["fold"].nunique()
        return folds, f"{name}: speaker-independent {n}-fold"
    split = make_split(sub_manifest, {**folds_cfg, "protocol": own}, target, cfg["adapter"])
    folds = split.folds.assign(fold=split.folds["fold"] + first)
    return folds, f"{name}: {split.protocol['description']}"


def _protocol_folds(
    protocol: str, manifest: pd.DataFrame, table: pd.DataFrame, config: dict[str, Any],
    first: int,
) -> tuple[list[pd.DataFrame], dict[str, dict[str, Any]]]:  # fmt: skip
    """The folds of one protocol numbered from ``first`` and the record of each."""
    folds_cfg, target = config["folds"], config["train"]["target"]
    k, fraction, seed = int(folds_cfg["k"]), float(folds_cfg["val_speakers"]), folds_cfg["seed"]
    names = sorted(c["name"] for c in corpora(config))
    frames: list[pd.DataFrame] = []
    record: dict[str, dict[str, Any]] = {}

    def note(fold: int, corpus: str | None, description: str) -> None:
        record[str(fold)] = {"protocol": protocol, "corpus": corpus, "description": description}

    if protocol == "within":
        for cfg in sorted(corpora(config), key=lambda c: c["name"]):
            folds, how = _within(manifest, table, cfg, folds_cfg, target, first)
            for f in sorted(folds["fold"].unique()):
                note(int(f), cfg["name"], how)
            frames.append(folds)
            first += folds["fold"].nunique()
    elif protocol == "pooled":
        folds = _kfold(table, k, fraction, seed, first)
        n = folds["fold"].nunique()
        for f in range(first, first + n):
            note(f, None, f"speaker-independent {n}-fold over the union")
        frames.append(folds)
    else:
        frames.append(_cross(table, names, fraction, seed, first))
        for i, name in enumerate(names):
            note(first + i, name, f"trained on the other corpora, tested on {name}")
    return frames, record


def study_split(manifest: pd.DataFrame, config: dict[str, Any]) -> Split:
    """The fold table of a study's protocols and the record of what each fold is."""
    target = config["train"]["target"]
    table = clip_groups(manifest, target)
    names = sorted(c["name"] for c in corpora(config))
    wanted = [p for p in PROTOCOL_ORDER if p in config["study"]["protocols"]]
    frames: list[pd.DataFrame] = []
    record: dict[str, dict[str, Any]] = {}
    for protocol in wanted:
        first = sum(f["fold"].nunique() for f in frames)
        more, notes = _protocol_folds(protocol, manifest, table, config, first)
        frames += more
        record |= notes
    folds = pd.concat(frames, ignore_index=True)
    folds["fold"] = folds["fold"].astype("int64")
    folds["speaker"] = folds["speaker"].astype(object).where(folds["speaker"].notna(), None)
    folds = folds.sort_values(["fold", "clip_id"], kind="mergesort").reset_index(drop=True)
    check_leakage(folds)
    check_parts(folds, "study", part_labels(manifest, target))
    info = {
        "name": "study",
        "k": int(folds["fold"].nunique()),
        "description": f"a study of {len(names)} corpora ({', '.join(names)}): "
        + ", ".join(wanted),
        "unlabelled": int((folds["role"] == "unlabelled").sum()),
        "folds": record,
    }
    return Split(folds, info)


def modality_corpora(config: dict[str, Any], manifest: pd.DataFrame, stage: str) -> set[str]:
    """The corpora whose files have the stage's modality: every corpus, except that a face
    stage leaves out corpora of audio-only files."""
    names = {c["name"] for c in corpora(config)}
    if stage not in FACE_STAGES:
        return names
    corpus = manifest["clip_id"].astype(str).map(corpus_of)
    return {c for c in names if not audio_only(manifest.loc[corpus == c, "path"])}


def branch_allowed(
    config: dict[str, Any], manifest: pd.DataFrame, branch: str, stage: str
) -> set[str]:
    """The corpora ``branch`` trains on: its ``branches:`` entry's (default all) that have
    its modality."""
    listed = branch_corpora(config, branch)
    allowed = modality_corpora(config, manifest, stage)
    return allowed if listed is None else allowed & set(listed)


def branch_fold_table(folds: pd.DataFrame, allowed: set[str]) -> pd.DataFrame:
    """A fold table with the train and validation clips of other corpora left out."""
    keep = ~folds["role"].isin(["train", "val"]) | folds["clip_id"].map(corpus_of).isin(allowed)
    return folds[keep.to_numpy()]


def branch_folds(folds: pd.DataFrame, allowed: set[str], testable: set[str]) -> list[int]:
    """The folds a branch trains in: training and validation clips of its corpora, and test
    clips of a corpus with its modality."""
    corpus = folds["clip_id"].map(corpus_of)
    out = []
    for fold, part in folds.groupby("fold", sort=True):
        roles = part["role"][corpus[part.index].isin(allowed)]
        tested = corpus[part.index][part["role"] == "test"].isin(testable)
        if (roles == "train").any() and (roles == "val").any() and tested.any():
            out.append(int(fold))
    if not out:
        raise EmoflowError("a branch has no fold with training clips of its corpora")
    return out
