"""AFEW: one folder per emotion (Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise),
optionally under ``Train/`` and ``Val/`` (also ``Train_AFEW``, ``Val_AFEW``), which give the
official split. Files directly in a ``Test/`` folder are the unlabelled test set. The corpus
has no speaker ids: speaker is None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emoflow.datasets.records import Fields, ScanResult
from emoflow.datasets.tree import scan_tree
from emoflow.errors import ClipError

EMOTIONS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "surprise": "surprised",
}
SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def split_of_folder(name: str) -> str | None:
    """The split a folder name stands for (``Train``, ``Val_AFEW``...), or None."""
    key = name.strip().lower()
    key = key.removesuffix("_afew").removesuffix("afew").rstrip("_- ")
    return SPLITS.get(key)


def parse_parts(parts: tuple[str, ...]) -> Fields:
    """Fields of an AFEW clip id's components; ClipError(bad_label) if off-layout."""
    shown = "/".join(parts)
    folders = parts[:-1]
    split = next((s for s in map(split_of_folder, reversed(folders)) if s), None)
    if not folders or split_of_folder(folders[-1]):
        if split == "test":
            return Fields(split="test")
        raise ClipError(
            "bad_label",
            f"{shown!r} is not inside an AFEW emotion folder "
            f"({', '.join(name.capitalize() for name in EMOTIONS)})",
        )
    emotion = folders[-1].strip().lower()
    if emotion not in EMOTIONS:
        raise ClipError(
            "bad_label",
            f"folder {folders[-1]!r} in {shown!r} is not an AFEW emotion "
            f"({', '.join(name.capitalize() for name in EMOTIONS)})",
        )
    return Fields(label=EMOTIONS[emotion], split=split)


def scan(root: Path, cfg: dict[str, Any]) -> ScanResult:
    """Scan an AFEW folder."""
    return scan_tree(root, cfg, parse_parts)
