"""The conda environment files in envs/ agree with pyproject.toml's pinned dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
ENV_DIR = REPO / "envs"
ENV_FILES = sorted(ENV_DIR.glob("*.yaml"))
RULES_DIR = REPO / "workflow" / "rules"


def requirement_key(text: str) -> tuple[str, frozenset[str], str]:
    """Return (canonical name, extras, specifier) of a PEP 508 requirement string."""
    req = Requirement(text)
    return canonicalize_name(req.name), frozenset(req.extras), str(req.specifier)


def pyproject_pins() -> dict[str, tuple[str, frozenset[str], str]]:
    """Return pyproject's [project].dependencies keyed by canonical name."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    keys = [requirement_key(dep) for dep in project["dependencies"]]
    return {key[0]: key for key in keys}


def load_env(path: Path) -> dict[str, Any]:
    """Parse one environment file."""
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict), path
    return env


def pip_entries(env: dict[str, Any]) -> list[str]:
    """Return the pip section of a conda environment (empty when there is none)."""
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict) and "pip" in dep:
            return list(dep["pip"])
    return []


def conda_entries(env: dict[str, Any]) -> list[str]:
    """Return the conda (non-pip) package specs of an environment."""
    return [dep for dep in env.get("dependencies", []) if isinstance(dep, str)]


def test_env_files_exist() -> None:
    """The two stage-group environments are there."""
    names = {path.name for path in ENV_FILES}
    assert {"features.yaml", "training.yaml"} <= names, names


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_parses_and_pins_match_pyproject(path: Path) -> None:
    """Each env parses, uses conda-forge, Python 3.11, and pins exactly as pyproject does."""
    env = load_env(path)
    assert env.get("channels", [])[0] == "conda-forge", env.get("channels")
    assert "python=3.11" in conda_entries(env)
    pins = pyproject_pins()
    pip = pip_entries(env)
    assert pip, f"{path.name} has no pip section"
    for entry in pip:
        assert not entry.startswith(("-e", ".", "/")), f"{path.name}: local path {entry!r}"
        key = requirement_key(entry)
        assert key[0] in pins, f"{path.name}: {entry!r} is not a pyproject dependency"
        assert key == pins[key[0]], f"{path.name}: {entry!r} differs from pyproject {pins[key[0]]}"
        assert key[2].startswith("=="), f"{path.name}: {entry!r} is not an exact pin"
    names = [requirement_key(entry)[0] for entry in pip]
    assert len(names) == len(set(names)), f"{path.name}: duplicate entries"


def test_every_pyproject_dependency_is_in_an_env() -> None:
    """No dependency of pyproject is forgotten by all environments."""
    covered = {
        requirement_key(entry)[0] for path in ENV_FILES for entry in pip_entries(load_env(path))
    }
    missing = sorted(set(pyproject_pins()) - covered)
    assert not missing, f"pyproject dependencies in no envs/*.yaml: {missing}"


def test_only_training_env_has_torch() -> None:
    """Feature extraction does not pull the 750 MB torch wheel."""
    features = {requirement_key(e)[0] for e in pip_entries(load_env(ENV_DIR / "features.yaml"))}
    training = {requirement_key(e)[0] for e in pip_entries(load_env(ENV_DIR / "training.yaml"))}
    assert "torch" not in features
    assert "torch" in training


def test_rule_conda_paths_resolve() -> None:
    """Every `conda:` path in workflow/rules/*.smk exists relative to its rule file."""
    pattern = re.compile(r"^\s*conda:\s*[\"']([^\"']+)[\"']", re.MULTILINE)
    for smk in sorted(RULES_DIR.glob("*.smk")):
        for rel in pattern.findall(smk.read_text()):
            target = (smk.parent / rel).resolve()
            assert target.is_file(), f"{smk.name}: conda env {rel} -> {target} does not exist"
            assert target.parent == ENV_DIR, f"{smk.name}: {rel} is not in envs/"
    # What the rules are expected to write:
    assert (RULES_DIR / "../../envs/features.yaml").resolve() == ENV_DIR / "features.yaml"
