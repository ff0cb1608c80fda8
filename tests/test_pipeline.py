"""The whole workflow (the session's ``torture_run``, see conftest.py): its tables and HTML
report, and the same run through SLURM as a clean rerun that must give the same bytes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from emoflow.demo.clips import EMOTIONS
from tests.workflow import REPO, snakemake

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import slurm_cluster  # noqa: E402

TABLES = ("results.csv", "results.md", "results.tex", "per_class.csv")
Run = tuple[Path, Path, dict]


@pytest.mark.slow
def test_tables_and_the_html_report(torture_run: Run, tmp_path: Path) -> None:
    cfg, out, _ = torture_run
    table = (out / "report" / "results.md").read_text()
    for row in ("Audio", "Visual", "Late fusion", "Stacking", "Feature fusion"):
        assert f"| {row} |" in table
    for name in TABLES:
        assert (out / "report" / name).stat().st_size > 100
    # one self-contained HTML report with the tables and figures
    html = tmp_path / "report.html"
    snakemake(cfg, "--report", str(html))
    text = html.read_text(errors="replace")
    assert html.stat().st_size > 100_000 and "results.csv" in text and "confusion_late" in text
    manifest = pd.read_parquet(out / "manifest.parquet")
    good = manifest[manifest.clip_id.str.startswith("good/")]
    assert len(good) == 12 and set(good.label) == set(EMOTIONS.values())
    # the run read its --configfile alone over the schema's defaults: nothing of the demo's
    # config.yaml (8 face frames, 48 mel bands, 3 seeds) is merged under it
    used = json.loads((out / "config.json").read_text())
    assert used["faces"]["frames"] == 16 and used["audio"]["n_mels"] == 90
    assert used["train"]["seeds"] == [0] and used["train"]["epochs"] == 2


@pytest.mark.slurm
def test_workflow_through_slurm_is_a_byte_identical_clean_rerun(
    torture_run: Run, tmp_path: Path
) -> None:
    """The same config with fresh results (and a fresh per-clip cache under them) through a
    real SLURM cluster: every table and every model's predictions come out byte-identical to the
    local run, and only training asks for a GPU."""
    local_cfg, local, _ = torture_run
    settings = yaml.safe_load(local_cfg.read_text())
    settings["results"] = str(tmp_path / "results")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    with slurm_cluster(tmp_path / "cluster", gpus=1) as cluster:
        proc = cluster.run_snakemake(
            REPO, "--configfile", str(cfg), "--verbose", profile=REPO / "tests" / "slurm_profile",
            jobs=4, timeout_s=900,
        )  # fmt: skip
        jobs = cluster.jobs()
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:] + cluster.logs()
    out = tmp_path / "results" / "t"
    for stage in ("audio", "faces"):  # a clean run: its own cache, every clip computed again
        done = json.loads((out / "computed" / f"{stage}.json").read_text())["computed"]
        assert done == json.loads((local / "computed" / f"{stage}.json").read_text())["computed"]
        assert len(done) > 12
    for name in TABLES:
        assert (out / "report" / name).read_bytes() == (local / "report" / name).read_bytes()
    predictions = sorted((local / "models").rglob("predictions.parquet"))
    assert len(predictions) == 4  # fold 0 and refit, per branch
    for pred in predictions:
        twin = out / pred.relative_to(local)
        assert pred.read_bytes() == twin.read_bytes(), pred
    # only training (per fold, and the bundle's refit) asks for a GPU: the request reached
    # sbatch and SLURM recorded it
    gpu_rules = ("rule_train", "rule_refit")
    train = [j for j in jobs if j.get("Comment", "").startswith(gpu_rules)]
    other = [j for j in jobs if j not in train]
    assert len(train) == 4 and all("gpu:1" in j.get("TresPerNode", "") for j in train)
    assert other and not any("gpu" in j.get("TresPerNode", "") for j in other)
    sbatch = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "sbatch call:" in ln]
    assert all(("--gres=gpu:1" in ln) == any(r in ln for r in gpu_rules) for ln in sbatch)
