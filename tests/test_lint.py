"""The code base stays lint-clean: ruff (lint + format) and `snakemake --lint`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.workflow import REPO, env, write_config

BIN = Path(sys.executable).parent


def test_ruff_clean() -> None:
    for args in (
        ["check", "src", "tests", "bench"],
        ["format", "--check", "src", "tests", "bench"],
    ):
        proc = subprocess.run([str(BIN / "ruff"), *args], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_lint_clean(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path / "data", tmp_path / "results")
    cmd = [str(BIN / "snakemake"), "--lint", "--configfile", str(cfg)]
    proc = subprocess.run(cmd, cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
