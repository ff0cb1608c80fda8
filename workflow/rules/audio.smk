# ---- audio stage: one job computes every clip missing from the per-clip cache (imports and
# models loaded once, all its cores busy); then one cheap job per shard assembles the shard from
# the cache by raw chunk copy. The compute job is a checkpoint the shard jobs wait for without
# taking its output as input: once it ran, only the shards whose clip list (or spec) changed
# are rebuilt. (A plain or ancient() input would rebuild every shard: Snakemake reruns the
# dependents of a job that runs without looking at their own files.) ----
checkpoint compute_audio:
    input:
        [LAYOUT.shard_list(k) for k in SHARDS],
    output:
        LAYOUT.computed("audio"),
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        spec=params_hash("audio"),
    benchmark:
        LAYOUT.root / "benchmarks" / "audio" / "compute.tsv"
    log:
        LAYOUT.root / "logs" / "audio" / "compute.log",
    # every core Snakemake may use (--cores caps it; on SLURM set-threads sizes it)
    threads: 256
    conda:
        "../../envs/features.yaml"
    shell:
        "{params.cli} compute-audio --config {params.config:q} --workers {threads} --log {log:q}"


rule extract_audio:
    input:
        shard_list=LAYOUT.root / "shards" / "{k}.json",
        computed=after_checkpoint("compute_audio"),
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
    threads: 1
    conda:
        "../../envs/features.yaml"
    shell:
        "{params.cli} extract-audio --config {params.config:q} --shard {wildcards.k} "
        "--workers {threads} --log {log:q}"
