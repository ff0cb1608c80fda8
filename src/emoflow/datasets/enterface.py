"""eNTERFACE'05: ``subject N/<emotion>/sentence N/<file>.avi``.

Subject 6 of the real corpus has no sentence level (``subject 6/anger/<file>.avi``); both
layouts are read. Leading folders above ``subject N`` (an archive's top folder) are allowed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from emoflow.datasets.records import Fields, ScanResult
from emoflow.datasets.tree import scan_tree
from emoflow.errors import ClipError

EMOTIONS = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happiness": "happy",
    "sadness": "sad",
    "surprise": "surprised",
}
SUBJECT = re.compile(r"subject\s*0*(\d+)", re.IGNORECASE)
SENTENCE = re.compile(r"sentence\s*\d+", re.IGNORECASE)
LAYOUT = "subject N/<emotion>/sentence N/<file>.avi (or subject N/<emotion>/<file>.avi)"


def parse_parts(parts: tuple[str, ...]) -> Fields:
    """Fields of an eNTERFACE clip id's components; ClipError(bad_label) if off-layout."""
    shown = "/".join(parts)
    subject_at = [i for i, part in enumerate(parts[:-1]) if SUBJECT.fullmatch(part.strip())]
    if not subject_at:
        raise ClipError(
            "bad_label", f"{shown!r} is not inside a 'subject N' folder (layout: {LAYOUT})"
        )
    i = subject_at[-1]
    inner = parts[i + 1 : -1]
    if not inner or len(inner) > 2 or (len(inner) == 2 and not SENTENCE.fullmatch(inner[1])):
        raise ClipError("bad_label", f"{shown!r} does not follow the eNTERFACE layout {LAYOUT}")
    emotion = inner[0].strip().lower()
    if emotion not in EMOTIONS:
        raise ClipError(
            "bad_label",
            f"folder {inner[0]!r} in {shown!r} is not an eNTERFACE emotion ({', '.join(EMOTIONS)})",
        )
    number = int(SUBJECT.fullmatch(parts[i].strip()).group(1))  # type: ignore[union-attr]
    return Fields(speaker=f"subject {number}", label=EMOTIONS[emotion])


def scan(root: Path, cfg: dict[str, Any]) -> ScanResult:
    """Scan an eNTERFACE'05 folder."""
    return scan_tree(root, cfg, parse_parts)
