# ---- failures table: scan rejections + every shard's failed clips ----
rule failures:
    input:
        scan=LAYOUT.scan_failures,
        summaries=[LAYOUT.shard_summary(s, k) for s in STAGES for k in SHARDS],
    output:
        LAYOUT.failures,
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        strict=CFG["strict"],
    log:
        LAYOUT.log("failures.log"),
    conda:
        "../../envs/features.yaml"
    shell:
        "{params.cli} failures --config {params.config:q} --log {log:q}"
