# ---- face stage: one job per shard ----
rule extract_faces:
    input:
        LAYOUT.root / "shards" / "{k}.json",
    output:
        h5=LAYOUT.root / "faces" / "{k}.h5",
        summary=LAYOUT.root / "faces" / "{k}.json",
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        spec=params_hash("faces"),
    benchmark:
        LAYOUT.root / "benchmarks" / "faces" / "{k}.tsv"
    log:
        LAYOUT.root / "logs" / "faces" / "{k}.log",
    threads: 4
    group:
        "extract"
    conda:
        "../../envs/features.yaml"
    shell:
        "{params.cli} extract-faces --config {params.config:q} --shard {wildcards.k} "
        "--workers {threads} --log {log:q}"
