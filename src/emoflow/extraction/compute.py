"""A stage's compute job: every clip of every shard list missing from the per-clip cache.

One process per stage computes all of them (imports and face models loaded once, every worker of the
pool busy however the clips spread over shards) and puts each into the per-clip cache; the shard
jobs that follow (:func:`emoflow.extraction.shard_job.run_shard`) only assemble shards from the
cache. Clips with the same content (sha256) are computed once. The summary
(``<results>/<name>/computed/<stage>.json``) lists the clips computed, the bytes encoded and every
failure met (by sha256: the shard jobs report a failure the cache does not keep, such as a timeout,
instead of trying the clip again).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from tqdm import tqdm

from emoflow.config import Config, stable_hash
from emoflow.datasets.manifest import read_shard_list
from emoflow.errors import ClipError
from emoflow.extraction.specs import stage_cache
from emoflow.extraction.workers import compute_clips, default_workers, stage_workers, warm_up
from emoflow.paths import Layout
from emoflow.storage.atomic import write_text

log = logging.getLogger("emoflow.extraction.compute")


def missing_clips(config: Config, has: Any) -> tuple[list[tuple[str, str, str]], int]:
    """(clip id, sha256, path) of each distinct content of the shard lists for which ``has``
    (a sha256 -> bool check of the cache) is false, sorted by clip id; and the clip count."""
    layout = Layout.of(config)
    first: dict[str, tuple[str, str, str]] = {}
    clips = 0
    for k in range(config["shards"]):
        for clip_id, sha, path in read_shard_list(layout.shard_list(k)):
            clips += 1
            if sha not in first or clip_id < first[sha][0]:
                first[sha] = (clip_id, sha, path)
    todo = sorted((e for sha, e in first.items() if not has(sha)), key=lambda e: e[0])
    return todo, clips


def forget_uncomputed_shards(config: Config, stages: list[str]) -> list[str]:
    """Remove the shards (and their summaries) of a stage that has shards but no compute
    summary (results made before compute jobs existed, or whose ``computed/`` was deleted).

    Snakemake (9.27) does not rerun a shard job that waits on a checkpoint whose output is
    missing while the shard file exists, even when its parameters changed, so such shards would
    stay stale. Removed, they are rebuilt from the per-clip cache (which stays; entries of a
    changed spec are recomputed). Returns the stages concerned."""
    layout = Layout.of(config)
    reset = []
    for stage in stages:
        files = [p for k in range(config["shards"])
                 for p in (layout.shard(stage, k), layout.shard_summary(stage, k))]  # fmt: skip
        if layout.computed(stage).exists() or not any(p.exists() for p in files):
            continue
        for path in files:
            path.unlink(missing_ok=True)
        reset.append(stage)
    return reset


def run_compute(config: Config, stage: str, workers: int | None = None) -> dict[str, Any]:
    """Compute every clip of ``stage`` missing from the per-clip cache; write and return the
    summary (``computed``: clip ids, ``encoded_bytes``, ``failures`` by sha256)."""
    spec, cache = stage_cache(config, stage)
    todo, clips = missing_clips(config, cache.has)
    # never more processes than the CPUs this job may use; one for the ssl stage on a GPU
    # (the rule asks for every core)
    workers = stage_workers(
        config, stage, min(workers or default_workers(config), len(os.sched_getaffinity(0)))
    )
    log.info("%s: %d clips, %d distinct contents to compute on %d workers",
             stage, clips, len(todo), workers)  # fmt: skip
    encoded = 0
    failures: dict[str, dict[str, str]] = {}
    if todo:
        warm_up(stage, spec, config)
        bar = tqdm(total=len(todo), desc=stage, unit="clip", disable=not sys.stderr.isatty())
        for clip_id, sha, res in compute_clips(config, stage, spec, todo, workers):
            encoded += 0 if isinstance(res, ClipError) else res
            if isinstance(res, ClipError):
                failures[sha] = {"clip_id": clip_id, "kind": res.kind, "message": res.message}
                log.warning("%s: %s (%s)", clip_id, res.message, res.kind)
            bar.update(1)
        bar.close()
    summary = {
        "stage": stage,
        "spec_hash": stable_hash(spec),
        "clips": clips,
        "computed": [c for c, _, _ in todo],
        "encoded_bytes": encoded,
        "failures": failures,
    }
    path = Layout.of(config).computed(stage)
    write_text(path, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    log.info("%s: %d computed (%d failed), %d bytes encoded", stage, len(todo), len(failures),
             encoded)  # fmt: skip
    return summary
