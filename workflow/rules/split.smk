# ---- the evaluation protocol's folds (k-fold, official split or a fold file), checked ----
rule split:
    input:
        manifest=LAYOUT.manifest,
        fold_file=[CFG["folds"]["file"]] if CFG["folds"]["file"] else [],
    output:
        folds=LAYOUT.folds,
        protocol=LAYOUT.protocol,
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        folds=params_hash(["folds"]),
        target=CFG["train"]["target"],
    benchmark:
        LAYOUT.root / "benchmarks" / "split.tsv"
    log:
        LAYOUT.log("split.log"),
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.cli} split --config {params.config:q} --log {log:q}"


# ---- inner folds inside each fold's training part: fusion's out-of-fold predictions ----
rule inner_split:
    input:
        folds=LAYOUT.folds,
    output:
        LAYOUT.inner_folds,
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        inner=stable_hash({"folds": CFG["folds"], "n": CFG["fusion"]["inner_folds"]}),
    log:
        LAYOUT.log("inner_split.log"),
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.cli} inner-split --config {params.config:q} --log {log:q}"
