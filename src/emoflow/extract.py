"""Shard jobs of the extraction stages: clips -> per-clip cache -> one HDF5 shard + summary.

For each clip of a shard list: take the result from the per-clip cache when (sha256, params
hash) is there, else compute it in a worker pool; stream the results, in clip-id order, into
the shard. A failed clip becomes a failure row, never an exception. The summary JSON next to
the shard says what was computed, what came from the cache and what failed (tests and the
failures table read it).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import tempfile
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from emoflow.atomic import remove_stale_temps, write_text
from emoflow.audio import audio_spec, cut_windows, logmel_mfcc
from emoflow.cache import ClipCache
from emoflow.config import Config, cache_dir, results_dir, stable_hash
from emoflow.errors import ClipError
from emoflow.manifest import read_shard_list
from emoflow.media import decode_audio, ffmpeg_version, probe, sample_frames
from emoflow.store import AudioClipFeatures, FaceClipFeatures, write_shard

log = logging.getLogger("emoflow.extract")

STAGES = ("audio", "faces")
_STFT_BATCH = 32  # windows per librosa call: bounds memory for long clips


def config_params(config: Config, stage: str) -> dict[str, Any]:
    """The config a stage depends on (cheap; Snakemake ``params``, so a change reruns it)."""
    if stage == "audio":
        return {"audio": config["audio"], "ffmpeg": config["media"]["ffmpeg"]}
    faces = {k: v for k, v in config["faces"].items() if k != "openface"}
    if faces["backend"] == "openface":
        of = config["faces"]["openface"]
        faces["openface"] = {"bin": of["bin"], "model": of["model"], "au_static": of["au_static"]}
    return {"faces": faces, "ffmpeg": config["media"]["ffmpeg"]}


def stage_spec(config: Config, stage: str) -> dict[str, Any]:
    """The full extraction spec of a stage: every parameter and tool version that shapes it."""
    ff = ffmpeg_version(config["media"]["ffmpeg"])
    if stage == "audio":
        return audio_spec(config["audio"], ff)
    from emoflow.faces import make_backend

    backend = make_backend(config["faces"])
    spec = config_params(config, "faces")["faces"]
    spec.update(ffmpeg_version=ff, backend_versions=backend.versions(), au_names=backend.au_names)
    return spec


# --------------------------------------------------------------------------- workers
def audio_clip(path: str, spec: dict[str, Any], media: dict[str, Any]) -> AudioClipFeatures:
    """Decode one clip's audio and compute its windows' log-mel and MFCC (clip_id unset)."""
    info = probe(path, media["ffprobe"], media["timeout_s"])
    samples = decode_audio(path, spec["sample_rate"], media["ffmpeg"], media["timeout_s"], info)
    windows = cut_windows(
        samples, spec["sample_rate"], spec["window_s"], spec["hop_s"], spec["last_window"]
    )
    if len(windows.segments) == 0:
        raise ClipError("too_short", "the audio gives no window")
    # One BLAS thread: the mel projection's float sums then do not depend on how many
    # threads a process has (in-process vs pool worker), so features are bit-identical.
    with threadpool_limits(limits=1):
        parts = [
            logmel_mfcc(windows.segments[i : i + _STFT_BATCH], spec)
            for i in range(0, len(windows.segments), _STFT_BATCH)
        ]
    return AudioClipFeatures(
        clip_id="",
        logmel=np.concatenate([p[0] for p in parts]),
        mfcc=np.concatenate([p[1] for p in parts]),
        window_start_s=windows.start_s,
        duration_s=len(samples) / spec["sample_rate"],
        padded=windows.padded,
    )


def _audio_task(items: list[tuple[str, str]], spec: dict, config: Config) -> list[Any]:
    return [_guard(lambda p=path: audio_clip(p, spec, config["media"])) for _, path in items]


def _faces_task(items: list[tuple[str, str]], spec: dict, config: Config) -> list[Any]:
    from emoflow.faces import make_backend

    media, faces_cfg = config["media"], config["faces"]
    backend = make_backend(faces_cfg)
    results: dict[str, Any] = {}
    sampled: list[tuple[str, np.ndarray]] = []
    times: dict[str, np.ndarray] = {}
    for clip_id, path in items:
        try:
            frames, t = sample_frames(
                path,
                faces_cfg["frames"],
                faces_cfg["max_side"],
                media["ffmpeg"],
                media["timeout_s"],
            )
            sampled.append((clip_id, frames))
            times[clip_id] = t
        except ClipError as exc:
            results[clip_id] = exc
        except Exception as exc:  # noqa: BLE001 - one clip must never stop the shard
            results[clip_id] = _unexpected(exc)
    if sampled:
        with tempfile.TemporaryDirectory(prefix="emoflow-faces-") as work:
            try:
                found = backend.process(sampled, Path(work))
            except Exception as exc:  # noqa: BLE001
                found = {clip_id: _unexpected(exc) for clip_id, _ in sampled}
        for clip_id, _ in sampled:
            res = found.get(clip_id) or ClipError("tool_crash", "the face backend gave no result")
            if isinstance(res, ClipError):
                results[clip_id] = res
            elif not np.asarray(res.mask).any():
                n = len(res.mask)
                results[clip_id] = ClipError("no_face", f"no face found in any of the {n} frames")
            else:
                results[clip_id] = FaceClipFeatures(
                    clip_id="",
                    faces=res.faces,
                    mask=res.mask,
                    landmarks=res.landmarks,
                    frame_time_s=times[clip_id],
                    n_faces=res.n_faces,
                    confidence=res.confidence,
                    au=res.au,
                    pose=res.pose,
                )
    return [results[clip_id] for clip_id, _ in items]


def _warm_up_librosa(spec: dict[str, Any]) -> None:
    logmel_mfcc(np.zeros((1, int(spec["window_s"] * spec["sample_rate"])), np.float32), spec)


def _unexpected(exc: BaseException) -> ClipError:
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return ClipError("tool_crash", f"unexpected error while processing the clip: {detail}")


def _guard(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ClipError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - one clip must never stop the shard
        return _unexpected(exc)


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

        with slurm_client(config["execution"]["slurm"]) as client:
            yield client
    elif mode == "local":
        from distributed import Client, LocalCluster

        from emoflow.dask_cluster import _Submitter

        with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as lc:
            with Client(lc) as client:
                yield _Submitter(client)
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


def default_workers(config: Config) -> int:
    """Workers for a shard job: ``execution.workers`` or the CPUs this process may use."""
    return config["execution"]["workers"] or len(os.sched_getaffinity(0))


def run_shard(config: Config, stage: str, shard: int, workers: int | None = None) -> dict[str, Any]:
    """Build ``<results>/<name>/<stage>/<shard>.h5`` and its ``.json`` summary; return it."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    out = results_dir(config)
    entries = sorted(read_shard_list(out / "shards" / f"{shard}.json"))
    spec = stage_spec(config, stage)
    params_hash = stable_hash(spec)
    cache = ClipCache(cache_dir(config), stage, params_hash)
    record_type = AudioClipFeatures if stage == "audio" else FaceClipFeatures
    workers = workers or default_workers(config)
    batch = (
        config["faces"]["openface"]["batch"]
        if stage == "faces" and spec["backend"] == "openface"
        else 1
    )
    task = _audio_task if stage == "audio" else _faces_task

    status: dict[str, str] = {}
    failures: list[dict[str, str]] = []
    todo = []
    for clip_id, sha, path in entries:
        status[clip_id] = "cached" if cache.has(sha) else "computed"
        if status[clip_id] == "computed":
            todo.append((clip_id, sha, path))
    if stage == "audio" and todo:
        _warm_up_librosa(spec)  # JIT once here; forked workers inherit the compiled code
    log.info("%s shard %d: %d clips, %d cached, %d to compute on %d workers",
             stage, shard, len(entries), len(entries) - len(todo), len(todo), workers)  # fmt: skip

    def computed() -> Iterator[tuple[str, Any]]:
        batches = [todo[i : i + batch] for i in range(0, len(todo), batch)]
        tasks = [(task, [(c, p) for c, _, p in b], spec, config) for b in batches]
        with executor_for(config, workers) as pool:
            for b, results in zip(batches, ordered_map(pool, tasks, 2 * workers), strict=True):
                for (clip_id, sha, _), res in zip(b, results, strict=True):
                    cache.put(sha, res)
                    yield clip_id, res

    def records() -> Iterator[Any]:
        fresh = computed()
        pending: dict[str, Any] = {}
        bar = tqdm(total=len(entries), desc=f"{stage} shard {shard}", unit="clip",
                   disable=not sys.stderr.isatty())  # fmt: skip
        for clip_id, sha, path in entries:
            if status[clip_id] == "cached":
                res = cache.get(sha, record_type)
                if res is None:  # an entry that no longer reads: compute the clip here
                    status[clip_id] = "computed"
                    res = task([(clip_id, path)], spec, config)[0]
                    cache.put(sha, res)
            else:
                while clip_id not in pending:
                    got_id, got = next(fresh)
                    pending[got_id] = got
                res = pending.pop(clip_id)
            bar.update(1)
            if isinstance(res, ClipError):
                failures.append({"clip_id": clip_id, "stage": stage, "kind": res.kind,
                                 "message": res.message})  # fmt: skip
                log.warning("%s: %s (%s)", clip_id, res.message, res.kind)
                continue
            res.clip_id = clip_id
            yield res
        bar.close()

    h5_path = out / stage / f"{shard}.h5"
    if remove_stale_temps(h5_path):
        log.info("removed the temp file of an interrupted write of %s", h5_path.name)
    versions = {k: v for k, v in spec.items() if k.endswith("_version") or k == "backend_versions"}
    n_ok = write_shard(h5_path, stage, spec, versions, records())
    summary = {
        "stage": stage,
        "shard": shard,
        "spec_hash": params_hash,
        "clips": len(entries),
        "with_features": n_ok,
        "computed": sorted(c for c, s in status.items() if s == "computed"),
        "cached": sorted(c for c, s in status.items() if s == "cached"),
        "failures": failures,
    }
    write_text(out / stage / f"{shard}.json", json.dumps(summary, indent=1, sort_keys=True) + "\n")
    log.info("%s shard %d: %d with features, %d failed", stage, shard, n_ok, len(failures))
    return summary
