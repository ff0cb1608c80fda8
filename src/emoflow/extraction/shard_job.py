"""Shard jobs of the extraction stages: per-clip cache -> one HDF5 shard + summary.

In the workflow a stage's compute job (:mod:`emoflow.extraction.compute`) has already put every clip
in the per-clip cache; a shard job then takes each clip of its shard list from the cache (keyed by
sha256 and spec hash) and assembles the shard by raw chunk copy. A clip still missing (the compute
job did not run, or its entry no longer reads) is computed here with the featurizer
(:mod:`emoflow.features.featurize`) in a worker pool, so a shard job alone is always complete. A
failed clip becomes a failure row, never an exception. The summary JSON next to the shard says what
this job computed, what came from the cache and what failed (the failures table reads it).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from emoflow.config import Config, results_dir, stable_hash
from emoflow.datasets.manifest import shard_entries
from emoflow.errors import ClipError
from emoflow.extraction.specs import stage_cache
from emoflow.extraction.workers import compute_clips, default_workers, stage_workers, warm_up
from emoflow.paths import Layout
from emoflow.storage.atomic import remove_stale_temps, write_text
from emoflow.storage.dated import note_source
from emoflow.storage.shard_write import assemble_shard

log = logging.getLogger("emoflow.extract")


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

    Every clip comes from the per-clip cache (filled by the stage's compute job); one missing there
    is computed and put there first (encoded once, in the shard's storage). The shard is assembled
    from the cache entries by raw chunk copy (:func:`emoflow.storage.shard_write.assemble_shard`),
    so untouched clips are never re-encoded.
    """
    out = results_dir(config)
    list_bytes = (out / "shards" / f"{shard}.json").read_bytes()
    entries = sorted(shard_entries(list_bytes))
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
            encoded += 0 if isinstance(res, ClipError) else res
            found[clip_id] = res if isinstance(res, ClipError) else cache.lookup(sha)
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
    note_source(h5_path, list_bytes)
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
