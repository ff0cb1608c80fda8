"""The clip table's row type, the scan result, and the steps every adapter ends with:
clip ids from paths, duplicate ids, the allowed-label check and a deterministic order."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import NamedTuple, TypeVar

from emoflow.errors import Failure
from emoflow.labels.tracks import TrackSource

STAGE = "scan"

T = TypeVar("T")


class ClipRecord(NamedTuple):
    """One row of the clip table as an adapter sees it (before hashing and sharding).

    (Named tuples, like :class:`Fields`: a scan makes one per clip, and a frozen dataclass costs
    several times more to build — about 1 s per 100,000 clips.)"""

    clip_id: str
    path: str
    speaker: str | None
    label: str | None
    valence: float | None
    arousal: float | None
    split: str | None


@dataclass
class ScanResult:
    """Clips sorted by ``clip_id`` and failures (stage ``scan``) sorted by (clip_id, kind)."""

    clips: list[ClipRecord] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    tracks: dict[str, TrackSource] = field(default_factory=dict)  # clip_id -> its label track


class Fields(NamedTuple):
    """What an adapter reads about one clip from its name or its labels table."""

    speaker: str | None = None
    label: str | None = None
    valence: float | None = None
    arousal: float | None = None
    split: str | None = None


def nfc(text: str) -> str:
    """Unicode NFC form of ``text`` (clip ids are compared in this form)."""
    return unicodedata.normalize("NFC", text)


def clip_id_of(rel: str, suffix: str | None = None) -> str:
    """The clip id of a root-relative POSIX path: without its media extension, NFC.

    ``suffix`` is the extension to remove (as found, any case); by default the path's own.
    """
    if suffix is None:
        suffix = PurePosixPath(rel).suffix
    if suffix and rel.lower().endswith(suffix.lower()) and len(rel) > len(suffix):
        rel = rel[: -len(suffix)]
    return nfc(rel)


def failure(clip_id: str, kind: str, message: str) -> Failure:
    """A Failure of the scan stage."""
    return Failure(clip_id=nfc(clip_id), stage=STAGE, kind=kind, message=message)


def make_record(clip_id: str, path: str, fields: Fields) -> ClipRecord:
    """Build a ClipRecord from an id, a resolved path and the parsed fields."""
    return ClipRecord(
        clip_id, path, fields.speaker, fields.label, fields.valence, fields.arousal, fields.split
    )


def drop_duplicates(
    items: Iterable[T], key: Callable[[T], str], describe: Callable[[T], str]
) -> tuple[list[T], list[Failure]]:
    """Keep the first item of each id (in the given order); the others become duplicate_id."""
    kept: dict[str, T] = {}
    failures: list[Failure] = []
    for item in items:
        cid = key(item)
        first = kept.get(cid)
        if first is None:
            kept[cid] = item
            continue
        failures.append(
            failure(
                cid,
                "duplicate_id",
                f"{describe(first)} and {describe(item)} both map to clip id {cid!r}; "
                f"keeping {describe(first)}",
            )
        )
    return list(kept.values()), failures


def check_label(record: ClipRecord, allowed: list[str] | None) -> Failure | None:
    """bad_label when ``allowed`` is a list and the record's label is missing or not in it."""
    if allowed is None or record.label in allowed:
        return None
    choices = ", ".join(allowed) if allowed else "(none)"
    if record.label is None:
        message = f"the clip has no label; allowed labels: {choices}"
    else:
        message = f"label {record.label!r} is not one of the allowed labels: {choices}"
    return failure(record.clip_id, "bad_label", message)


def finish(
    records: Iterable[ClipRecord], failures: Iterable[Failure], allowed: list[str] | None
) -> ScanResult:
    """Apply the allowed-label check and sort clips by id, failures by (clip_id, kind)."""
    clips: list[ClipRecord] = []
    found = list(failures)
    for record in records:
        problem = check_label(record, allowed)
        if problem is None:
            clips.append(record)
        else:
            found.append(problem)
    clips.sort(key=lambda r: r.clip_id)
    found.sort(key=lambda f: (f.clip_id, f.kind, f.message))
    return ScanResult(clips=clips, failures=found)


def content_key(sha256: str, side: str | None = None) -> str:
    """A clip's content key (what its per-clip cache entries are keyed by): the sha256 of its
    bytes, plus ``-left`` / ``-right`` when the clip is one person of a two-person video."""
    return f"{sha256}-{side}" if side else sha256


def split_key(key: str) -> tuple[str, str | None]:
    """``(sha256, side or None)`` of a :func:`content_key`."""
    sha, _, side = key.partition("-")
    return sha, side or None
