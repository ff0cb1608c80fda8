# ---- speaker-independent folds (or the official split), with a leakage check ----
rule split:
    input:
        LAYOUT.manifest,
    output:
        LAYOUT.folds,
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
