"""Configuration: load YAML safely, validate against the JSON schema, fill defaults,
and hash each stage's parameters (the keys of the per-clip cache and of shard specs)."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from emoflow.branches import check_branch_inputs
from emoflow.errors import ConfigError
from emoflow.study import check_study, run_name

Config = dict[str, Any]


@functools.cache
def _parsed_schema() -> dict[str, Any]:
    text = resources.files("emoflow").joinpath("schemas/config.schema.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def load_schema() -> dict[str, Any]:
    """The config JSON schema shipped with the package (also at workflow/schemas/): parsed once
    per process (0.2 s of YAML, and every workflow start validates twice), a copy each call."""
    return copy.deepcopy(_parsed_schema())


def _fill_defaults(instance: Any, schema: dict[str, Any]) -> None:
    """Fill ``default`` values of object properties in place, recursively (array items too)."""
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            _fill_defaults(item, schema["items"])
        return
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub)


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        keys = ", ".join(f"{where}.{k}" if error.absolute_path else k for k in extra)
        return f"unknown config key {keys!s} (allowed here: {', '.join(allowed)})"
    return f"config key {where}: {error.message}"


def validate_config(raw: dict[str, Any]) -> Config:
    """Validate ``raw`` (unchanged) and return a copy with every default filled in.

    Raises ConfigError naming the offending key (unknown, mistyped or out of range).
    """
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a mapping of keys to values")
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("; ".join(_describe(e) for e in errors))
    config = copy.deepcopy(raw)
    _fill_defaults(config, schema)
    problem = check_study(config) or check_branch_inputs(config)
    if problem:
        raise ConfigError(problem)
    return config


def load_config(path: str | Path) -> Config:
    """Read a YAML config with ``yaml.safe_load`` and validate it."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return validate_config(raw or {})


def results_dir(config: Config) -> Path:
    """``<results>/<dataset.name>`` (a study: ``<results>/<study.name>``): where every output
    of the run goes."""
    return Path(config["results"]) / run_name(config)


def cache_dir(config: Config) -> Path:
    """The per-clip cache folder."""
    configured = config["cache"]["dir"]
    return Path(configured) if configured else results_dir(config) / "cache"


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short sha256 of a JSON-serialisable object with sorted keys."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]
