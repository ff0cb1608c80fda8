"""The adapter registry: ``dataset.adapter`` -> the function that scans that corpus."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from emoflow.config import validate_config
from emoflow.datasets import (
    afew,
    affwild2,
    cremad,
    csvfile,
    enterface,
    omg,
    ravdess,
    savee,
    tess,
    timeseries,
)
from emoflow.datasets.records import ScanResult
from emoflow.errors import ConfigError

Adapter = Callable[[Path, dict[str, Any]], ScanResult]

ADAPTERS: dict[str, Adapter] = {
    "ravdess": ravdess.scan,
    "cremad": cremad.scan,
    "enterface": enterface.scan,
    "tess": tess.scan,
    "savee": savee.scan,
    "afew": afew.scan,
    "omg": omg.scan,
    "csv": csvfile.scan,
    "affwild2": affwild2.scan,
    "timeseries": timeseries.scan,
}


def scan_dataset(dataset_cfg: dict[str, Any]) -> ScanResult:
    """Scan the dataset that ``dataset_cfg`` (``config["dataset"]``) names.

    The section is validated against the config schema and missing defaults are filled.
    Raises ConfigError for an invalid section (unknown adapter...), a root that is not a
    folder, or an unusable labels table (missing, not UTF-8, a required column missing).
    """
    cfg = validate_config({"dataset": dataset_cfg})["dataset"]  # fills any missing default
    root = Path(cfg["root"]).expanduser()
    if not root.is_dir():
        raise ConfigError(f"dataset.root: {str(root)!r} is not a folder")
    return ADAPTERS[cfg["adapter"]](root.resolve(), cfg)
