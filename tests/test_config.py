"""Config validation: defaults, unknown keys named, types checked, YAML loaded safely."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emoflow.config import load_config, stable_hash, validate_config
from emoflow.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
MIN = {"dataset": {"name": "x", "adapter": "ravdess", "root": "data/x"}}


def test_shipped_config_is_valid_and_filled() -> None:
    cfg = load_config(REPO / "config.yaml")
    assert cfg["dataset"]["name"] == "demo"
    assert cfg["audio"]["n_mels"] == 48 and cfg["audio"]["n_fft"] == 2048  # the demo's own
    assert cfg["faces"]["openface"]["model"] == "model/main_clnf_general.txt"
    assert cfg["train"]["seeds"] == [0, 1, 2] and cfg["fusion"]["fit_on"] == "inner"


def test_defaults_filled_without_touching_input() -> None:
    cfg = validate_config(MIN)
    assert cfg["shards"] == 4 and cfg["faces"]["frames"] == 16
    assert cfg["train"]["seeds"] == [0]
    assert cfg["fusion"] == {"methods": ["late", "stacking", "feature"], "fit_on": "inner",
                             "inner_folds": 3}  # fmt: skip
    assert "shards" not in MIN


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"audoi": {}}, "audoi"),
        ({"audio": {"n_mel": 64}}, "audio.n_mel"),
        ({"faces": {"openface": {"binary": "x"}}}, "faces.openface.binary"),
        ({"audio": {"n_mels": "many"}}, "audio.n_mels"),
        ({"faces": {"backend": "mediapipe"}}, "faces.backend"),
        ({"shards": 0}, "shards"),
    ],
)
def test_bad_keys_are_named(patch: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        validate_config({**MIN, **patch})


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    bad = tmp_path / "evil.yaml"
    bad.write_text("dataset: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError):
        load_config(bad)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_stable_hash_ignores_key_order() -> None:
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_snakemake_dry_run_names_a_typod_key(tmp_path: Path) -> None:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["audio"]["n_mesl"] = 64
    cfg["dataset"]["root"] = str(tmp_path / "none")
    cfg["results"] = str(tmp_path / "results")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    snakemake = Path(sys.executable).parent / "snakemake"
    proc = subprocess.run(
        [str(snakemake), "-n", "--configfile", str(path), "--cores", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "audio.n_mesl" in proc.stdout + proc.stderr
