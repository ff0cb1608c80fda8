"""The code base stays lint-clean: ruff (lint + format) and `snakemake --lint`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.workflow import REPO, env

BIN = Path(sys.executable).parent


def test_ruff_clean() -> None:
    for args in (
        ["check", "src", "tests", "bench"],
        ["format", "--check", "src", "tests", "bench"],
    ):
        proc = subprocess.run([str(BIN / "ruff"), *args], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_lint_clean() -> None:
    proc = subprocess.run([str(BIN / "snakemake"), "--lint"], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
