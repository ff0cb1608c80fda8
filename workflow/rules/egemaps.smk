# ---- egemaps stage: one job per shard ----
rule extract_egemaps:
    input:
        LAYOUT.root / "shards" / "{k}.json",
    output:
        h5=LAYOUT.root / "egemaps" / "{k}.h5",
        summary=LAYOUT.root / "egemaps" / "{k}.json",
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        spec=params_hash("egemaps"),
    benchmark:
        LAYOUT.root / "benchmarks" / "egemaps" / "{k}.tsv"
    log:
        LAYOUT.root / "logs" / "egemaps" / "{k}.log",
    threads: 4
    group:
        "extract"
    conda:
        "../../envs/features.yaml"
    shell:
        "{params.cli} extract-egemaps --config {params.config:q} --shard {wildcards.k} "
        "--workers {threads} --log {log:q}"
