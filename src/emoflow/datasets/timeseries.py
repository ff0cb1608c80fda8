"""Generic time-continuous corpus: a CSV of media files and their End2You-style label files.

``dataset.labels_csv`` lists one clip per row: the media file (column ``columns.path``; End2You's
own input header ``file`` is read when the table has no such column), its label file (column
``columns.label_file``, default ``label_file``), and optionally speaker and split (``columns.
speaker`` / ``columns.split``). Paths are relative to the root unless absolute. A label file is
``time,<label>,...`` with a header row, time in seconds (RECOLA, SEWA and End2You's format; read
by :func:`emoflow.labels.tracks.read_track`). ``dataset.track_columns`` maps its columns to
valence / arousal / expression; unset, columns of those names are used.

Clip-level label, valence and arousal are None (the labels are the clip's track). A missing
media or label file is ``not_found``; one outside the root is ``outside_root`` unless
``dataset.allow_outside_root``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from emoflow.datasets.listing import Entry, scan_listed
from emoflow.datasets.records import Fields, ScanResult
from emoflow.datasets.splits import normalise_split
from emoflow.datasets.table import Row, locate, read_table, table_path
from emoflow.errors import ClipError
from emoflow.labels.tracks import TrackSource

END2YOU_FILE_COLUMN = "file"
DEFAULT_LABEL_FILE_COLUMN = "label_file"


def label_file(root: Path, written: str | None, where: str, allow_outside_root: bool) -> str:
    """The resolved path of a row's label file; ClipError when missing or outside the root."""
    if written is None:
        raise ClipError("not_found", f"{where} names no label file")
    lexical = os.path.normpath(os.path.join(root, written))
    real = Path(os.path.realpath(lexical))
    if not allow_outside_root and not real.is_relative_to(root):
        raise ClipError(
            "outside_root",
            f"label file {written!r} ({where}) resolves to {str(real)!r}, outside the dataset "
            f"root {str(root)!r} (set dataset.allow_outside_root to allow it)",
        )
    if not real.is_file():
        raise ClipError(
            "not_found", f"label file {written!r} ({where}) does not exist or is not a file"
        )
    return str(real)


def scan(root: Path, cfg: dict[str, Any]) -> ScanResult:
    """Scan the media files and label files listed in ``dataset.labels_csv``."""
    columns = cfg.get("columns") or {}
    path = table_path(root, cfg.get("labels_csv"), "timeseries")
    table = read_table(path)
    media = columns.get("path", "path")
    if media not in table.columns and END2YOU_FILE_COLUMN in table.columns:
        media = END2YOU_FILE_COLUMN
    labels_column = columns.get("label_file", DEFAULT_LABEL_FILE_COLUMN)
    table.require(media, labels_column)
    mapping = tuple(
        (column, target) for target, column in sorted((cfg.get("track_columns") or {}).items())
    )
    allow = bool(cfg.get("allow_outside_root", False))
    tracks: dict[str, TrackSource] = {}

    def fields(row: Row, where: str, clip_id: str) -> Fields:
        found = label_file(root, row.raw(labels_column), where, allow)
        tracks[clip_id] = TrackSource(table=found, columns=mapping)
        return Fields(
            speaker=row.get(columns.get("speaker", "speaker")),
            split=normalise_split(row.get(columns.get("split", "split"))),
        )

    entries = []
    for row in table.rows:
        where = f"{path.name} line {row.line}"
        written = row.raw(media)
        clip_id = locate(root, written).clip_id if written else ""
        entries.append(Entry(where, written, functools.partial(fields, row, where, clip_id)))
    result = scan_listed(root, {**cfg, "labels": None}, entries)
    result.tracks = {c.clip_id: tracks[c.clip_id] for c in result.clips}
    return result
