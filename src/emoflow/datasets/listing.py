"""The driver of table adapters: locate each listed file, drop duplicate ids, check the
path, parse the row's fields, check labels, sort."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoflow.datasets.records import (
    Fields,
    ScanResult,
    drop_duplicates,
    failure,
    finish,
    make_record,
)
from emoflow.datasets.table import Listed, check_listed, locate
from emoflow.errors import ClipError, Failure


@dataclass(frozen=True)
class Entry:
    """One row of a labels table: where it is (for messages), the path it names (None when
    the cell is empty) and a function that parses its fields (may raise ClipError)."""

    where: str
    written: str | None
    fields: Callable[[], Fields]


def scan_listed(root: Path, cfg: dict[str, Any], entries: Iterable[Entry]) -> ScanResult:
    """Turn table rows into clips and failures (first row wins on a duplicate id)."""
    failures: list[Failure] = []
    located: list[tuple[Listed, Entry]] = []
    for entry in entries:
        if entry.written is None:
            failures.append(failure(entry.where, "not_found", f"{entry.where} names no file"))
            continue
        located.append((locate(root, entry.written), entry))
    kept, duplicates = drop_duplicates(
        located,
        key=lambda item: item[0].clip_id,
        describe=lambda item: f"{item[0].written!r} ({item[1].where})",
    )
    failures.extend(duplicates)
    records = []
    allow = bool(cfg.get("allow_outside_root", False))
    for listed, entry in kept:
        problem = check_listed(listed, root, allow)
        if problem is not None:
            failures.append(problem)
            continue
        try:
            fields = entry.fields()
        except ClipError as exc:
            failures.append(failure(listed.clip_id, exc.kind, exc.message))
            continue
        records.append(make_record(listed.clip_id, str(listed.path), fields))
    return finish(records, failures, cfg.get("labels"))
