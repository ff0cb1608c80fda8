"""Shard writing: each clip is encoded once, into a one-clip file; shards are assembled by copy.

A clip's arrays are encoded once, into a one-clip file laid out like a shard (its per-clip cache
entry, see :class:`emoflow.storage.clip_cache.ClipCache`). A shard is assembled from such files:

- the datasets stored one row per chunk (:data:`emoflow.storage.shards.ROW_CHUNKED`: face crops,
log-mel, MFCC) are moved chunk by chunk with ``read_direct_chunk`` / ``write_direct_chunk``, never
decoded or encoded again;
- the small, uncompressed datasets are copied as values; the clip table and the clip indexes
  (``frame_clip``, ``window_clip``) are rebuilt.

So a shard rebuilt after adding a clip holds every other clip's chunks byte for byte as before,
and the shard file depends only on its clips, not on which of them were computed by this run.
Every write goes to a temp file renamed into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emoflow import __version__
from emoflow.storage.atomic import atomic_path
from emoflow.storage.row_spool import RowSpool, row_blocks
from emoflow.storage.shards import (
    FORMAT,
    FORMAT_VERSION,
    FRAME_FIELDS,
    KINDS,
    ROW_CHUNKED,
    VECTOR_KINDS,
    ClipFeatures,
    spec_hash,
)

_STR = h5py.string_dtype("utf-8")
# the datasets of a kind by the axis they run along (a frame or a window of some clip)
GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "audio": {"window": ("logmel", "mfcc", "window_start_s")},
    "faces": {"frame": FRAME_FIELDS, "window": ("window_start_s", "window_frame0")},
    **{kind: {"window": ("vectors", "window_start_s")} for kind in VECTOR_KINDS},
    "face_cnn": {"frame": ("vectors", "mask", "frame_time_s"),
                 "window": ("window_start_s", "window_frame0")},
}  # fmt: skip
# the window datasets an empty shard of a kind still holds (readers index them)
EMPTY_WINDOWS = {
    "audio": {"logmel": (0, 0, 0), "mfcc": (0, 0, 0)},
    **{kind: {"vectors": (0, 0)} for kind in VECTOR_KINDS},
}
_COUNT = {"frame": "nframes", "window": "nwindows"}
_FIRST = {"frame": "frame0", "window": "window0"}
_INDEX = {"frame": "frame_clip", "window": "window_clip"}
_CAST = {"window_start_s": "f8", "window_frame0": "i8"}


@dataclass
class WriteStats:
    """What writing a shard cost: clips, and stored bytes moved as they were or encoded."""

    clips: int = 0
    copied_bytes: int = 0  # moved without decoding (raw chunks, small uncompressed values)
    encoded_bytes: int = 0  # written through an encoder (an entry of another storage layout)


@dataclass
class _Entry:
    clip_id: str
    path: Path
    duration_s: float
    padded: bool
    counts: dict[str, int] = field(default_factory=dict)


def _root_attrs(h5: h5py.File, kind: str, spec: dict, versions: dict) -> None:
    h5.attrs["format"] = FORMAT
    h5.attrs["format_version"] = FORMAT_VERSION
    h5.attrs["kind"] = kind
    h5.attrs["spec"] = json.dumps(spec, sort_keys=True)
    h5.attrs["spec_hash"] = spec_hash(spec)
    h5.attrs["emoflow_version"] = __version__
    h5.attrs["tool_versions"] = json.dumps(versions, sort_keys=True)


def _create(h5: h5py.File, kind: str, name: str, shape: tuple, dtype: Any) -> h5py.Dataset:
    """A dataset of the kind's storage: one row per chunk with its filters, or contiguous."""
    filters = ROW_CHUNKED[kind].get(name)
    if filters is None or 0 in shape[1:]:
        return h5.create_dataset(name, shape=shape, dtype=dtype)
    return h5.create_dataset(
        name, shape=shape, maxshape=(None, *shape[1:]), dtype=dtype, chunks=(1, *shape[1:]),
        **filters,
    )  # fmt: skip


def _clip_table(h5: h5py.File, kind: str, entries: list[_Entry]) -> None:
    """The per-clip datasets and the row -> clip indexes."""
    h5.create_dataset("clip_id", data=[e.clip_id for e in entries], dtype=_STR)
    h5.create_dataset("clip_duration_s", data=np.array([e.duration_s for e in entries], "f8"),
                      shape=(len(entries),))  # fmt: skip
    h5.create_dataset("clip_padded", data=np.array([e.padded for e in entries], bool),
                      shape=(len(entries),))  # fmt: skip
    for group in GROUPS[kind]:
        counts = np.array([e.counts.get(group, 0) for e in entries], "i8")
        first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype("i8")
        h5.create_dataset(f"clip_{_FIRST[group]}", data=first[: len(entries)],
                          shape=(len(entries),))  # fmt: skip
        h5.create_dataset(f"clip_{_COUNT[group]}", data=counts, shape=(len(entries),))
        if group == "window" or entries:
            index = np.repeat(np.arange(len(entries), dtype="i8"), counts)
            h5.create_dataset(_INDEX[group], data=index, shape=(len(index),))


def _record_arrays(kind: str, rec: ClipFeatures) -> dict[str, np.ndarray | RowSpool]:
    """The record's datasets (spooled rows as they are: they are written a block at a time)."""
    out = {}
    for names in GROUPS[kind].values():
        for name in names:
            value = getattr(rec, name)
            if isinstance(value, RowSpool):
                out[name] = value
            elif value is not None:
                out[name] = np.asarray(value, _CAST.get(name))
    return out


def write_entry(
    path: str | os.PathLike[str],
    kind: str,
    spec: dict[str, Any],
    versions: dict[str, Any],
    rec: ClipFeatures,
) -> int:
    """Encode one clip into a one-clip shard at ``path`` (atomically); return its bytes."""
    arrays = _record_arrays(kind, rec)
    rows = {"window": len(rec.window_start_s)}
    if "frame" in GROUPS[kind]:
        rows["frame"] = len(rec.mask)
    entry = _Entry(rec.clip_id or "", Path(path), float(rec.duration_s), bool(rec.padded), rows)
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w", track_order=False) as h5:
        _root_attrs(h5, kind, spec, versions)
        for name, arr in arrays.items():
            ds = _create(h5, kind, name, arr.shape, arr.dtype)
            if not isinstance(arr, RowSpool):
                if arr.size:
                    ds[...] = arr
                continue
            for lo, rows in row_blocks(arr):
                ds[lo : lo + len(rows)] = rows
        _clip_table(h5, kind, [entry])
    return os.path.getsize(path)


def _in_order(items: Iterable[Any], key: Any = lambda x: x.clip_id) -> Iterator[Any]:
    """Pass items through, checking they come sorted by clip id (the canonical order)."""
    last = None
    for item in items:
        clip_id = key(item)
        if last is not None and clip_id <= last:
            raise ValueError(f"shard records must be sorted by clip id: {clip_id!r} after {last!r}")
        last = clip_id
        yield item


def _scan(kind: str, entries: Iterable[tuple[str, Path]]) -> tuple[list[_Entry], dict]:
    """Each entry's row counts and scalars; each dataset's row shape and dtype."""
    items, meta = [], {}
    for clip_id, path in _in_order(entries, key=lambda e: e[0]):
        with h5py.File(path, "r", locking=False) as h5:
            counts = {g: int(h5[f"clip_{_COUNT[g]}"][0]) for g in GROUPS[kind]}
            items.append(_Entry(clip_id, Path(path), float(h5["clip_duration_s"][0]),
                                bool(h5["clip_padded"][0]), counts))  # fmt: skip
            for group, names in GROUPS[kind].items():
                for name in (n for n in names if n in h5):
                    ds = h5[name]
                    if name not in meta or (counts[group] and not meta[name][2]):
                        meta[name] = (ds.shape[1:], ds.dtype, counts[group])
    return items, {name: (group_of(kind, name), *m[:2]) for name, m in meta.items()}


def group_of(kind: str, name: str) -> str:
    """The axis (frame or window) a dataset of a shard kind runs along."""
    return next(g for g, names in GROUPS[kind].items() if name in names)


def _same_storage(src: h5py.Dataset, dst: h5py.Dataset) -> bool:
    props = ("chunks", "compression", "compression_opts", "shuffle", "dtype", "shape")
    return all(
        getattr(src, p) == getattr(dst, p) if p != "shape" else src.shape[1:] == dst.shape[1:]
        for p in props
    )


def _move(src: h5py.Dataset, dst: h5py.Dataset, first: int, stats: WriteStats) -> None:
    """Put the rows of ``src`` at ``first`` in ``dst``: raw chunks when stored alike."""
    n = src.shape[0]
    if _same_storage(src, dst):
        rest = (0,) * (src.ndim - 1)
        for r in range(n):
            mask, blob = src.id.read_direct_chunk((r, *rest))
            dst.id.write_direct_chunk((first + r, *rest), blob, mask)
            stats.copied_bytes += len(blob)
    elif n:  # an entry laid out otherwise: decode and encode it
        value = src[()]
        dst[first : first + n] = value
        stats.encoded_bytes += value.nbytes


def assemble_shard(
    path: str | os.PathLike[str],
    kind: str,
    spec: dict[str, Any],
    versions: dict[str, Any],
    entries: Iterable[tuple[str, str | os.PathLike[str]]],
) -> WriteStats:
    """Write the shard of ``entries`` ((clip id, one-clip file), sorted by clip id) at ``path``.

    Row-chunked datasets move as stored chunks, small ones as values (module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"unknown shard kind {kind!r}")
    items, meta = _scan(kind, ((c, Path(p)) for c, p in entries))
    stats = WriteStats(clips=len(items))
    totals = {g: sum(e.counts[g] for e in items) for g in GROUPS[kind]}
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w", track_order=False) as h5:
        _root_attrs(h5, kind, spec, versions)
        if kind in EMPTY_WINDOWS and not items:  # a shard without any window has the datasets
            for name, shape in EMPTY_WINDOWS[kind].items():
                h5.create_dataset(name, shape=shape, dtype="f4")
            h5.create_dataset("window_start_s", shape=(0,), dtype="f8")
        dsets = {name: _create(h5, kind, name, (totals[g], *row), dtype)
                 for name, (g, row, dtype) in sorted(meta.items())}  # fmt: skip
        small: dict[str, list[np.ndarray]] = {n: [] for n in dsets if n not in ROW_CHUNKED[kind]}
        first = dict.fromkeys(totals, 0)
        for e in items:
            with h5py.File(e.path, "r", locking=False) as src:
                for name, dst in dsets.items():
                    if name not in src:
                        raise ValueError(f"{e.path} has no {name!r} dataset: entries disagree")
                    if name in small:
                        small[name].append(src[name][()])
                    else:
                        _move(src[name], dst, first[meta[name][0]], stats)
            for group, n in e.counts.items():
                first[group] += n
        for name, parts in small.items():
            if parts and totals[meta[name][0]]:
                value = np.concatenate(parts)
                dsets[name][...] = value
                stats.copied_bytes += value.nbytes
        _clip_table(h5, kind, items)
    return stats


def write_shard(
    path: str | os.PathLike[str],
    kind: str,
    spec: dict[str, Any],
    versions: dict[str, Any],
    records: Iterable[ClipFeatures],
) -> int:
    """Stream ``records`` (sorted by clip id) into a new shard; return the clip count.

    Each record is encoded once into a one-clip file in a temp folder, so memory stays flat;
    the shard is assembled from those and appears atomically."""
    if kind not in KINDS:
        raise ValueError(f"unknown shard kind {kind!r}")
    with tempfile.TemporaryDirectory(prefix="emoflow-entries-") as tmp:
        entries = []
        for i, rec in enumerate(_in_order(records)):
            entry = Path(tmp) / f"{i}.h5"
            write_entry(entry, kind, spec, versions, rec)
            entries.append((rec.clip_id, entry))
        return assemble_shard(path, kind, spec, versions, entries).clips
