"""The whole workflow: byte-identical tables on clean reruns, and the same through SLURM."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from emoflow.demo import make_demo_corpus
from tests.workflow import REPO, snakemake, write_config

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import slurm_cluster  # noqa: E402

TABLES = ("results.csv", "results.md", "results.tex", "per_class.csv")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    make_demo_corpus(root, clips=12, seed=7)
    return root


def run_config(corpus: Path, base: Path) -> Path:
    """All stages, one fold (of 3) to keep the runs short; both branches, all fusions."""
    cache = {"dir": str(base / "cache")}
    folds = {"k": 3, "only": [0]}
    return write_config(base / "cfg.yaml", corpus, base / "results", cache=cache, folds=folds)


def clean_run(corpus: Path, base: Path) -> Path:
    cfg = run_config(corpus, base)
    snakemake(cfg)
    return base / "results" / "t"


@pytest.fixture(scope="module")
def local_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clean_run(corpus, tmp_path_factory.mktemp("run_a"))


@pytest.mark.slow
def test_clean_reruns_give_byte_identical_tables(
    corpus: Path, local_run: Path, tmp_path: Path
) -> None:
    other = clean_run(corpus, tmp_path)
    for name in TABLES:
        assert (local_run / "report" / name).read_bytes() == (other / "report" / name).read_bytes()
    for pred in sorted((local_run / "models").rglob("predictions.parquet")):
        twin = other / pred.relative_to(local_run)
        assert pred.read_bytes() == twin.read_bytes(), pred
    table = (local_run / "report" / "results.md").read_text()
    for row in ("Audio", "Visual", "Late fusion", "Stacking", "Feature fusion"):
        assert f"| {row} |" in table
    # one self-contained HTML report with the tables and figures
    html = tmp_path / "report.html"
    snakemake(run_config(corpus, local_run.parent.parent), "--report", str(html))
    text = html.read_text(errors="replace")
    assert html.stat().st_size > 100_000 and "results.csv" in text and "confusion_late" in text
    manifest = pd.read_parquet(local_run / "manifest.parquet")
    assert len(manifest) == 12 and set(manifest.label) == {"neutral", "happy", "sad", "angry"}


@pytest.mark.slurm
def test_workflow_through_slurm_matches_local_run(
    corpus: Path, local_run: Path, tmp_path: Path
) -> None:
    cfg = run_config(corpus, tmp_path)
    with slurm_cluster(tmp_path / "cluster", gpus=1) as cluster:
        proc = cluster.run_snakemake(
            REPO, "--configfile", str(cfg), "--verbose", profile=REPO / "tests" / "slurm_profile",
            jobs=2, timeout_s=900,
        )  # fmt: skip
        jobs = cluster.jobs()
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:] + cluster.logs()
    out = tmp_path / "results" / "t"
    for name in TABLES:
        assert (out / "report" / name).read_bytes() == (local_run / "report" / name).read_bytes()
    # only training (per fold, and the bundle's refit) asks for a GPU: the request reached
    # sbatch and SLURM recorded it
    gpu_rules = ("rule_train", "rule_refit")
    train = [j for j in jobs if j.get("Comment", "").startswith(gpu_rules)]
    other = [j for j in jobs if j not in train]
    assert len(train) == 4 and all("gpu:1" in j.get("TresPerNode", "") for j in train)
    assert other and not any("gpu" in j.get("TresPerNode", "") for j in other)
    sbatch = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "sbatch call:" in ln]
    assert all(("--gres=gpu:1" in ln) == any(r in ln for r in gpu_rules) for ln in sbatch)
