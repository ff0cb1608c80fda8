"""The ``augment`` config section: defaults, what each branch trains with, the noise files
(no torch here: the workflow reads it when it builds its jobs). See
:mod:`emoflow.training.augment` for what each part does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emoflow.errors import ConfigError
from emoflow.storage.digest import sha256_file

DEFAULTS: dict[str, dict[str, Any]] = {
    "noise": {"dir": None, "snr_db": [5, 20], "p": 0.0},
    "specaugment": {
        "p": 0.0,
        "time_masks": 2,
        "time_width": 8,
        "freq_masks": 2,
        "freq_width": 8,
    },  # fmt: skip
    "faces": {"flip_p": 0.0, "crop_jitter_px": 0},
}
SPEC_FILL = "window mean"


def settings(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The config's ``augment`` section with every default filled (the section is optional)."""
    given = config.get("augment") or {}
    return {part: {**DEFAULTS[part], **(given.get(part) or {})} for part in DEFAULTS}


def branch_augment(config: dict[str, Any], branch: str) -> dict[str, Any] | None:
    """The augmentation ``branch`` trains with (the active parts and their settings), or None
    when nothing is active for it. Raises ConfigError for noise without a folder."""
    s = settings(config)
    out: dict[str, Any] = {}
    if branch == "audio":
        noise = s["noise"]
        if noise["p"] > 0:
            if not noise["dir"]:
                raise ConfigError("augment.noise.p > 0 needs augment.noise.dir (noise .wav files)")
            low, high = noise["snr_db"]
            if low > high:
                raise ConfigError(f"augment.noise.snr_db: {low} > {high}")
            out["noise"] = dict(noise)
        spec = s["specaugment"]
        if spec["p"] > 0 and (spec["time_masks"] * spec["time_width"]
                              + spec["freq_masks"] * spec["freq_width"]) > 0:  # fmt: skip
            out["specaugment"] = {**spec, "fill": SPEC_FILL}
    if branch == "visual":
        faces = s["faces"]
        if faces["flip_p"] > 0 or faces["crop_jitter_px"] > 0:
            out["faces"] = dict(faces)
    return out or None


def noise_files(folder: str | Path) -> list[Path]:
    """The ``.wav`` files of a noise folder (recursively), sorted by relative path."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"augment.noise.dir {str(root)!r} is not a folder")
    files = sorted((p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()),
                   key=lambda p: p.relative_to(root).as_posix())  # fmt: skip
    if not files:
        raise ConfigError(f"augment.noise.dir {str(root)!r} holds no .wav file")
    return files


def augment_record(config: dict[str, Any], branch: str) -> dict[str, Any] | None:
    """What a run's provenance and training key name: the active settings, with the noise
    folder replaced by its files' relative paths and sha256 (no absolute path)."""
    aug = branch_augment(config, branch)
    if aug and "noise" in aug:
        root = Path(aug["noise"]["dir"])
        files = {p.relative_to(root).as_posix(): sha256_file(p) for p in noise_files(root)}
        aug = {**aug, "noise": {**{k: v for k, v in aug["noise"].items() if k != "dir"},
                                "files": files}}  # fmt: skip
    return aug
