"""Generic CSV: a labels table whose columns ``dataset.columns`` names (path, speaker,
label, valence, arousal, split). Only the path column is required; a missing optional
column or an empty cell gives None. Paths are relative to the root unless absolute.
Labels are taken as written (stripped); ``dataset.labels`` checks them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from emoflow.datasets.listing import Entry, scan_listed
from emoflow.datasets.records import Fields, ScanResult
from emoflow.datasets.splits import normalise_split
from emoflow.datasets.table import Row, parse_number, read_table, table_path

DEFAULT_COLUMNS = {
    "path": "path",
    "speaker": "speaker",
    "label": "label",
    "valence": "valence",
    "arousal": "arousal",
    "split": "split",
}


def row_fields(row: Row, columns: dict[str, str], where: str) -> Fields:
    """Fields of one row of a generic labels table."""
    return Fields(
        speaker=row.get(columns["speaker"]),
        label=row.get(columns["label"]),
        valence=parse_number(row.get(columns["valence"]), "valence", where),
        arousal=parse_number(row.get(columns["arousal"]), "arousal", where),
        split=normalise_split(row.get(columns["split"])),
    )


def scan(root: Path, cfg: dict[str, Any]) -> ScanResult:
    """Scan the files listed in ``dataset.labels_csv``."""
    columns = {**DEFAULT_COLUMNS, **(cfg.get("columns") or {})}
    path = table_path(root, cfg.get("labels_csv"), "csv")
    table = read_table(path)
    table.require(columns["path"])
    entries = []
    for row in table.rows:
        where = f"{path.name} line {row.line}"
        parse = functools.partial(row_fields, row, columns, where)
        entries.append(Entry(where, row.raw(columns["path"]), parse))
    return scan_listed(root, cfg, entries)
