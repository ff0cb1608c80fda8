"""Shard jobs of the extraction stages: per-clip cache -> one HDF5 shard + summary.

In the workflow a stage's compute job (:mod:`emoflow.compute`) has already put every clip in
the per-clip cache; a shard job then takes each clip of its shard list from the cache (keyed by
sha256 and spec hash) and assembles the shard by raw chunk copy. A clip still missing (the
compute job did not run, or its entry no longer reads) is computed here with the featurizer
(:mod:`emoflow.featurize`) in a worker pool, so a shard job alone is always complete. A failed
clip becomes a failure row, never an exception. The summary JSON next to the shard says what
this job computed, what came from the cache and what failed (the failures table reads it).
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from emoflow.atomic import remove_stale_temps, write_text
from emoflow.audio import audio_spec, logmel_mfcc
from emoflow.cache import ClipCache
from emoflow.config import Config, cache_dir, results_dir, stable_hash
from emoflow.errors import ClipError, internal_error
from emoflow.featurize import (
    FEATURE_VERSION,
    audio_features,
    egemaps_features,
    face_features,
    ssl_features,
)
from emoflow.grid import GRID_KEYS
from emoflow.manifest import read_shard_list
from emoflow.media import ffmpeg_version
from emoflow.paths import Layout
from emoflow.probe_cache import ProbeCache
from emoflow.shard_write import assemble_shard
from emoflow.store import FORMAT_VERSION, storage_spec

log = logging.getLogger("emoflow.extract")

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
        from emoflow.egemaps import egemaps_spec
        from emoflow.ssl_speech import ssl_spec

        make = egemaps_spec if stage == "egemaps" else ssl_spec
        spec = make(config[stage], config["audio"], ff)
        spec.update(feature_version=version, truncation=truncation(config))
        return {**spec, "storage": storage_spec(stage)}
    if stage == "face_cnn":
        from emoflow.face_cnn_stage import face_cnn_spec

        faces = stage_spec(config, "faces")
        spec = {"faces": faces, "grid": faces["grid"], "frames": faces["frames"],
                **face_cnn_spec(config["face_cnn"])}  # fmt: skip
        spec.update(feature_version=version, truncation=truncation(config))
        return {**spec, "storage": storage_spec(stage)}
    from emoflow.faces import make_backend

    backend = make_backend(config["faces"])
    spec = config_params(config, "faces")["faces"]
    spec.update(ffmpeg_version=ff, backend_versions=backend.versions(), au_names=backend.au_names)
    spec.update(feature_version=version, truncation=truncation(config))
    return {**spec, "storage": storage_spec(stage)}


# --------------------------------------------------------------------------- workers
# A task gets (clip id, path, sha256) items (the sha256 keys the per-clip caches).
Items = list[tuple[str, str, str]]


def _audio_task(items: Items, spec: dict, config: Config) -> list[Any]:
    return _per_clip(audio_features, items, spec, config)


def _egemaps_task(items: Items, spec: dict, config: Config) -> list[Any]:
    return _per_clip(egemaps_features, items, spec, config)


def _ssl_task(items: Items, spec: dict, config: Config) -> list[Any]:
    from emoflow.ssl_speech import device_of, model_folder

    folder, device = model_folder(config["ssl"]), device_of(config["ssl"])
    featurize = functools.partial(ssl_features, folder=folder, device=device)
    return _per_clip(featurize, items, spec, config)


def _per_clip(featurize: Any, items: Items, spec: dict, config: Config) -> list:
    probes = ProbeCache(cache_dir(config), config["media"])
    out = []
    for clip_id, path, sha in items:
        try:
            out.append(featurize(path, spec, config["media"], probes.info(path, sha)))
        except ClipError as exc:
            out.append(exc)
        except Exception as exc:  # noqa: BLE001 - one clip must never stop the shard
            out.append(internal_error(exc, clip_id))
    return out


def _faces_task(items: Items, spec: dict, config: Config) -> list[Any]:
    from emoflow.faces import make_backend

    probes = ProbeCache(cache_dir(config), config["media"])
    sha_of = {p: sha for _, p, sha in items}
    clips = [(c, p) for c, p, _ in items]
    return face_features(clips, spec, make_backend(config["faces"]), config["media"],
                         lambda path: probes.info(path, sha_of[str(path)]))  # fmt: skip


def _face_cnn_task(items: Items, spec: dict, config: Config) -> list[Any]:
    """The faces come from the faces stage's per-clip cache; those missing there are computed
    and put there (the faces stage then reuses them)."""
    from emoflow.face_cnn_stage import encode_faces, load_encoder

    faces_cache = cache_of(config, "faces", spec["faces"])
    got = {c: faces_cache.get(sha) for c, _, sha in items}
    todo = [(c, p, sha) for c, p, sha in items if got[c] is None]
    if todo:
        log.info("face_cnn: %d clips not in the faces stage's cache: computing their faces",
                 len(todo))  # fmt: skip
        computed = _faces_task(todo, spec["faces"], config)
        for (clip_id, _, sha), res in zip(todo, computed, strict=True):
            faces_cache.put(sha, res)
            got[clip_id] = res
    encoder = load_encoder(spec["encoder"], config["face_cnn"]["weights"], spec["weights_sha256"])
    return [got[c] if isinstance(got[c], ClipError) else encode_faces(got[c], encoder)
            for c, _, _ in items]  # fmt: skip


# --------------------------------------------------------------------------- execution
class _InProcess(Executor):
    """An executor that runs tasks immediately (no pool): for one worker."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        from concurrent.futures import Future

        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001
            fut.set_exception(exc)
        return fut


@contextmanager
def executor_for(config: Config, workers: int) -> Iterator[Any]:
    """The worker pool of a shard job: in-process, local processes, or dask (local/SLURM)."""
    mode = config["execution"]["dask"]
    if mode == "slurm":
        from emoflow.dask_cluster import slurm_client

        log_dir = results_dir(config) / "logs" / "dask"
        with slurm_client(config["execution"]["slurm"], log_dir) as client:
            yield client
    elif mode == "local":
        from emoflow.dask_cluster import local_client

        with local_client(workers) as client:
            yield client
    elif workers <= 1:
        yield _InProcess()
    else:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            yield pool


def ordered_map(pool: Any, tasks: Iterable[tuple], ahead: int) -> Iterator[Any]:
    """Submit tasks ``(fn, *args)`` keeping at most ``ahead`` in flight; yield results in order."""
    it = iter(tasks)
    pending = deque(pool.submit(*task) for task in islice(it, ahead))
    while pending:
        yield pending.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(*nxt))


def stage_workers(config: Config, stage: str, workers: int) -> int:
    """``workers``, or 1 for the ssl stage on a GPU (one process holds the device; windows
    are batched there instead)."""
    if stage == "ssl":
        from emoflow.ssl_speech import device_of

        if device_of(config["ssl"]) == "cuda":
            return 1
    return workers


def default_workers(config: Config) -> int:
    """Workers for a shard job: ``execution.workers`` or the CPUs this process may use."""
    return config["execution"]["workers"] or len(os.sched_getaffinity(0))


def warm_up(stage: str, spec: dict[str, Any], config: Config) -> None:
    """Load what computing clips needs once, here: forked workers inherit it (only when some
    clip is computed; a job whose clips are all cached loads neither librosa nor face models)."""
    ffmpeg_version(config["media"]["ffprobe"])  # the probe cache's key: forked workers inherit it
    if stage == "audio":
        logmel_mfcc(np.zeros((1, int(spec["window_s"] * spec["sample_rate"])), np.float32), spec)
    elif stage == "egemaps":
        from emoflow.egemaps import load

        load(spec)
    elif stage == "ssl":
        from emoflow.ssl_speech import device_of, load, model_folder

        load(model_folder(config["ssl"]), device_of(config["ssl"]))
    else:  # faces, face_cnn
        from emoflow.faces import make_backend

        getattr(make_backend(config["faces"]), "load", lambda: None)()
        if stage == "face_cnn":
            from emoflow.face_cnn_stage import load_encoder

            load_encoder(config["face_cnn"]["encoder"], config["face_cnn"]["weights"])


def task_batch(config: Config, stage: str, spec: dict[str, Any], clips: int, workers: int) -> int:
    """Clips per task: 1, or for OpenFace (one call per batch) the configured batch, made
    smaller when there are too few clips to give every worker one."""
    if stage not in ("faces", "face_cnn") or spec.get("faces", spec)["backend"] != "openface":
        return 1
    return max(1, min(config["faces"]["openface"]["batch"], -(-clips // max(1, workers))))


def compute_clips(
    config: Config, stage: str, spec: dict, todo: list[tuple[str, str, str]], workers: int
) -> Iterator[tuple[str, str, Any]]:
    """(clip id, sha256, record or ClipError) of each clip of ``todo``, in order."""
    batch = task_batch(config, stage, spec, len(todo), workers)
    task = {"audio": _audio_task, "egemaps": _egemaps_task, "faces": _faces_task,
            "ssl": _ssl_task, "face_cnn": _face_cnn_task}[stage]  # fmt: skip
    batches = [todo[i : i + batch] for i in range(0, len(todo), batch)]
    tasks = [(task, [(c, p, s) for c, s, p in b], spec, config) for b in batches]
    with executor_for(config, workers) as pool:
        for b, results in zip(batches, ordered_map(pool, tasks, 2 * workers), strict=True):
            for (clip_id, sha, _), res in zip(b, results, strict=True):
                yield clip_id, sha, res


def stage_cache(config: Config, stage: str) -> tuple[dict[str, Any], ClipCache]:
    """A stage's full spec and its per-clip cache (keyed by the spec's hash)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    spec = stage_spec(config, stage)
    return spec, cache_of(config, stage, spec)


def cache_of(config: Config, stage: str, spec: dict[str, Any]) -> ClipCache:
    """The per-clip cache of ``stage`` under its full ``spec``."""
    versions = {k: v for k, v in spec.items() if k.endswith("_version") or k == "backend_versions"}
    return ClipCache(cache_dir(config), stage, stable_hash(spec), spec, versions)


def compute_failures(config: Config, stage: str, params_hash: str) -> dict[str, ClipError]:
    """The failures (by sha256) the stage's last compute job met, when it ran with this spec:
    a clip that failed in a way that is not cached (a timeout, say) is not tried again by the
    shard jobs that follow it (the next compute job retries it)."""
    path = Layout.of(config).computed(stage)
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    if data.get("spec_hash") != params_hash:
        return {}
    return {sha: ClipError(f["kind"], f["message"]) for sha, f in data["failures"].items()}


def run_shard(config: Config, stage: str, shard: int, workers: int | None = None) -> dict[str, Any]:
    """Build ``<results>/<name>/<stage>/<shard>.h5`` and its ``.json`` summary; return it.

    Every clip comes from the per-clip cache (filled by the stage's compute job); one missing
    there is computed and put there first (encoded once, in the shard's storage). The shard is
    assembled from the cache entries by raw chunk copy
    (:func:`emoflow.shard_write.assemble_shard`), so untouched clips are never re-encoded.
    """
    out = results_dir(config)
    entries = sorted(read_shard_list(out / "shards" / f"{shard}.json"))
    spec, cache = stage_cache(config, stage)
    params_hash = stable_hash(spec)
    workers = stage_workers(config, stage, workers or default_workers(config))
    failed = compute_failures(config, stage, params_hash)

    found: dict[str, Path | ClipError] = {}
    todo = []
    for clip_id, sha, path in entries:
        got = cache.lookup(sha) or failed.get(sha)
        if got is None:  # absent, or an entry that no longer reads
            todo.append((clip_id, sha, path))
        else:
            found[clip_id] = got
    computed = {c for c, _, _ in todo}
    log.info("%s shard %d: %d clips, %d cached, %d to compute on %d workers",
             stage, shard, len(entries), len(entries) - len(todo), len(todo), workers)  # fmt: skip
    encoded = 0
    if todo:
        warm_up(stage, spec, config)
        bar = tqdm(total=len(todo), desc=f"{stage} shard {shard}", unit="clip",
                   disable=not sys.stderr.isatty())  # fmt: skip
        for clip_id, sha, res in compute_clips(config, stage, spec, todo, workers):
            encoded += cache.put(sha, res)
            found[clip_id] = res if isinstance(res, ClipError) else cache.lookup(sha) or res
            bar.update(1)
        bar.close()

    failures: list[dict[str, str]] = []
    sources = []
    for clip_id, _, _ in entries:
        res = found[clip_id]
        if isinstance(res, ClipError):
            failures.append({"clip_id": clip_id, "stage": stage, "kind": res.kind,
                             "message": res.message})  # fmt: skip
            log.warning("%s: %s (%s)", clip_id, res.message, res.kind)
        elif isinstance(res, Path):
            sources.append((clip_id, res))
        else:  # pragma: no cover - put() wrote the entry it could not read back
            raise OSError(f"the cache entry of {clip_id} cannot be read back")

    h5_path = out / stage / f"{shard}.h5"
    if remove_stale_temps(h5_path):
        log.info("removed the temp file of an interrupted write of %s", h5_path.name)
    stats = assemble_shard(h5_path, stage, spec, cache.versions, sources)
    summary = {
        "stage": stage,
        "shard": shard,
        "spec_hash": params_hash,
        "clips": len(entries),
        "with_features": stats.clips,
        "computed": sorted(computed),
        "cached": sorted(c for c, _, _ in entries if c not in computed),
        "failures": failures,
        "encoded_bytes": encoded + stats.encoded_bytes,
        "copied_bytes": stats.copied_bytes,
    }
    write_text(out / stage / f"{shard}.json", json.dumps(summary, indent=1, sort_keys=True) + "\n")
    log.info("%s shard %d: %d with features, %d failed", stage, shard, stats.clips, len(failures))
    return summary
