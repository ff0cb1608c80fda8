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
