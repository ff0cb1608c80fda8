"""File discovery: the media files under a dataset root, in sorted order.

Symbolic links to files and folders are followed. A link that points to itself or to a
folder above it is a ``symlink_loop`` failure and is not entered, so a walk always ends.
A link whose target lies outside the root is an ``outside_root`` failure unless allowed.
Hidden names (``.x``) and editor/temporary files are skipped. The walk never opens a
file: empty or corrupt media are later stages' business.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from unicodedata import normalize

from emoflow.datasets.records import clip_id_of, failure
from emoflow.errors import Failure

DirKey = tuple[int, int]


class FoundFile(NamedTuple):
    """A media file: its root-relative POSIX path as found (link names, not targets),
    its resolved absolute path, its media extension as written, and its clip id (``rel``
    without the extension, NFC). A named tuple: the walk makes one per file."""

    rel: str
    path: str
    suffix: str
    clip_id: str

    @classmethod
    def of(cls, rel: str, path: str, suffix: str) -> FoundFile:
        """The FoundFile of ``rel`` (its clip id computed)."""
        return cls(rel, path, suffix, clip_id_of(rel, suffix))


@dataclass
class WalkResult:
    """Files sorted by their raw relative path, and the failures met on the way."""

    files: list[FoundFile] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def normalise_extensions(extensions: Iterable[str]) -> frozenset[str]:
    """Lower-case extensions with a leading dot (``"MP4"`` → ``".mp4"``)."""
    out = set()
    for ext in extensions:
        ext = ext.strip().lower()
        if ext:
            out.add(ext if ext.startswith(".") else "." + ext)
    return frozenset(out)


def is_skipped_name(name: str) -> bool:
    """Hidden names and temporary/backup files that no reader should take for a clip."""
    return (
        name.startswith(".")
        or name.startswith("~$")
        or name.endswith("~")
        or (name.startswith("#") and name.endswith("#"))
    )


def _valid_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as surrogate escapes
        return False
    return True


def _printable(rel: str) -> str:
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _media_suffix(name: str, extensions: frozenset[str]) -> str | None:
    # PurePosixPath(name).suffix without building a path (this runs once per file)
    i = name.rfind(".")
    if 0 < i < len(name) - 1:
        suffix = name[i:]
        return suffix if suffix.lower() in extensions else None
    return None


def walk_media(
    root: str | os.PathLike[str],
    extensions: Iterable[str],
    allow_outside_root: bool = False,
) -> WalkResult:
    """Find the media files under ``root`` (whose lower-case suffix is in ``extensions``).

    Returns the files sorted by raw relative path and the failures (symlink_loop,
    outside_root, not_found for a dangling link with a media name, unreadable for a folder
    that cannot be listed or a name that is not UTF-8).
    """
    exts = normalise_extensions(extensions)
    real_root = Path(root).resolve()
    root_stat = os.stat(real_root)
    result = WalkResult()
    # Each entry: (folder path to list, its real path, relative prefix, real folders above).
    stack: list[tuple[str, str, str, frozenset[DirKey]]] = [
        (str(real_root), str(real_root), "", frozenset({(root_stat.st_dev, root_stat.st_ino)}))
    ]
    while stack:
        folder, real_folder, prefix, ancestors = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            result.failures.append(
                failure(prefix.rstrip("/") or ".", "unreadable", f"cannot list folder: {exc}")
            )
            continue
        children = []
        base = real_folder if real_folder.endswith("/") else real_folder + "/"
        for entry in entries:
            name = entry.name
            if (name[0] in ".~#" or name[-1] == "~") and is_skipped_name(name):
                continue
            rel = prefix + name
            if not _valid_utf8(name):
                result.failures.append(
                    failure(
                        _printable(rel),
                        "unreadable",
                        f"the name {_printable(rel)!r} is not valid UTF-8; rename it",
                    )
                )
                continue
            if not entry.is_symlink() and entry.is_file(follow_symlinks=False):
                # the common case, inline (this loop runs once per file of the corpus)
                suffix = _media_suffix(name, exts)
                if suffix:  # the name ends with it, after at least one character
                    clip_id = normalize("NFC", rel[: -len(suffix)])
                    result.files.append(FoundFile(rel, base + name, suffix, clip_id))
                continue
            child = _visit(entry, rel, real_folder, real_root, ancestors, exts, allow_outside_root)
            if isinstance(child, FoundFile):
                result.files.append(child)
            elif isinstance(child, Failure):
                result.failures.append(child)
            elif child is not None:
                children.append(child)
        stack.extend(reversed(children))
    result.files.sort(key=lambda f: f.rel)
    return result


def _visit(
    entry: os.DirEntry[str],
    rel: str,
    real_folder: str,
    real_root: Path,
    ancestors: frozenset[DirKey],
    exts: frozenset[str],
    allow_outside_root: bool,
) -> FoundFile | Failure | tuple[str, str, str, frozenset[DirKey]] | None:
    """Classify one folder entry: a media file, a failure, a folder to enter, or nothing."""
    suffix = _media_suffix(entry.name, exts)
    if not entry.is_symlink():
        if entry.is_dir(follow_symlinks=False):
            st = entry.stat(follow_symlinks=False)
            key = (st.st_dev, st.st_ino)
            if key in ancestors:  # a bind mount can loop without a link
                return failure(rel, "symlink_loop", f"folder {rel!r} is a folder above it")
            return (entry.path, os.path.join(real_folder, entry.name), rel + "/", ancestors | {key})
        if suffix and entry.is_file(follow_symlinks=False):
            return FoundFile.of(rel, os.path.join(real_folder, entry.name), suffix)
        return None
    try:
        st = os.stat(entry.path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return failure(
                rel,
                "symlink_loop",
                f"symbolic link {rel!r} points to itself (or through links back to itself)",
            )
        if suffix:
            target = os.readlink(entry.path)
            return failure(
                clip_id_of(rel, suffix),
                "not_found",
                f"symbolic link {rel!r} points to {target!r}, which does not exist",
            )
        return None
    target = Path(os.path.realpath(entry.path))
    is_dir = os.path.isdir(target)
    if not is_dir and not suffix:
        return None
    cid = rel if is_dir else clip_id_of(rel, suffix)
    if not allow_outside_root and not _inside(target, real_root):
        return failure(
            cid,
            "outside_root",
            f"symbolic link {rel!r} points to {str(target)!r}, outside the dataset root "
            f"{str(real_root)!r} (set dataset.allow_outside_root to allow it)",
        )
    if is_dir:
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            return failure(
                rel,
                "symlink_loop",
                f"symbolic link {rel!r} points to {str(target)!r}, a folder above it; not entered",
            )
        return (entry.path, str(target), rel + "/", ancestors | {key})
    if not os.path.isfile(target):
        return None
    return FoundFile.of(rel, str(target), suffix or "")
