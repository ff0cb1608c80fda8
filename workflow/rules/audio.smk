# ---- audio stage: one job per shard ----
rule extract_audio:
    input:
        LAYOUT.root / "shards" / "{k}.json",
    output:
        h5=LAYOUT.root / "audio" / "{k}.h5",
        summary=LAYOUT.root / "audio" / "{k}.json",
    params:
        spec=params_hash("audio"),
    log:
        LAYOUT.root / "logs" / "audio" / "{k}.log",
    threads: 4
    group:
        "extract"
    conda:
        "../../envs/features.yaml"
    shell:
        "{EMOFLOW} extract-audio --config {CONFIG_JSON:q} --shard {wildcards.k} "
        "--workers {threads} --log {log:q}"
