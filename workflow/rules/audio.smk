# ---- audio stage: one job per shard ----
rule extract_audio:
    input:
        LAYOUT.root / "shards" / "{k}.json",
    output:
        h5=LAYOUT.root / "audio" / "{k}.h5",
        summary=LAYOUT.root / "audio" / "{k}.json",
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        spec=params_hash("audio"),
    benchmark:
        LAYOUT.root / "benchmarks" / "audio" / "{k}.tsv"
    log:
        LAYOUT.root / "logs" / "audio" / "{k}.log",
    threads: 4
    group:
        "extract"
    conda:
        "../../envs/features.yaml"
    shell:
        "{params.cli} extract-audio --config {params.config:q} --shard {wildcards.k} "
        "--workers {threads} --log {log:q}"
