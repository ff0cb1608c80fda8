# ---- ssl stage: one job per shard ----
rule extract_ssl:
    input:
        LAYOUT.root / "shards" / "{k}.json",
    output:
        h5=LAYOUT.root / "ssl" / "{k}.h5",
        summary=LAYOUT.root / "ssl" / "{k}.json",
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        spec=params_hash("ssl"),
    benchmark:
        LAYOUT.root / "benchmarks" / "ssl" / "{k}.tsv"
    log:
        LAYOUT.root / "logs" / "ssl" / "{k}.log",
    threads: 4
    resources:
        gpu=0,
    group:
        "extract"
    conda:
        "../../envs/features.yaml"
    shell:
        "{params.cli} extract-ssl --config {params.config:q} --shard {wildcards.k} "
        "--workers {threads} --log {log:q}"
