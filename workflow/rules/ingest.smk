# ---- failures table: scan rejections + every shard's failed clips ----
rule failures:
    input:
        scan=LAYOUT.scan_failures,
        summaries=[LAYOUT.shard_summary(s, k) for s in STAGES for k in SHARDS],
    output:
        LAYOUT.failures,
    params:
        strict=CFG["strict"],
    log:
        LAYOUT.log("failures.log"),
    conda:
        "../../envs/features.yaml"
    shell:
        "{EMOFLOW} failures --config {CONFIG_JSON:q} --log {log:q}"
