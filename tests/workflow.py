"""Run the real workflow (Snakemake in a subprocess) on small corpora made in tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def env() -> dict[str, str]:
    """The environment of a workflow run: the venv's emoflow and snakemake first on PATH."""
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    return e


def write_config(path: Path, data_root: Path, results: Path, **overrides: object) -> Path:
    """A workflow config for a small test corpus (tiny training), merged with ``overrides``."""
    cfg: dict = {
        "dataset": {"name": "t", "adapter": "ravdess", "root": str(data_root)},
        "results": str(results),
        "shards": 3,
        "folds": {"k": 3},
        # faces resized to 24 px for the visual CNN: a third of the training time at 64 px
        "train": {"epochs": 2, "patience": 2, "batch_size": 8, "seeds": [0], "visual_size": 24},
        "report": {"bootstrap": 50},
        # small test corpora have too few speakers for inner folds (tests/test_numerics.py and
        # tests/test_fuse.py fit on them)
        "fusion": {"fit_on": "val"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def snakemake(
    config: Path, *args: str, check: bool = True, timeout: int = 900, cores: int = 2
) -> subprocess.CompletedProcess[str]:
    """``snakemake --configfile config --cores <cores> *args`` in the repository."""
    cmd = [str(BIN / "snakemake"), "--configfile", str(config), "--cores", str(cores), *args]
    proc = subprocess.run(
        cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def planned_jobs(config: Path, *targets: str) -> dict[str, int]:
    """What ``snakemake -n`` would run: rule name -> job count ({} when nothing to do)."""
    out = snakemake(config, "-n", *targets).stdout
    jobs: dict[str, int] = {}
    in_table = False
    for line in out.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table:
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] == "total":
                    break
                jobs[parts[0]] = int(parts[1])
            elif parts and not set(parts[0]) <= {"-"}:
                break
    return jobs


def linked_clips(corpus: Path, dest: Path, n: int | None = None) -> list[Path]:
    """Hard-link the first ``n`` clips (sorted paths) of ``corpus`` into ``dest``, keeping their
    folders; return the new paths (sorted). A session corpus stays untouched."""
    out = []
    for clip in sorted(corpus.rglob("*.mp4"))[:n]:
        target = dest / clip.relative_to(corpus)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(clip, target)
        out.append(target)
    return out


def mtimes(root: Path) -> dict[str, int]:
    """mtime_ns of every output under ``root`` (logs and hidden internal files excluded)."""
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in sorted(root.rglob("*"))
        if p.is_file() and "logs" not in p.parts and not p.name.startswith(".")
    }
