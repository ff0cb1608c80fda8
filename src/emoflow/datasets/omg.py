"""OMG-Emotion: a CSV with ``video, utterance, valence, arousal, EmotionMaxVote``.

Files are at ``<root>/<video>/<utterance>`` (utterance like ``utterance_1.mp4``). The corpus
has no speaker ids; the YouTube video is the closest grouping, so speaker = video id. The
official split comes from a ``split`` column when there is one, else from the CSV's name
(``omg_TrainVideos.csv`` → train). With ``labels_csv`` unset, every ``*.csv`` directly in
the root is read (the corpus ships one per split).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from emoflow.datasets.listing import Entry, scan_listed
from emoflow.datasets.records import Fields, ScanResult
from emoflow.datasets.splits import normalise_split, split_in_name
from emoflow.datasets.table import Row, parse_number, read_table, table_path
from emoflow.errors import ClipError, ConfigError

EMOTIONS = ("angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised")
OMG_NAMES = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def parse_emotion(text: str | None, where: str) -> str | None:
    """EmotionMaxVote (0–6) → emotion name; None for an empty cell; ClipError otherwise."""
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if not number.is_integer() or not 0 <= number < len(EMOTIONS):
        codes = ", ".join(f"{i} {name}" for i, name in enumerate(OMG_NAMES))
        raise ClipError(
            "bad_label",
            f"EmotionMaxVote {text!r} on {where} is not an OMG-Emotion class ({codes})",
        )
    return EMOTIONS[int(number)]


def row_fields(row: Row, where: str, split: str | None) -> Fields:
    """Fields of one OMG row (speaker = video id)."""
    return Fields(
        speaker=row.get("video"),
        label=parse_emotion(row.get("EmotionMaxVote"), where),
        valence=parse_number(row.get("valence"), "valence", where),
        arousal=parse_number(row.get("arousal"), "arousal", where),
        split=normalise_split(row.get("split")) or split,
    )


def table_files(root: Path, labels_csv: str | None) -> list[Path]:
    """The labels CSV(s): ``labels_csv`` or, when unset, every ``*.csv`` in the root."""
    if labels_csv:
        return [table_path(root, labels_csv, "omg")]
    found = sorted(p for p in root.glob("*.csv") if p.is_file() and not p.name.startswith("."))
    if not found:
        raise ConfigError(
            f"dataset.labels_csv is unset and {root} holds no *.csv: the omg adapter needs "
            "the OMG-Emotion CSV (video, utterance, valence, arousal, EmotionMaxVote)"
        )
    return found


def scan(root: Path, cfg: dict[str, Any]) -> ScanResult:
    """Scan an OMG-Emotion folder from its CSV(s)."""
    entries = []
    for path in table_files(root, cfg.get("labels_csv")):
        table = read_table(path)
        table.require("video", "utterance")
        split = split_in_name(path.stem)
        for row in table.rows:
            where = f"{path.name} line {row.line}"
            video, utterance = row.get("video"), row.get("utterance")
            written = f"{video}/{utterance}" if video and utterance else None
            entries.append(Entry(where, written, functools.partial(row_fields, row, where, split)))
    return scan_listed(root, cfg, entries)
