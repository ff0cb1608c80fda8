"""SAVEE (Surrey Audio-Visual Expressed Emotion): an emotion code and a sentence number.

Four male speakers, ``DC``, ``JE``, ``JK`` and ``KL``, 120 sentences each: 15 per emotion for
``a`` (anger), ``d`` (disgust), ``f`` (fear), ``h`` (happiness), ``sa`` (sadness) and ``su``
(surprise), 30 for ``n`` (neutral). Two real layouts, both read (leading folders allowed):

- the corpus's per-speaker folders, where the parent folder is the speaker:
  ``AudioData/DC/a01.wav``, ``AudioVisualClip/DC/sa15.avi`` (the video clips; public scripts
  name them unpadded, ``a1.avi``, so one- and two-digit numbers are read);
- flat, speaker as the prefix: ``DC_a01.wav`` (Kaggle's ``ALL/`` folder). A flat name inside a
  speaker folder must agree with it.

Codes are read in any case. Labels use the names of the other adapters (angry, disgust, fearful,
happy, neutral, sad, surprised, as RAVDESS's); speakers are the corpus's ``DC`` … ``KL``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from emoflow.datasets.records import Fields, ScanResult
from emoflow.datasets.tree import scan_tree
from emoflow.errors import ClipError

# code -> (label, the corpus's name for it, last sentence number)
EMOTIONS = {
    "a": ("angry", "anger", 15),
    "d": ("disgust", "disgust", 15),
    "f": ("fearful", "fear", 15),
    "h": ("happy", "happiness", 15),
    "n": ("neutral", "neutral", 30),
    "sa": ("sad", "sadness", 15),
    "su": ("surprised", "surprise", 15),
}
SPEAKERS = ("DC", "JE", "JK", "KL")
FLAT = re.compile(r"([A-Za-z]+)_([A-Za-z]+)(\d+)")
INNER = re.compile(r"([A-Za-z]+)(\d+)")
LAYOUT = "<speaker>/<emotion><NN> (like AudioData/DC/a01.wav) or <speaker>_<emotion><NN> (DC_a01)"


def parse_parts(parts: tuple[str, ...]) -> Fields:
    """Fields of a SAVEE clip id's components; ClipError(bad_label) if off-layout."""
    stem = parts[-1]
    folder = parts[-2] if len(parts) > 1 else None
    flat = FLAT.fullmatch(stem)
    if flat is not None:
        speaker_code, code, number = flat.groups()
        shown = stem
    else:
        inner = INNER.fullmatch(stem)
        if inner is None:
            raise ClipError(
                "bad_label", f"file name {stem!r} does not follow the SAVEE layout {LAYOUT}"
            )
        if folder is None:
            raise ClipError(
                "bad_label",
                f"{stem!r} is not inside a speaker folder and has no speaker prefix "
                f"(layout: {LAYOUT})",
            )
        code, number = inner.groups()
        speaker_code = folder
        shown = f"{folder}/{stem}"
    speaker = speaker_code.upper()
    if speaker not in SPEAKERS:
        raise ClipError(
            "bad_label",
            f"speaker {speaker_code!r} of {shown!r} is not a SAVEE speaker "
            f"({', '.join(SPEAKERS)}; layout: {LAYOUT})",
        )
    if flat is not None and folder is not None and folder.upper() in SPEAKERS:
        if folder.upper() != speaker:
            raise ClipError(
                "bad_label",
                f"speaker prefix {speaker_code!r} of {stem!r} disagrees with its folder {folder!r}",
            )
    emotion = EMOTIONS.get(code.lower())
    if emotion is None:
        raise ClipError(
            "bad_label",
            f"emotion code {code!r} in {shown!r} is not a SAVEE emotion ({', '.join(EMOTIONS)})",
        )
    label, name, last = emotion
    if len(number) > 2 or not 1 <= int(number) <= last:
        raise ClipError(
            "bad_label",
            f"sentence number {number!r} in {shown!r} is not a SAVEE {name} sentence "
            f"(01–{last:02d})",
        )
    return Fields(speaker=speaker, label=label)


def scan(root: Path, cfg: dict[str, Any]) -> ScanResult:
    """Scan a SAVEE folder (audio ``.wav`` and video ``.avi`` files)."""
    return scan_tree(root, cfg, parse_parts)
