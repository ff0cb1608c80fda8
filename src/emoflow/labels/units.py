"""Scoring units of time-continuous clips: each analysis window of such a clip is predicted and
stored as its own row, ``<clip_id>@w<window:05d>``, so fusion and the prediction tables treat
windows like clips; scoring maps them back to the clip's frames (:mod:`emoflow.labels.frames`)."""

from __future__ import annotations

import re

_UNIT = re.compile(r"^(?P<clip>.+)@w(?P<w>\d{5})$")


def unit_id(clip_id: str, window: int) -> str:
    """The id of window ``window`` of a time-continuous clip (sorts in time order)."""
    return f"{clip_id}@w{int(window):05d}"


def split_unit(unit: str) -> tuple[str, int] | None:
    """``(clip_id, window)`` of a unit id, or None when ``unit`` is not one."""
    m = _UNIT.match(unit)
    return (m["clip"], int(m["w"])) if m else None


def lookup(table: dict[str, str], key: str) -> str | None:
    """``table[key]``, else the entry of the clip whose window ``key`` is (None if neither)."""
    if key in table:
        return table[key]
    parts = split_unit(key)
    return table.get(parts[0]) if parts else None
