"""RAVDESS: everything is in the file name ``MM-VV-EE-II-SS-RR-AA``.

Modality 01 full-AV, 02 video-only, 03 audio-only; vocal channel 01 speech, 02 song;
emotion 01–08; intensity 01 normal, 02 strong; statement 01–02; repetition 01–02;
actor 01–24 (speaker ``Actor_XX`` like the corpus's folders). The folder is not read:
``Actor_01/…`` trees and flat folders both work.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from emoflow.datasets.records import Fields, ScanResult
from emoflow.datasets.tree import scan_tree
from emoflow.errors import ClipError

EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
MODALITIES = {"01": "full-AV", "02": "video-only", "03": "audio-only"}
PATTERN = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
# Every field in range at once (the common case, one regex call per clip); a name it rejects is
# checked field by field below for a precise message.
VALID = re.compile(r"0[1-3]-0[12]-(0[1-8])-0[12]-0[12]-0[12]-(0[1-9]|1[0-9]|2[0-4])")
# (emotion code, actor code) -> Fields, built once
_FIELDS = {
    (emotion, f"{actor:02d}"): Fields(speaker=f"Actor_{actor:02d}", label=label)
    for emotion, label in EMOTIONS.items()
    for actor in range(1, 25)
}
# field name, allowed codes (as text), how a person reads the range
_RANGES = (
    ("modality", {"01", "02", "03"}, "01–03"),
    ("vocal channel", {"01", "02"}, "01–02"),
    ("emotion", set(EMOTIONS), "01–08"),
    ("intensity", {"01", "02"}, "01–02"),
    ("statement", {"01", "02"}, "01–02"),
    ("repetition", {"01", "02"}, "01–02"),
    ("actor", {f"{i:02d}" for i in range(1, 25)}, "01–24"),
)


def parse_name(stem: str) -> Fields:
    """Fields of a RAVDESS file name without extension; ClipError(bad_label) if it is not one."""
    valid = VALID.fullmatch(stem)
    if valid is not None:
        return _FIELDS[valid.groups()]
    match = PATTERN.fullmatch(stem)
    if match is None:
        raise ClipError(
            "bad_label",
            f"file name {stem!r} does not follow the RAVDESS pattern MM-VV-EE-II-SS-RR-AA",
        )
    for (what, allowed, span), code in zip(_RANGES, match.groups(), strict=True):
        if code not in allowed:
            raise ClipError(
                "bad_label", f"{what} code {code!r} in {stem!r} is not a RAVDESS {what} ({span})"
            )
    actor = match.group(7)
    return Fields(speaker=f"Actor_{actor}", label=EMOTIONS[match.group(3)])


def scan(root: Path, cfg: dict[str, Any]) -> ScanResult:
    """Scan a RAVDESS folder (video ``.mp4`` and audio ``.wav`` files)."""
    return scan_tree(root, cfg, lambda parts: parse_name(parts[-1]))
