# ---- extraction stages (audio, faces, egemaps, ssl, face_cnn; the selected branches' run) ----
# Per stage, one job computes every clip missing from the per-clip cache (imports and models
# loaded once, all its cores busy); then one cheap job per shard assembles the shard from the
# cache by raw chunk copy. The compute job is a checkpoint the shard jobs wait for without
# taking its output as input: once it ran, only the shards whose clip list (or spec) changed
# are rebuilt. (A plain or ancient() input would rebuild every shard: Snakemake reruns the
# dependents of a job that runs without looking at their own files.)
for _stage in ALL_STAGES:

    checkpoint:
        name:
            f"compute_{_stage}"
        input:
            [LAYOUT.shard_list(k) for k in SHARDS],
            # face_cnn encodes the faces stage's cached faces: after it, when it runs too
            [LAYOUT.computed("faces")] if _stage == "face_cnn" and "faces" in STAGES else [],
        output:
            LAYOUT.computed(_stage),
        params:
            cli=EMOFLOW,
            config=CONFIG_JSON,
            stage=_stage,  # (shell commands are formatted at run time, after the loop)
            spec=params_hash(_stage),
        benchmark:
            LAYOUT.root / "benchmarks" / _stage / "compute.tsv"
        log:
            LAYOUT.root / "logs" / _stage / "compute.log",
        # every core Snakemake may use (--cores caps it; on SLURM set-threads sizes it)
        threads: 256
        resources:
            gpu=0,  # the SLURM profile gives compute_ssl a GPU
        conda:
            "../../envs/features.yaml"
        shell:
            "{params.cli} compute-{params.stage} --config {params.config:q} --workers {threads} "
            "--log {log:q}"

    rule:
        name:
            f"extract_{_stage}"
        input:
            shard_list=LAYOUT.root / "shards" / "{k}.json",
            computed=after_checkpoint(f"compute_{_stage}"),
        output:
            h5=LAYOUT.root / _stage / "{k}.h5",
            summary=LAYOUT.root / _stage / "{k}.json",
        params:
            cli=EMOFLOW,
            config=CONFIG_JSON,
            stage=_stage,
            spec=params_hash(_stage),
        benchmark:
            LAYOUT.root / "benchmarks" / _stage / "{k}.tsv"
        log:
            LAYOUT.root / "logs" / _stage / "{k}.log",
        threads: 1
        conda:
            "../../envs/features.yaml"
        shell:
            "{params.cli} extract-{params.stage} --config {params.config:q} "
            "--shard {wildcards.k} --workers {threads} --log {log:q}"
