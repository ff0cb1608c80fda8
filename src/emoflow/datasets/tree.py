"""The driver of folder adapters: walk the root, drop duplicate ids, parse each clip id
with the corpus's naming rule, check labels, sort."""

from __future__ import annotations

from collections.abc import Callable
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
from emoflow.datasets.walk import walk_media
from emoflow.errors import ClipError

Parser = Callable[[tuple[str, ...]], Fields]


def scan_tree(root: Path, cfg: dict[str, Any], parse: Parser) -> ScanResult:
    """Scan the media files under ``root``; ``parse`` maps a clip id's path components
    (NFC, extension removed) to its fields, or raises ClipError (kind bad_label)."""
    walked = walk_media(root, cfg["extensions"], cfg.get("allow_outside_root", False))
    files, failures = drop_duplicates(
        walked.files, key=lambda f: f.clip_id, describe=lambda f: repr(f.rel)
    )
    failures = walked.failures + failures
    records = []
    for found in files:
        try:
            fields = parse(tuple(found.clip_id.split("/")))
        except ClipError as exc:
            failures.append(failure(found.clip_id, exc.kind, exc.message))
            continue
        records.append(make_record(found.clip_id, found.path, fields))
    return finish(records, failures, cfg.get("labels"))
