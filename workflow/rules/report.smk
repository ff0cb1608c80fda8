# ---- result tables, figures, failures summary and provenance ----
rule evaluate:
    input:
        fused=expand(
            LAYOUT.root / "fusion" / "fold{fold}" / "seed{seed}.parquet", fold=FOLDS, seed=SEEDS
        ),
        histories=branch_fold_files("history.csv"),
        manifest=LAYOUT.manifest,
        tracks=TRACKS,
        failures=LAYOUT.failures,
        protocol=LAYOUT.protocol,
    output:
        csv=report(
            LAYOUT.report / "results.csv",
            caption="../report/results.rst",
            category="Results",
        ),
        md=LAYOUT.report / "results.md",
        tex=LAYOUT.report / "results.tex",
        summary=report(
            LAYOUT.report / "summary.md",
            caption="../report/summary.rst",
            category="Results",
        ),
        figures=report(
            directory(LAYOUT.report / "figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        report=params_hash(["report", "tracks"]) if TRACKS else params_hash(["report"]),
    benchmark:
        LAYOUT.root / "benchmarks" / "evaluate.tsv"
    log:
        LAYOUT.log("evaluate.log"),
    conda:
        "../../envs/training.yaml"
    shell:
        "{params.cli} evaluate --config {params.config:q} --log {log:q}"
