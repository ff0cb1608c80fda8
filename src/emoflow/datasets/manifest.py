"""The clip table: scan the dataset, hash the files, assign shards, write only what changed.

Outputs under ``<results>/<name>/``:

- ``manifest.parquet``: one row per accepted clip (columns :data:`MANIFEST_SCHEMA`, plus
  ``track`` (bool) when some clip has time-continuous labels);
- ``shards/<k>.json``: the (clip_id, content key, path) list of shard k — rewritten only when
  its content changed, so Snakemake re-extracts only shards whose clips changed (the content
  key is the sha256, plus the side for one person of a two-person video:
  :func:`emoflow.datasets.records.content_key`);
- ``tracks.parquet``: the label tracks of time-continuous clips
  (:mod:`emoflow.datasets.track_scan`);
- ``scan_failures.parquet``: files the scan rejected (bad label, duplicate id, ...);
- ``.scan_cache.parquet``: (path, bytes, mtime_ns, sha256), so an unchanged file (same size
  and mtime) is not hashed again. Internal; no rule depends on it.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from json.encoder import encode_basestring as _encode_str
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from emoflow.branches import selected_stages
from emoflow.config import Config, results_dir
from emoflow.datasets.corpora import scan_corpora
from emoflow.datasets.records import ClipRecord, content_key
from emoflow.datasets.track_scan import read_clip_tracks, track_sides, write_tracks
from emoflow.errors import Failure
from emoflow.storage.atomic import write_bytes, write_bytes_if_changed, write_text_if_changed
from emoflow.storage.dated import backdate_if_built_from
from emoflow.storage.digest import sha256_file
from emoflow.storage.tables import (
    FAILURE_SCHEMA,
    parquet_bytes,
    table_bytes,
    write_parquet_if_changed,
)

MANIFEST_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("path", pa.string()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("speaker", pa.string()),
        ("label", pa.string()),
        ("valence", pa.float64()),
        ("arousal", pa.float64()),
        ("split", pa.string()),
        ("shard", pa.int32()),
    ]
)
_CACHE_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("bytes", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("sha256", pa.string()),
    ]
)


def shard_of(clip_id: str, shards: int) -> int:
    """Stable shard of a clip: sha256 of its id mod the shard count (never moves other clips)."""
    return int.from_bytes(hashlib.sha256(clip_id.encode("utf-8")).digest()[:8], "big") % shards


def shard_list_text(members: list[tuple[str, str, str]]) -> str:
    """A shard list's file text: byte for byte ``json.dumps(members, ensure_ascii=False,
    indent=0) + "\n"`` (the format shard files have always had), built with the C string encoder
    (``indent`` makes ``json.dumps`` use its pure-Python encoder: ~1 s per 100,000 clips)."""
    if not members:
        return "[]\n"
    items = ",\n".join("[\n" + ",\n".join(map(_encode_str, item)) + "\n]" for item in members)
    return "[\n" + items + "\n]\n"


def _load_hash_cache(path: Path) -> dict[str, tuple[int, int, str]]:
    if not path.exists():
        return {}
    try:
        columns = pq.read_table(path).to_pydict()
        keys = columns["path"]
        values = zip(columns["bytes"], columns["mtime_ns"], columns["sha256"], strict=True)
    except (OSError, KeyError, ValueError, pa.ArrowInvalid):
        return {}  # a damaged cache only costs re-hashing
    return dict(zip(keys, values, strict=True))


@dataclass
class ScanSummary:
    """What a refresh found and wrote."""

    clips: int
    failures: int
    hashed: int
    shards_written: list[int]
    manifest_written: bool


def _hash_all(
    clips: list[ClipRecord], cache: dict[str, tuple[int, int, str]]
) -> tuple[dict[str, tuple[int, int, str]], list[Failure], int]:
    """(path -> (bytes, mtime_ns, sha256)) for every clip; failures for files that vanished."""
    result: dict[str, tuple[int, int, str]] = {}
    failures: list[Failure] = []
    todo: list[tuple[ClipRecord, int, int]] = []
    for clip in clips:
        try:
            st = os.stat(clip.path)
        except OSError as exc:
            failures.append(Failure(clip.clip_id, "scan", "unreadable", f"cannot stat: {exc}"))
            continue
        hit = cache.get(clip.path)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            result[clip.path] = hit
        else:
            todo.append((clip, st.st_size, st.st_mtime_ns))

    def work(item: tuple[ClipRecord, int, int]) -> tuple[ClipRecord, int, int, str | Exception]:
        clip, size, mtime = item
        try:
            return clip, size, mtime, sha256_file(clip.path)
        except OSError as exc:
            return clip, size, mtime, exc

    with ThreadPoolExecutor(max_workers=4) as pool:
        for clip, size, mtime, digest in pool.map(work, todo):
            if isinstance(digest, Exception):
                failures.append(
                    Failure(clip.clip_id, "scan", "unreadable", f"cannot read: {digest}")
                )
            else:
                result[clip.path] = (size, mtime, digest)
    return result, failures, len(todo)


def refresh(config: Config) -> ScanSummary:
    """Scan the dataset and bring the clip table, shard lists and scan failures up to date.

    Files are only rewritten when their content changes, so calling this on every workflow
    start is cheap and keeps Snakemake's view of what changed exact.
    """
    out = results_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    scan = scan_corpora(config)
    cache_path = out / ".scan_cache.parquet"
    hashes, hash_failures, hashed = _hash_all(scan.clips, _load_hash_cache(cache_path))
    n_shards = config["shards"]
    kept = [clip for clip in scan.clips if clip.path in hashes]
    kept.sort(key=lambda c: c.clip_id)  # already sorted by the adapter: a linear check
    digest_of = {p: v[2] for p, v in hashes.items()}
    tracks, track_failures = read_clip_tracks(config, scan.tracks, kept, digest_of)
    if track_failures:
        failed = {f.clip_id for f in track_failures}
        kept = [clip for clip in kept if clip.clip_id not in failed]
    write_tracks(out, tracks)
    sides = track_sides(scan.tracks)
    sizes, digests, shards = [], [], []
    members: list[list[tuple[str, str, str]]] = [[] for _ in range(n_shards)]
    for clip in kept:
        size, _, digest = hashes[clip.path]
        shard = shard_of(clip.clip_id, n_shards)
        sizes.append(size)
        digests.append(digest)
        shards.append(shard)
        members[shard].append((clip.clip_id, content_key(digest, sides.get(clip.clip_id)),
                               clip.path))  # fmt: skip
    columns = {
        "clip_id": [c.clip_id for c in kept],
        "path": [c.path for c in kept],
        "bytes": sizes,
        "sha256": digests,
        "speaker": [c.speaker for c in kept],
        "label": [c.label for c in kept],
        "valence": [c.valence for c in kept],
        "arousal": [c.arousal for c in kept],
        "split": [c.split for c in kept],
        "shard": shards,
    }
    schema = MANIFEST_SCHEMA
    if tracks:  # clips with time-continuous labels (in tracks.parquet)
        columns["track"] = [c.clip_id in tracks for c in kept]
        schema = schema.append(pa.field("track", pa.bool_()))
    manifest = pa.Table.from_pydict(columns, schema=schema)
    data = table_bytes(manifest)
    manifest_written = write_bytes_if_changed(out / "manifest.parquet", data)
    if manifest_written:  # back to what the folds were made from: nothing to redo
        backdate_if_built_from(out / "manifest.parquet", data, [out / "folds.parquet"])
    shards_written = []
    stages = selected_stages(config)
    for k in range(n_shards):
        text = shard_list_text(members[k])
        if write_text_if_changed(out / "shards" / f"{k}.json", text):
            shards_written.append(k)
            built = [out / stage / f"{k}.h5" for stage in stages]
            computed = [out / "computed" / f"{stage}.json" for stage in stages]
            backdate_if_built_from(out / "shards" / f"{k}.json", text.encode(), built, computed)
    failures = sorted(scan.failures + hash_failures + track_failures,
                      key=lambda f: (f.clip_id, f.kind, f.message))  # fmt: skip
    write_parquet_if_changed(
        out / "scan_failures.parquet", [f.to_dict() for f in failures], FAILURE_SCHEMA
    )
    if hashed:
        cache_rows = [
            {"path": p, "bytes": v[0], "mtime_ns": v[1], "sha256": v[2]}
            for p, v in sorted(hashes.items())
        ]
        write_bytes(cache_path, parquet_bytes(cache_rows, _CACHE_SCHEMA))
    return ScanSummary(len(kept), len(failures), hashed, shards_written, manifest_written)


def read_shard_list(path: str | Path) -> list[tuple[str, str, str]]:
    """The (clip_id, sha256, path) entries of one shard list."""
    return shard_entries(Path(path).read_bytes())


def shard_entries(data: bytes) -> list[tuple[str, str, str]]:
    """The (clip_id, sha256, path) entries of a shard list's bytes."""
    return [tuple(item) for item in json.loads(data)]
