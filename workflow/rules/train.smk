# ---- one training job per (branch, fold, seed); the only rule that asks for a GPU ----
rule train:
    input:
        manifest=LAYOUT.manifest,
        folds=LAYOUT.folds,
        shards=branch_shards,
    output:
        model=LAYOUT.root / "models" / "{branch}" / "fold{fold}" / "seed{seed}" / "model.pt",
        predictions=LAYOUT.root / "models" / "{branch}" / "fold{fold}" / "seed{seed}" / "predictions.parquet",
        history=LAYOUT.root / "models" / "{branch}" / "fold{fold}" / "seed{seed}" / "history.csv",
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        train=params_hash(["train", "folds"]),
    benchmark:
        LAYOUT.root / "benchmarks" / "train" / "{branch}_fold{fold}_seed{seed}.tsv"
    log:
        LAYOUT.root / "logs" / "train" / "{branch}_fold{fold}_seed{seed}.log",
    threads: 2
    resources:
        gpu=0,
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.cli} train --config {params.config:q} --branch {wildcards.branch} "
        "--fold {wildcards.fold} --seed {wildcards.seed} --log {log:q}"
