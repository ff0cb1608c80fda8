# ---- speaker-independent folds (or the official split), with a leakage check ----
rule split:
    input:
        LAYOUT.manifest,
    output:
        LAYOUT.folds,
    params:
        folds=params_hash(["folds"]),
        target=CFG["train"]["target"],
    log:
        LAYOUT.log("split.log"),
    conda:
        "../../envs/training.yaml"
    shell:
        "{EMOFLOW} split --config {CONFIG_JSON:q} --log {log:q}"
