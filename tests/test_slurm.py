"""A toy workflow through a real single-node SLURM cluster with the test profile.

Shows that the cluster side works end to end: the plugin submits with the profile's resources,
the production GPU request (``gres: gpu:1``) reaches ``sbatch`` and is recorded by SLURM, grouped
shard jobs share one SLURM job, and a failing rule makes Snakemake exit non-zero naming the
rule's log. Needs root and Debian's slurm packages (``.ci/slurm-install.sh``).
"""

from __future__ import annotations

import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from slurm_cluster import SlurmCluster, slurm_cluster_fixture

REPO = Path(__file__).resolve().parents[1]
TEST_PROFILE = REPO / "tests" / "slurm_profile"
PROD_PROFILE = REPO / "workflow" / "profiles" / "slurm"
RUN_TIMEOUT_S = 150  # normally 25-50 s; generous for a loaded CI machine

pytestmark = pytest.mark.slurm

# One fake GPU GRES on the node, so the production request is accepted as it is.
cluster = slurm_cluster_fixture(gpus=1)

TOY_SNAKEFILE = textwrap.dedent(
    """
    SHARDS = [0, 1]

    rule all:
        input: "out/model.txt"

    rule extract_audio:
        output: "out/audio/{shard}.txt"
        log: "logs/extract_audio/{shard}.log"
        group: "extract"
        shell: "echo shard {wildcards.shard} job $SLURM_JOB_ID > {output} 2> {log}"

    rule train:
        input: expand("out/audio/{shard}.txt", shard=SHARDS)
        output: "out/model.txt"
        log: "logs/train.log"
        shell: "(cat {input}; echo gpus=${{SLURM_JOB_GPUS:-none}}) > {output} 2> {log}"

    rule boom:
        output: "out/boom.txt"
        log: "logs/boom.log"
        shell: "echo failing on purpose > {log}; exit 3"
    """
)


def run_snakemake(
    cluster: SlurmCluster, workdir: Path, *targets: str
) -> subprocess.CompletedProcess[str]:
    """Run Snakemake in ``workdir`` through the cluster with the test profile (debug logging)."""
    return cluster.run_snakemake(
        workdir, "--verbose", *targets, profile=TEST_PROFILE, jobs=4, timeout_s=RUN_TIMEOUT_S
    )


def train_request(profile: Path) -> dict[str, object]:
    """Return the set-resources entry of the train rule in a profile."""
    config = yaml.safe_load((profile / "config.yaml").read_text())
    return dict(config["set-resources"]["train"])


def test_toy_workflow_through_slurm(cluster: SlurmCluster, tmp_path: Path) -> None:
    """Two rules run as SLURM jobs; the GPU request is visible; a failing rule fails the run
    (one ``--keep-going`` run: the good jobs complete next to the failing one)."""
    workdir = tmp_path / "wf"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(TOY_SNAKEFILE)

    # The test profile asks for the GPU exactly as production does.
    assert train_request(TEST_PROFILE)["gres"] == train_request(PROD_PROFILE)["gres"] == "gpu:1"

    start = time.monotonic()
    run = run_snakemake(cluster, workdir, "--keep-going", "all", "out/boom.txt")
    run_s = time.monotonic() - start
    output = run.stdout + run.stderr
    assert run.returncode not in (0, 124, 137), output  # the failing rule fails the run
    assert (workdir / "out" / "audio" / "0.txt").exists()
    model = (workdir / "out" / "model.txt").read_text()
    assert "shard 0" in model and "shard 1" in model, model
    assert "logs/boom.log" in output, output  # the failing rule's log is named
    assert "failing on purpose" in (workdir / "logs" / "boom.log").read_text()
    assert not (workdir / "out" / "boom.txt").exists()

    # The submit command the plugin logged carries the production request.
    sbatch_calls = [line for line in output.splitlines() if "sbatch call:" in line]
    train_calls = [line for line in sbatch_calls if "rule_train" in line]
    assert train_calls and "--gres=gpu:1" in train_calls[0], sbatch_calls
    assert all("--gres" not in line for line in sbatch_calls if line not in train_calls)

    # SLURM recorded it: the train job holds the GPU GRES, nothing else does.
    jobs = cluster.jobs()
    by_comment = {job.get("Comment", ""): job for job in jobs}
    train_job = next(job for comment, job in by_comment.items() if comment.startswith("rule_train"))
    assert train_job["JobState"] == "COMPLETED", train_job
    assert "gpu:1" in train_job.get("TresPerNode", ""), train_job
    others = [job for job in jobs if job is not train_job]
    assert others and all("gpu" not in job.get("TresPerNode", "") for job in others), others
    boom = [job for job in others if job.get("Comment", "").startswith("rule_boom")]
    assert len(boom) == 1 and boom[0]["JobState"] != "COMPLETED", boom
    # The two extraction shards were grouped into one SLURM job (group-components 2).
    assert len(jobs) == 3, [job.get("Comment") for job in jobs]

    print(f"toy workflow through SLURM, with the failing rule: {run_s:.1f} s")


def test_shard_clips_on_a_dask_slurm_cluster(cluster: SlurmCluster, tmp_path: Path) -> None:
    """execution.dask: slurm spreads a shard's clips over dask-jobqueue worker jobs."""
    import os

    from emoflow.config import validate_config
    from emoflow.datasets.manifest import refresh
    from emoflow.demo.corpus import make_demo_corpus
    from emoflow.extraction.shard_job import run_shard

    make_demo_corpus(tmp_path / "data", clips=4, seed=2)
    cfg = validate_config({
        "dataset": {"name": "d", "adapter": "ravdess", "root": str(tmp_path / "data")},
        "results": str(tmp_path / "results"), "shards": 1,
        "execution": {"dask": "slurm", "slurm": {"queue": "debug", "jobs": 1, "cores": 1,
                      "memory": "1GB", "walltime": "00:10:00", "interface": "lo"}},
    })  # fmt: skip
    refresh(cfg)
    saved = dict(os.environ)
    os.environ.update(cluster.env)
    try:
        summary = run_shard(cfg, "audio", 0)
        jobs = cluster.jobs()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert summary["with_features"] == 4 and len(summary["computed"]) == 4
    assert any("dask" in job.get("JobName", "") for job in jobs), jobs
    # the worker jobs' logs go under the results, never into the working directory
    assert list((tmp_path / "results" / "d" / "logs" / "dask").glob("*.out"))
    assert not list(Path.cwd().glob("slurm-*.out"))
