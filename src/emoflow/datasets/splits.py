"""Official split names: ``train``, ``val`` and ``test``, from the many ways corpora write them."""

from __future__ import annotations

import re

SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "devel": "val",
    "test": "test",
    "testing": "test",
}


def normalise_split(value: str | None) -> str | None:
    """``"Validation"`` → ``"val"``; unknown names are kept as written (stripped); empty → None."""
    if value is None or not value.strip():
        return None
    return SPLIT_NAMES.get(value.strip().lower(), value.strip())


def split_in_name(name: str) -> str | None:
    """The split a file name states as a word (``omg_TrainVideos.csv`` → ``"train"``), or None.

    Words are separated by non-letters and by lower-to-upper case changes, so ``latest.csv``
    does not read as ``test``.
    """
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    for word in re.split(r"[^a-z0-9]+", spaced.lower()):
        if word in SPLIT_NAMES:
            return SPLIT_NAMES[word]
    return None
