"""Values computed from a file (a tool's version, a model's sha256), kept on disk by the file's
identity, so that each job need not compute them again.

``ffprobe -version`` costs about 0.1 s and the landmark model's sha256 another 0.1 s: together
a tenth of a short face job (bench/faces.py). A value is kept by the file's real path, size,
inode, mtime and ctime, so a file that is changed, replaced or even touched gets its value
computed again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from emoflow.storage.atomic import write_text
from emoflow.storage.digest import sha256_file

_FOLDER: list[Path] = []


def keep_in(folder: str | os.PathLike[str] | None) -> None:
    """Keep values under ``folder`` from now on in this process (None: compute every time)."""
    _FOLDER[:] = [] if folder is None else [Path(folder)]


def file_value(path: str | os.PathLike[str], what: str, compute: Callable[[], str]) -> str:
    """``compute()``: the value ``what`` of the file at ``path``, kept in the folder of
    :func:`keep_in` (if any) while the file stays the same."""
    if not _FOLDER:
        return compute()
    real = os.path.realpath(path)
    st = os.stat(real)
    key = [what, real, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]
    name = hashlib.sha256(json.dumps(key[:2]).encode("utf-8")).hexdigest()[:32]
    entry = _FOLDER[0] / f"{name}.json"
    try:
        kept = json.loads(entry.read_text("utf-8"))
        if kept["key"] == key and isinstance(kept["value"], str):
            return kept["value"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent or unreadable: compute it again
    value = compute()
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_text(entry, json.dumps({"key": key, "value": value}) + "\n")
    except OSError:  # a read-only cache: the value still holds
        pass
    return value


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a model's or tool's file (a stage's spec names it): kept by :func:`file_value`
    and hashed at most once per process while the file stays the same."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return _sha256_of(real, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


@functools.cache
def _sha256_of(real: str, *identity: int) -> str:
    return file_value(real, "sha256", lambda: sha256_file(real))


def forget() -> None:
    """Drop this process's hashes (:func:`file_sha256`); the kept files stay."""
    _sha256_of.cache_clear()
