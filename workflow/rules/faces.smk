# ---- face stage: one job computes every clip missing from the per-clip cache (imports and
# models loaded once, all its cores busy); then one cheap job per shard assembles the shard from
# the cache by raw chunk copy. The compute job is a checkpoint the shard jobs wait for without
# taking its output as input: once it ran, only the shards whose clip list (or spec) changed
# are rebuilt. (A plain or ancient() input would rebuild every shard: Snakemake reruns the
# dependents of a job that runs without looking at their own files.) ----
checkpoint compute_faces:
    input:
        [LAYOUT.shard_list(k) for k in SHARDS],
    output:
        LAYOUT.computed("faces"),
    params:
        cli=EMOFLOW,
        config=CONFIG_JSON,
        spec=params_hash("faces"),
    benchmark:
        LAYOUT.root / "benchmarks" / "faces" / "compute.tsv"
    log:
        LAYOUT.root / "logs" / "faces" / "compute.log",
    # every core Snakemake may use (--cores caps it; on SLURM set-threads sizes it)
    threads: 256
    conda:
        "../../envs/features.yaml"
    shell:
        "{params.cli} compute-faces --config {params.config:q} --workers {threads} --log {log:q}"


rule extract_faces:
    input:
        shard_list=LAYOUT.root / "shards" / "{k}.json",
        computed=after_checkpoint("compute_faces"),
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
    threads: 1
    conda:
        "../../envs/features.yaml"
    shell:
        "{params.cli} extract-faces --config {params.config:q} --shard {wildcards.k} "
        "--workers {threads} --log {log:q}"
