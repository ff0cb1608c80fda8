# ---- one training job per (branch, fold, seed); with refit, the only rules that ask for a GPU ----
rule train:
    input:
        manifest=LAYOUT.manifest,
        tracks=TRACKS,
        folds=LAYOUT.folds,
        shards=branch_shards,
        noise=augment_inputs,
    output:
        model=LAYOUT.root / "models" / "{branch}" / "fold{fold}" / "seed{seed}" / "model.pt",
        predictions=LAYOUT.root / "models" / "{branch}" / "fold{fold}" / "seed{seed}" / "predictions.parquet",
        history=LAYOUT.root / "models" / "{branch}" / "fold{fold}" / "seed{seed}" / "history.csv",
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        train=train_params,
    benchmark:
        LAYOUT.root / "benchmarks" / "train" / "{branch}_fold{fold}_seed{seed}.tsv"
    log:
        LAYOUT.root / "logs" / "train" / "{branch}_fold{fold}_seed{seed}.log",
    threads: TRAIN_THREADS
    resources:
        gpu=0,
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.cli} train --config {params.config:q} --branch {wildcards.branch} "
        "--fold {wildcards.fold} --seed {wildcards.seed} --log {log:q}"


# ---- fusion.fit_on inner: each branch on each inner fold of a fold (first seed), for the
# out-of-fold predictions fusion is fitted on ----
rule train_inner:
    input:
        manifest=LAYOUT.manifest,
        tracks=TRACKS,
        inner_folds=LAYOUT.inner_folds,
        shards=branch_shards,
        noise=augment_inputs,
    output:
        model=LAYOUT.root / "models" / "{branch}" / "fold{fold}" / "inner{inner}" / "model.pt",
        predictions=LAYOUT.root / "models" / "{branch}" / "fold{fold}" / "inner{inner}" / "predictions.parquet",
        history=LAYOUT.root / "models" / "{branch}" / "fold{fold}" / "inner{inner}" / "history.csv",
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        train=train_params,
        seed=SEEDS[0],
    benchmark:
        LAYOUT.root / "benchmarks" / "train" / "{branch}_fold{fold}_inner{inner}.tsv"
    log:
        LAYOUT.root / "logs" / "train" / "{branch}_fold{fold}_inner{inner}.log",
    threads: TRAIN_THREADS
    resources:
        gpu=0,
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.cli} train --config {params.config:q} --branch {wildcards.branch} "
        "--fold {wildcards.fold} --seed {params.seed} --inner {wildcards.inner} --log {log:q}"


# ---- the deployable model (bundle.mode: refit): each branch retrained on every labelled clip ----
rule refit:
    input:
        manifest=LAYOUT.manifest,
        tracks=TRACKS,
        folds=LAYOUT.folds,
        shards=branch_shards,
        noise=augment_inputs,
        histories=lambda w: branch_fold_files("history.csv", branches=[w.branch]),
    output:
        model=LAYOUT.root / "models" / "{branch}" / "refit" / "model.pt",
        predictions=LAYOUT.root / "models" / "{branch}" / "refit" / "predictions.parquet",
        info=LAYOUT.root / "models" / "{branch}" / "refit" / "refit.json",
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        train=train_params,
    benchmark:
        LAYOUT.root / "benchmarks" / "train" / "{branch}_refit.tsv"
    log:
        LAYOUT.root / "logs" / "train" / "{branch}_refit.log",
    threads: TRAIN_THREADS
    resources:
        gpu=0,
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.cli} refit --config {params.config:q} --branch {wildcards.branch} --log {log:q}"
