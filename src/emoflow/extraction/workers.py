"""Computing a stage's clips: one task per clip (or per OpenFace batch) on a worker pool
(in-process, forked local processes, or dask locally or on SLURM), results in input order."""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from itertools import islice
from typing import Any

import numpy as np

from emoflow.config import Config, cache_dir, results_dir
from emoflow.datasets.records import split_key
from emoflow.errors import ClipError, internal_error
from emoflow.extraction.specs import cache_of
from emoflow.features.audio import logmel_mfcc
from emoflow.features.featurize import audio_features, egemaps_features, face_features, ssl_features
from emoflow.media.ffmpeg import probe_version
from emoflow.media.probe_cache import ProbeCache

log = logging.getLogger("emoflow.extract")

# A task gets (clip id, path, sha256) items (the sha256 keys the per-clip caches).
Items = list[tuple[str, str, str]]


def _audio_task(items: Items, spec: dict, config: Config) -> list[Any]:
    return _per_clip(audio_features, items, spec, config)


def _egemaps_task(items: Items, spec: dict, config: Config) -> list[Any]:
    return _per_clip(egemaps_features, items, spec, config)


def _ssl_task(items: Items, spec: dict, config: Config) -> list[Any]:
    from emoflow.features.ssl_speech import device_of, model_folder

    folder, device = model_folder(config["ssl"]), device_of(config["ssl"])
    featurize = functools.partial(ssl_features, folder=folder, device=device)
    return _per_clip(featurize, items, spec, config)


def _per_clip(featurize: Any, items: Items, spec: dict, config: Config) -> list:
    probes = ProbeCache(cache_dir(config), config["media"])
    out = []
    for clip_id, path, sha in items:
        try:
            info = probes.info(path, split_key(sha)[0])
            out.append(featurize(path, spec, config["media"], info))
        except ClipError as exc:
            out.append(exc)
        except Exception as exc:  # noqa: BLE001 - one clip must never stop the shard
            out.append(internal_error(exc, clip_id))
    return out


@functools.cache
def _backend(faces_json: str) -> Any:
    from emoflow.faces.backends import make_backend

    return make_backend(json.loads(faces_json))


def face_backend(config: Config) -> Any:
    """The configured face backend, made once per process (its models, once loaded, are the
    process's: forked workers inherit what the parent loaded)."""
    return _backend(json.dumps(config["faces"], sort_keys=True, default=str))


def _faces_task(items: Items, spec: dict, config: Config) -> list[Any]:
    probes = ProbeCache(cache_dir(config), config["media"])
    sha_of = {p: split_key(sha)[0] for _, p, sha in items}
    clips = [(c, p) for c, p, _ in items]
    sides = {c: side for c, _, sha in items if (side := split_key(sha)[1])}  # two-person videos
    return face_features(clips, spec, face_backend(config), config["media"],
                         lambda path: probes.info(path, sha_of[str(path)]), sides)  # fmt: skip


def _face_cnn_task(items: Items, spec: dict, config: Config) -> list[Any]:
    """The faces come from the faces stage's per-clip cache; those missing there are computed
    and put there (the faces stage then reuses them)."""
    from emoflow.features.face_cnn import encode_faces, load_encoder

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
        from emoflow.extraction.dask_cluster import slurm_client

        log_dir = results_dir(config) / "logs" / "dask"
        with slurm_client(config["execution"]["slurm"], log_dir) as client:
            yield client
    elif mode == "local":
        from emoflow.extraction.dask_cluster import local_client

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
        from emoflow.features.ssl_speech import device_of

        if device_of(config["ssl"]) == "cuda":
            return 1
    return workers


def default_workers(config: Config) -> int:
    """Workers for a shard job: ``execution.workers`` or the CPUs this process may use."""
    return config["execution"]["workers"] or len(os.sched_getaffinity(0))


def warm_up(stage: str, spec: dict[str, Any], config: Config) -> None:
    """Load what computing clips needs once, here: forked workers inherit it (only when some
    clip is computed; a job whose clips are all cached loads neither librosa nor face models).
    The face models load in :func:`compute_clips` (:func:`load_face_models`)."""
    probe_version(config["media"]["ffprobe"])  # the probe cache's key: forked workers inherit it
    if stage == "audio":
        logmel_mfcc(np.zeros((1, int(spec["window_s"] * spec["sample_rate"])), np.float32), spec)
    elif stage == "egemaps":
        from emoflow.features.egemaps import load

        load(spec)
    elif stage == "ssl":
        from emoflow.features.ssl_speech import device_of, load, model_folder

        load(model_folder(config["ssl"]), device_of(config["ssl"]))
    elif stage == "face_cnn":
        from emoflow.features.face_cnn import load_encoder

        load_encoder(config["face_cnn"]["encoder"], config["face_cnn"]["weights"])


def load_face_models(config: Config) -> None:
    """Load the face backend's models in this process, once, before the workers fork (they
    inherit them; the detector's serialization is kept in ``<cache>/models``)."""
    load = getattr(face_backend(config), "load", None)
    if load is not None:  # OpenFace: nothing to load in this process
        load(cache=cache_dir(config) / "models")


def task_batch(config: Config, stage: str, spec: dict[str, Any], clips: int, workers: int) -> int:
    """Clips per task: 1, or for OpenFace (one call per batch) the configured batch, made
    smaller when there are too few clips to give every worker one."""
    if stage not in ("faces", "face_cnn") or spec.get("faces", spec)["backend"] != "openface":
        return 1
    return max(1, min(config["faces"]["openface"]["batch"], -(-clips // max(1, workers))))


_TASKS = {"audio": _audio_task, "egemaps": _egemaps_task, "faces": _faces_task,
          "ssl": _ssl_task, "face_cnn": _face_cnn_task}  # fmt: skip


def _cached_task(stage: str, items: Items, spec: dict, config: Config) -> list[int | ClipError]:
    """Compute ``items`` and put each result into the stage's per-clip cache, here in the
    worker: features never travel between processes (a long video's crops are hundreds of
    megabytes, written from their spool). Per clip: the entry's bytes, or its ClipError."""
    cache = cache_of(config, stage, spec)
    out: list[int | ClipError] = []
    for (clip_id, _, sha), res in zip(items, _TASKS[stage](items, spec, config), strict=True):
        try:
            written = cache.put(sha, res)
        except Exception as exc:  # noqa: BLE001 - one clip must never stop the others
            res = internal_error(exc, clip_id)
            written = cache.put(sha, res)
        out.append(res if isinstance(res, ClipError) else written)
    return out


def compute_clips(
    config: Config, stage: str, spec: dict, todo: list[tuple[str, str, str]], workers: int
) -> Iterator[tuple[str, str, int | ClipError]]:
    """Compute each clip of ``todo`` into the per-clip cache: (clip id, sha256, bytes of its
    entry or its ClipError), in order."""
    batch = task_batch(config, stage, spec, len(todo), workers)
    batches = [todo[i : i + batch] for i in range(0, len(todo), batch)]
    tasks = [(_cached_task, stage, [(c, p, s) for c, s, p in b], spec, config) for b in batches]
    if stage in ("faces", "face_cnn"):
        load_face_models(config)
    with executor_for(config, workers) as pool:
        for b, results in zip(batches, ordered_map(pool, tasks, 2 * workers), strict=True):
            for (clip_id, sha, _), res in zip(b, results, strict=True):
                yield clip_id, sha, res
