"""Content-dated inputs: a file whose content returns to what its consumers were built from
looks no newer than them, so Snakemake reruns nothing.

The scan rewrites the clip table and the shard lists whenever their content changes. When a
clip is added and removed again before the workflow finished with it (a dry run in between, an
interrupted run), the content is back to what the shards and folds were built from, but the
files are newer, and Snakemake would rebuild the shards and retrain every model. Each consumer
notes the sha256 of the input it was built from (a hidden ``.<name>.source`` file beside it);
:func:`backdate_if_built_from` then gives a rewritten input an mtime just before its oldest
consumer when every consumer was built from exactly these bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from emoflow.storage.atomic import write_text


def source_note(consumer: Path) -> Path:
    """Where ``consumer`` notes the sha256 of the input it was built from."""
    return consumer.with_name(f".{consumer.name}.source")


def note_source(consumer: Path, data: bytes) -> None:
    """Record that ``consumer`` was built from ``data``."""
    write_text(source_note(consumer), hashlib.sha256(data).hexdigest() + "\n")


def backdate_if_built_from(
    source: Path, data: bytes, consumers: Iterable[Path], also_after: Iterable[Path] = ()
) -> bool:
    """Set ``source``'s mtime 1 s before the oldest existing consumer (and ``also_after``
    file) when every existing consumer noted ``data`` as its input; return whether it did."""
    digest = hashlib.sha256(data).hexdigest()
    existing = [c for c in consumers if c.exists()]
    if not existing:
        return False
    for consumer in existing:
        try:
            if source_note(consumer).read_text("utf-8").strip() != digest:
                return False
        except OSError:
            return False
    oldest = min(p.stat().st_mtime_ns for p in [*existing, *(a for a in also_after if a.exists())])
    stamp = oldest - 1_000_000_000
    os.utime(source, ns=(stamp, stamp))
    return True
