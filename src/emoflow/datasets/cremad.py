"""CREMA-D: ``1001_DFA_ANG_XX`` = actor id, sentence code, emotion, intensity.

Files usually sit under ``VideoFlash/`` (``.flv``) or ``AudioWAV/`` (``.wav``); the folder
is not read, so both kinds (with different clip ids) can be scanned together.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from emoflow.datasets.records import Fields, ScanResult
from emoflow.datasets.tree import scan_tree
from emoflow.errors import ClipError

EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
INTENSITIES = ("LO", "MD", "HI", "XX")
PATTERN = re.compile(r"(\d{4})_([A-Za-z]{3})_([A-Za-z]{3})_([A-Za-z]{2})")


def parse_name(stem: str) -> Fields:
    """Fields of a CREMA-D file name without extension; ClipError(bad_label) if it is not one."""
    match = PATTERN.fullmatch(stem)
    if match is None:
        raise ClipError(
            "bad_label",
            f"file name {stem!r} does not follow the CREMA-D pattern "
            "ActorID_Sentence_Emotion_Intensity (like 1001_DFA_ANG_XX)",
        )
    actor, _sentence, emotion, intensity = match.groups()
    if emotion.upper() not in EMOTIONS:
        raise ClipError(
            "bad_label",
            f"emotion code {emotion!r} in {stem!r} is not a CREMA-D emotion "
            f"({', '.join(EMOTIONS)})",
        )
    if intensity.upper() not in INTENSITIES:
        raise ClipError(
            "bad_label",
            f"intensity code {intensity!r} in {stem!r} is not a CREMA-D intensity "
            f"({', '.join(INTENSITIES)})",
        )
    return Fields(speaker=actor, label=EMOTIONS[emotion.upper()])


def scan(root: Path, cfg: dict[str, Any]) -> ScanResult:
    """Scan a CREMA-D folder."""
    return scan_tree(root, cfg, lambda parts: parse_name(parts[-1]))
