"""Where every output lives: one place for the CLI, the stages and the Snakefile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emoflow.config import Config, results_dir


@dataclass(frozen=True)
class Layout:
    """Output paths of one dataset's run (all under ``<results>/<name>/``)."""

    root: Path

    @classmethod
    def of(cls, config: Config) -> Layout:
        return cls(results_dir(config))

    @property
    def config_json(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def scan_failures(self) -> Path:
        return self.root / "scan_failures.parquet"

    @property
    def failures(self) -> Path:
        return self.root / "failures.parquet"

    @property
    def folds(self) -> Path:
        return self.root / "folds.parquet"

    @property
    def inner_folds(self) -> Path:
        """The inner folds that fusion's out-of-fold predictions come from."""
        return self.root / "inner_folds.parquet"

    @property
    def protocol(self) -> Path:
        return self.root / "protocol.json"

    def shard_list(self, k: int) -> Path:
        return self.root / "shards" / f"{k}.json"

    def shard(self, stage: str, k: int) -> Path:
        return self.root / stage / f"{k}.h5"

    def shard_summary(self, stage: str, k: int) -> Path:
        return self.root / stage / f"{k}.json"

    def computed(self, stage: str) -> Path:
        """The summary of a stage's compute job (every clip missing from the per-clip cache)."""
        return self.root / "computed" / f"{stage}.json"

    def model_dir(self, branch: str, fold: int, seed: int) -> Path:
        return self.root / "models" / branch / f"fold{fold}" / f"seed{seed}"

    def inner_dir(self, branch: str, fold: int, inner: int) -> Path:
        """A branch trained on one inner fold of an outer fold (first seed)."""
        return self.root / "models" / branch / f"fold{fold}" / f"inner{inner}"

    def refit_dir(self, branch: str) -> Path:
        return self.root / "models" / branch / "refit"

    def fused(self, fold: int, seed: int) -> Path:
        return self.root / "fusion" / f"fold{fold}" / f"seed{seed}.parquet"

    def fusion_weights(self, fold: int, seed: int) -> Path:
        return self.root / "fusion" / f"fold{fold}" / f"seed{seed}.json"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def bundle(self) -> Path:
        return self.root / "model"

    def log(self, *parts: str) -> Path:
        return self.root / "logs" / Path(*parts)


def prepare_job_environment(workflow_dir: str | Path) -> None:
    """Let jobs run ``python -m emoflow`` from this checkout, with or without conda envs.

    Puts ``<workflow_dir>/src`` on PYTHONPATH and the running interpreter's folder first on
    PATH (so ``.venv/bin/snakemake`` works without activating the venv; conda activation
    still puts an environment's own python first).
    """
    import os
    import sys

    src = str(Path(workflow_dir) / "src")
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if src not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([src, *paths])
    bindir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = os.pathsep.join([bindir, os.environ.get("PATH", "")])
