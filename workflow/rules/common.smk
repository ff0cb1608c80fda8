# Not rules: config validation, the dataset scan, and the input functions the rules use.
import json

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from emoflow.branches import BRANCH_STAGE, selected_branches, selected_stages
from emoflow.config import stable_hash, validate_config
from emoflow.datasets.manifest import refresh
from emoflow.errors import ConfigError, EmoflowError
from emoflow.extraction.compute import forget_uncomputed_shards
from emoflow.extraction.specs import STAGES as ALL_STAGES, config_params
from emoflow.paths import Layout, prepare_job_environment
from emoflow.stages import branch_fold_ids, bundle_folds, fold_branches, fold_ids, fused_folds, inner_fold_ids
from emoflow.storage.atomic import write_text_if_changed
from emoflow.training.augment_config import branch_augment, noise_files

# Jobs run `python -m emoflow`: the venv's python when Snakemake runs from it, the env's python
# under --software-deployment-method conda; either way the package comes from this checkout.
EMOFLOW = "python -m emoflow"
prepare_job_environment(workflow.basedir)

try:
    CFG = validate_config(config)
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None

LAYOUT = Layout.of(CFG)
# The selected branches (config `branches`) and the extraction stages they need: only these run.
BRANCHES = list(selected_branches(CFG))
STAGES = list(selected_stages(CFG))
SHARDS = list(range(CFG["shards"]))
SEEDS = CFG["train"]["seeds"]
# a training job's cores: its fixed torch thread count (train.threads), so --cores never
# changes a number; null (whatever the job gets) claims 2
TRAIN_THREADS = CFG["train"]["threads"] or 2
# The validated, merged config every CLI call reads; rewritten only when it changes.
CONFIG_JSON = str(LAYOUT.config_json)
write_text_if_changed(CONFIG_JSON, json.dumps(CFG, indent=1, sort_keys=True) + "\n")

# The scan runs on every start in the main process (never inside cluster jobs): it rewrites the
# clip table and a shard list only when their content changed, so only changed shards rerun.
if workflow.is_main_process:
    try:
        refresh(CFG)
    except (ConfigError, EmoflowError) as exc:
        raise WorkflowError(f"dataset scan failed: {exc}") from None
    for _stage in forget_uncomputed_shards(CFG, STAGES):
        logger.info(f"{_stage}: shards without a compute summary (an older layout): rebuilding")

# time-continuous clips' label tracks (written by the scan; none for clip-level corpora)
TRACKS = [str(LAYOUT.root / "tracks.parquet")] if (LAYOUT.root / "tracks.parquet").exists() else []

FOLDS = fold_ids(CFG)
# the folds each branch trains in, the branches each fold fuses (a study: a branch only where
# its corpora train it and the test corpus has its modality; one corpus: every fold)
BRANCH_FOLDS = branch_fold_ids(CFG)
FOLD_BRANCHES = fold_branches(CFG)
# fusion.fit_on inner: the inner folds whose out-of-fold predictions fusion is fitted on (in
# folds with a fusion to fit)
INNER = inner_fold_ids(CFG)
FUSED_FOLDS = fused_folds(CFG)

wildcard_constraints:
    k=r"\d+",
    fold=r"\d+",
    seed=r"\d+",
    inner=r"\d+",
    branch="|".join(BRANCHES),


def params_hash(stage):
    """Hash of the config a stage depends on: a change reruns exactly that stage."""
    if stage in ALL_STAGES:
        return stable_hash(config_params(CFG, stage))
    return stable_hash({key: CFG[key] for key in stage})


def train_params(wildcards):
    """Hash of the config a branch's training depends on (visual, face_cnn, au: also their
    section)."""
    own = wildcards.branch in ("visual", "face_cnn", "au")
    keys = ["train", "folds"] + ([wildcards.branch] if own else [])
    # the branch's augmentation, only when one is on: a run without keeps its old hash
    aug = branch_augment(CFG, wildcards.branch)
    base = params_hash(keys) if aug is None else stable_hash([params_hash(keys), aug])
    # time-continuous runs: the window targets depend on tracks.min_annotated
    return stable_hash([base, CFG["tracks"]["min_annotated"]]) if TRACKS else base


def augment_inputs(wildcards):
    """The noise files a branch's training mixes in (none without noise augmentation)."""
    aug = branch_augment(CFG, wildcards.branch)
    return noise_files(aug["noise"]["dir"]) if aug and "noise" in aug else []


def after_checkpoint(name):
    """Input function: no file, but the job waits for checkpoint ``name`` when that must run
    (Snakemake then re-evaluates the job against its own inputs)."""

    def inputs(wildcards):
        getattr(checkpoints, name).get()
        return []

    return inputs


def shard_files(stage):
    return [LAYOUT.shard(stage, k) for k in SHARDS]


def branch_shards(wildcards):
    return shard_files(BRANCH_STAGE[wildcards.branch])


def feature_outputs():
    return [LAYOUT.shard(s, k) for s in STAGES for k in SHARDS] + [LAYOUT.failures]


def branch_predictions(wildcards):
    """Every selected branch's predictions of one (fold, seed): what fusion reads."""
    fold = int(wildcards.fold)
    return {
        b: LAYOUT.model_dir(b, fold, int(wildcards.seed)) / "predictions.parquet"
        for b in FOLD_BRANCHES[fold]
    }


def inner_predictions(wildcards):
    """The inner folds' predictions of every selected branch for one fold (none with
    fusion.fit_on val)."""
    fold = int(wildcards.fold)
    if fold not in FUSED_FOLDS:
        return []
    return [
        LAYOUT.inner_dir(b, fold, j) / "predictions.parquet" for b in FOLD_BRANCHES[fold] for j in INNER
    ]


def branch_fold_files(name, branches=None, seeds=None):
    """``models/<branch>/fold<f>/seed<s>/<name>`` of every branch's own folds."""
    return [
        LAYOUT.model_dir(b, f, s) / name
        for b in branches or BRANCHES
        for f in BRANCH_FOLDS[b]
        for s in seeds or SEEDS
    ]


def all_outputs():
    return [
        LAYOUT.report / "results.csv",
        LAYOUT.bundle / "bundle.json",
        LAYOUT.failures,
    ]


def bundle_inputs():
    """What model/ is built from: the refitted models and every fold's first-seed predictions
    (refit), or the first fold's models and fusion weights (fold0)."""
    seed = SEEDS[0]
    models = LAYOUT.root / "models" / "{branch}"
    if CFG["bundle"]["mode"] == "refit":
        return expand(
            models / "refit" / "{name}", branch=BRANCHES, name=["model.pt", "predictions.parquet"]
        ) + branch_fold_files("predictions.parquet", seeds=[seed]) + [LAYOUT.protocol]
    if CFG["bundle"]["mode"] == "ensemble":
        return branch_fold_files("model.pt", seeds=[seed]) + branch_fold_files(
            "predictions.parquet", seeds=[seed]
        ) + [LAYOUT.protocol]
    first = bundle_folds(CFG)[0]
    return expand(models / f"fold{first}" / f"seed{seed}" / "model.pt", branch=BRANCHES) + [
        LAYOUT.fusion_weights(first, seed),
        LAYOUT.protocol,
    ]
