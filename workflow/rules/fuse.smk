# ---- late, stacking and feature-level fusion per (fold, seed) ----
rule fuse:
    input:
        unpack(branch_predictions),
        folds=LAYOUT.folds,
        inner=inner_predictions,
    output:
        fused=LAYOUT.root / "fusion" / "fold{fold}" / "seed{seed}.parquet",
        weights=LAYOUT.root / "fusion" / "fold{fold}" / "seed{seed}.json",
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        fusion=params_hash(["fusion"]),
    log:
        LAYOUT.root / "logs" / "fuse" / "fold{fold}_seed{seed}.log",
    benchmark:
        LAYOUT.root / "benchmarks" / "fuse" / "fold{fold}_seed{seed}.tsv"
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.cli} fuse --config {params.config:q} --fold {wildcards.fold} "
        "--seed {wildcards.seed} --log {log:q}"


rule bundle:
    input:
        bundle_inputs(),
    output:
        expand(LAYOUT.bundle / "{branch}.pt", branch=BRANCHES),
        LAYOUT.bundle / "bundle.json",
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        bundle=params_hash(["bundle", "fusion", "tracks"]) if TRACKS else params_hash(["bundle", "fusion"]),
    log:
        LAYOUT.log("bundle.log"),
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.cli} bundle --config {params.config:q} --log {log:q}"
