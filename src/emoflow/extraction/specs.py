"""What each extraction stage depends on: the config it reads (Snakemake ``params``, so a change
reruns exactly that stage) and its full spec (every parameter, tool version and feature code
version; stored in shards and bundles, its hash keys the per-clip cache)."""

from __future__ import annotations

from typing import Any

from emoflow.config import Config, cache_dir, stable_hash
from emoflow.features.audio import audio_spec
from emoflow.features.featurize import FEATURE_VERSION
from emoflow.media.ffmpeg import ffmpeg_version
from emoflow.media.grid import GRID_KEYS
from emoflow.storage.clip_cache import ClipCache
from emoflow.storage.file_memo import keep_in
from emoflow.storage.shards import FORMAT_VERSION, storage_spec

STAGES = ("audio", "faces", "egemaps", "ssl", "face_cnn")


def grid_params(config: Config) -> dict[str, Any]:
    """The time grid both stages share (the faces stage depends on the audio window settings)."""
    a = config["audio"]
    return {**{k: a[k] for k in GRID_KEYS}, "frames": config["faces"]["frames"]}


def truncation(config: Config) -> dict[str, float]:
    """The truncation tolerances (part of both stages' specs: they decide which clips fail)."""
    m = config["media"]
    return {k: m[k] for k in ("truncation_tolerance_s", "truncation_tolerance")}


def config_params(config: Config, stage: str) -> dict[str, Any]:
    """The config a stage depends on (cheap; Snakemake ``params``, so a change reruns it)."""
    version = {"feature_version": FEATURE_VERSION[stage], "truncation": truncation(config),
               "shard_format": FORMAT_VERSION}  # fmt: skip
    if stage == "audio":
        return {"audio": config["audio"], "ffmpeg": config["media"]["ffmpeg"], **version}
    if stage in ("egemaps", "ssl"):
        shared = {k: config["audio"][k] for k in (*GRID_KEYS, "silence_dbfs")}
        return {stage: {**config[stage], **shared}, "ffmpeg": config["media"]["ffmpeg"],
                **version}  # fmt: skip
    if stage == "face_cnn":  # the faces it encodes, and the encoder file
        faces = config_params(config, "faces")["faces"]
        encoder = {k: config["face_cnn"][k] for k in ("encoder", "weights")}
        return {"faces": faces, "face_cnn": encoder, **version}
    faces = {k: v for k, v in config["faces"].items() if k != "openface"}
    if faces["backend"] == "openface":
        of = config["faces"]["openface"]
        faces["openface"] = {"bin": of["bin"], "model": of["model"], "au_static": of["au_static"]}
    faces["grid"] = grid_params(config)
    return {"faces": faces, "ffmpeg": config["media"]["ffmpeg"], **version}


def stage_spec(config: Config, stage: str) -> dict[str, Any]:
    """The full extraction spec of a stage: every parameter, tool and feature code version that
    shapes it (stored in shards and bundles; its hash keys the per-clip cache)."""
    ff = ffmpeg_version(config["media"]["ffmpeg"])
    version = FEATURE_VERSION[stage]
    if stage == "audio":
        spec = audio_spec(config["audio"], ff)
        spec.update(feature_version=version, truncation=truncation(config))
        return {**spec, "storage": storage_spec(stage)}
    if stage in ("egemaps", "ssl"):
        from emoflow.features.egemaps import egemaps_spec
        from emoflow.features.ssl_speech import ssl_spec

        make = egemaps_spec if stage == "egemaps" else ssl_spec
        spec = make(config[stage], config["audio"], ff)
        spec.update(feature_version=version, truncation=truncation(config))
        return {**spec, "storage": storage_spec(stage)}
    if stage == "face_cnn":
        from emoflow.features.face_cnn import face_cnn_spec

        faces = stage_spec(config, "faces")
        spec = {"faces": faces, "grid": faces["grid"], "frames": faces["frames"],
                **face_cnn_spec(config["face_cnn"])}  # fmt: skip
        spec.update(feature_version=version, truncation=truncation(config))
        return {**spec, "storage": storage_spec(stage)}
    from emoflow.faces.backends import make_backend

    backend = make_backend(config["faces"])
    spec = config_params(config, "faces")["faces"]
    spec.update(ffmpeg_version=ff, backend_versions=backend.versions(), au_names=backend.au_names)
    spec.update(feature_version=version, truncation=truncation(config))
    return {**spec, "storage": storage_spec(stage)}


def stage_cache(config: Config, stage: str) -> tuple[dict[str, Any], ClipCache]:
    """A stage's full spec and its per-clip cache (keyed by the spec's hash). The tools'
    versions and models' hashes in the spec are kept in the cache too, by file identity
    (:mod:`emoflow.storage.file_memo`)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    keep_in(cache_dir(config) / "files")
    spec = stage_spec(config, stage)
    return spec, cache_of(config, stage, spec)


def cache_of(config: Config, stage: str, spec: dict[str, Any]) -> ClipCache:
    """The per-clip cache of ``stage`` under its full ``spec``."""
    versions = {k: v for k, v in spec.items() if k.endswith("_version") or k == "backend_versions"}
    return ClipCache(cache_dir(config), stage, stable_hash(spec), spec, versions)
