"""Atomic file writes: write to a temporary name in the same folder, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    On an exception (or a kill) the target is untouched and the temp file is removed
    (or left behind with a ``.tmp-`` prefix that no reader ever opens).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".tmp-{target.name}.", suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write ``data`` to ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 ``text`` to ``target``."""
    write_bytes(target, text.encode("utf-8"))


def write_bytes_if_changed(target: str | os.PathLike[str], data: bytes) -> bool:
    """Write ``data`` (atomically) only when the file's content differs; return whether it was
    written. Keeping the mtime of unchanged files is what lets Snakemake skip unchanged shards."""
    target = Path(target)
    try:
        if target.stat().st_size == len(data) and target.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_bytes(target, data)
    return True


def write_text_if_changed(target: str | os.PathLike[str], text: str) -> bool:
    """:func:`write_bytes_if_changed` of UTF-8 ``text``."""
    return write_bytes_if_changed(target, text.encode("utf-8"))


def remove_stale_temps(target: str | os.PathLike[str]) -> int:
    """Delete temp files a killed writer of ``target`` left behind; return how many.

    Only call this where one writer owns ``target`` (a shard job owns its shard).
    """
    target = Path(target)
    stale = list(target.parent.glob(f".tmp-{target.name}.*")) if target.parent.exists() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
