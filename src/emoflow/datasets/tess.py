"""TESS (Toronto Emotional Speech Set): ``<speaker>_<word>_<emotion>.wav``, like ``OAF_back_angry``.

Two speakers, ``OAF`` (the older actress) and ``YAF`` (the younger), each say 200 words in
seven emotions: 2,800 ``.wav`` files. The corpus's archives put them in one folder per speaker
and emotion (``OAF_angry/``, ``OAF_Fear/``, ``OAF_Pleasant_surprise/``, ``YAF_fear/``,
``YAF_pleasant_surprised/``, …; Kaggle's copy under ``TESS Toronto emotional speech set
data/``). The folder is not read (its case and spelling vary): the file name decides, so those
trees and flat folders both work.

Emotion codes: angry, disgust, fear, happy, neutral, sad and ``ps`` (pleasant surprise; the real
files use ``ps``, also under ``OAF_Pleasant_surprise/``). The folders' spellings
``pleasant_surprise`` and ``pleasant_surprised`` are accepted in a file name too, and codes are
read in any case. Labels use the names of the other adapters: fear → ``fearful`` and pleasant
surprise → ``surprised`` (RAVDESS's and eNTERFACE's name; TESS has no other kind of surprise).

One real file is misnamed ``OA_bite_neutral.wav`` (in ``OAF_neutral/``): speaker ``OA`` is read
as ``OAF``. Speakers are the corpus's ``OAF`` and ``YAF``.
"""

from __future__ import annotations

import re
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
    "ps": "surprised",
    "sad": "sad",
}
# other spellings of an emotion code (lower case) -> the code
ALIASES = {"pleasant_surprise": "ps", "pleasant_surprised": "ps"}
SPEAKERS = ("OAF", "YAF")
# misnamed speaker codes of real files (upper case) -> the speaker
SPEAKER_ERRATA = {"OA": "OAF"}
PATTERN = re.compile(r"([A-Za-z]+)_([A-Za-z]+)_([A-Za-z]+(?:_[A-Za-z]+)*)")


def parse_name(stem: str) -> Fields:
    """Fields of a TESS file name without extension; ClipError(bad_label) if it is not one."""
    match = PATTERN.fullmatch(stem)
    if match is None:
        raise ClipError(
            "bad_label",
            f"file name {stem!r} does not follow the TESS pattern Speaker_word_emotion "
            "(like OAF_back_angry)",
        )
    speaker_code, _word, emotion = match.groups()
    speaker = SPEAKER_ERRATA.get(speaker_code.upper(), speaker_code.upper())
    if speaker not in SPEAKERS:
        raise ClipError(
            "bad_label",
            f"speaker {speaker_code!r} in {stem!r} is not a TESS speaker ({', '.join(SPEAKERS)})",
        )
    code = emotion.lower()
    code = ALIASES.get(code, code)
    if code not in EMOTIONS:
        raise ClipError(
            "bad_label",
            f"emotion {emotion!r} in {stem!r} is not a TESS emotion ({', '.join(EMOTIONS)})",
        )
    return Fields(speaker=speaker, label=EMOTIONS[code])


def scan(root: Path, cfg: dict[str, Any]) -> ScanResult:
    """Scan a TESS folder (``.wav`` files)."""
    return scan_tree(root, cfg, lambda parts: parse_name(parts[-1]))
