"""The clip table: scan the dataset, hash the files, assign shards, write only what changed.

Outputs under ``<results>/<name>/``:

- ``manifest.parquet``: one row per accepted clip (columns :data:`MANIFEST_SCHEMA`);
- ``shards/<k>.json``: the (clip_id, sha256, path) list of shard k — rewritten only when its
  content changed, so Snakemake re-extracts only shards whose clips changed;
- ``scan_failures.parquet``: files the scan rejected (bad label, duplicate id, ...);
- ``.scan_cache.parquet``: (path, bytes, mtime_ns, sha256), so an unchanged file (same size
  and mtime) is not hashed again. Internal; no rule depends on it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from emoflow.atomic import write_bytes, write_text_if_changed
from emoflow.config import Config, results_dir
from emoflow.datasets import ClipRecord, scan_dataset
from emoflow.errors import Failure

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
FAILURE_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("stage", pa.string()),
        ("kind", pa.string()),
        ("message", pa.string()),
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


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def parquet_bytes(rows: list[dict[str, Any]], schema: pa.Schema) -> bytes:
    """Serialise rows to Parquet bytes, reproducibly (same rows -> same bytes)."""
    table = pa.Table.from_pylist(rows, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", write_statistics=False)
    return buf.getvalue()


def write_parquet_if_changed(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> bool:
    """Write rows as Parquet only when the bytes differ from the file's; return whether written."""
    data = parquet_bytes(rows, schema)
    if path.exists() and path.read_bytes() == data:
        return False
    write_bytes(path, data)
    return True


def _load_hash_cache(path: Path) -> dict[str, tuple[int, int, str]]:
    if not path.exists():
        return {}
    try:
        table = pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowInvalid):
        return {}  # a damaged cache only costs re-hashing
    return {r["path"]: (r["bytes"], r["mtime_ns"], r["sha256"]) for r in table}


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
    scan = scan_dataset(config["dataset"])
    cache_path = out / ".scan_cache.parquet"
    hashes, hash_failures, hashed = _hash_all(scan.clips, _load_hash_cache(cache_path))
    n_shards = config["shards"]
    rows = []
    for clip in scan.clips:
        if clip.path not in hashes:
            continue
        size, _, digest = hashes[clip.path]
        rows.append(
            {
                "clip_id": clip.clip_id,
                "path": clip.path,
                "bytes": size,
                "sha256": digest,
                "speaker": clip.speaker,
                "label": clip.label,
                "valence": clip.valence,
                "arousal": clip.arousal,
                "split": clip.split,
                "shard": shard_of(clip.clip_id, n_shards),
            }
        )
    rows.sort(key=lambda r: r["clip_id"])
    manifest_written = write_parquet_if_changed(out / "manifest.parquet", rows, MANIFEST_SCHEMA)
    shards_written = []
    for k in range(n_shards):
        members = [[r["clip_id"], r["sha256"], r["path"]] for r in rows if r["shard"] == k]
        text = json.dumps(members, ensure_ascii=False, indent=0) + "\n"
        if write_text_if_changed(out / "shards" / f"{k}.json", text):
            shards_written.append(k)
    failures = sorted(scan.failures + hash_failures, key=lambda f: (f.clip_id, f.kind, f.message))
    write_parquet_if_changed(
        out / "scan_failures.parquet", [f.to_dict() for f in failures], FAILURE_SCHEMA
    )
    if hashed:
        cache_rows = [
            {"path": p, "bytes": v[0], "mtime_ns": v[1], "sha256": v[2]}
            for p, v in sorted(hashes.items())
        ]
        write_bytes(cache_path, parquet_bytes(cache_rows, _CACHE_SCHEMA))
    return ScanSummary(len(rows), len(failures), hashed, shards_written, manifest_written)


def read_shard_list(path: str | Path) -> list[tuple[str, str, str]]:
    """The (clip_id, sha256, path) entries of one shard list."""
    return [tuple(item) for item in json.loads(Path(path).read_text("utf-8"))]
