"""A clip's time-continuous labels ("track"): where they come from and how they are read.

An adapter of a corpus with per-frame or per-timestamp labels (``affwild2``, ``timeseries``)
gives each such clip a :class:`TrackSource`; the scan reads it with :func:`read_track` into one
table per clip: ``time_s`` (float64, seconds from the start of the video), ``valence``,
``arousal`` (float32, NaN where not annotated) and ``expression`` (class name, None where not
annotated).

Two file formats are read:

- **Aff-Wild2 / ABAW** annotation files (``VA_Estimation_Challenge/Train_Set/<video>.txt`` and
  the like): a header line, then one line per video frame. VA files have the header
  ``valence,arousal`` and two numbers in [-1, 1] per line, -5 where the frame is not annotated.
  Expression files have the class names as header (``Neutral,Anger,Disgust,Fear,Happiness,
  Sadness,Surprise,Other``; the 2020–2021 editions have no ``Other``) and one class index per
  line, -1 where not annotated. Frame *i* is at ``i / fps``.
- **End2You** label files (RECOLA, SEWA...): a header ``time,<label>,...`` (the first column is the
  time in seconds, whatever its name), then one row per time step, comma-separated (``;`` or a tab
  when the header uses it, as older End2You files do).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emoflow.errors import ClipError

TRACK_COLUMNS = ("time_s", "valence", "arousal", "expression")
TARGETS = ("valence", "arousal", "expression")

VA_UNANNOTATED = -5.0
EXPR_UNANNOTATED = -1
EXPRESSION_NAMES: dict[str, str] = {
    "neutral": "neutral",
    "anger": "angry",
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "fearful": "fearful",
    "happiness": "happy",
    "happy": "happy",
    "sadness": "sad",
    "sad": "sad",
    "surprise": "surprised",
    "surprised": "surprised",
    "other": "other",
}
"""ABAW expression header names (any case) -> the project's class names (as in the omg and
afew adapters, plus ``other``)."""


@dataclass(frozen=True)
class TrackSource:
    """Where one clip's time-continuous labels are.

    - ``va`` / ``expr``: Aff-Wild2 annotation files (one line per video frame after a header;
      -5 marks an unannotated VA frame, -1 an unannotated expression); frame *i* is at
      ``i / fps`` of the video, so reading them needs the video's frame rate.
    - ``table``: an End2You-style CSV, ``time,<col>,...`` one row per time step;
      ``columns`` maps its label columns to ``valence`` / ``arousal`` / ``expression``.
    - ``side``: ``left`` / ``right`` when the video shows two people and these labels belong to
      the one on that side (Aff-Wild2's ``<video>_left.txt``); the face stage follows that person.
    """

    va: str | None = None
    expr: str | None = None
    table: str | None = None
    columns: tuple[tuple[str, str], ...] = ()
    side: str | None = None

    @property
    def needs_fps(self) -> bool:
        """Whether the labels are indexed by video frame (so reading needs the frame rate)."""
        return self.table is None

    @property
    def files(self) -> tuple[str, ...]:
        """The label files, in a fixed order (their bytes are part of the clip table's hash)."""
        return tuple(f for f in (self.va, self.expr, self.table) if f)


def read_track(source: TrackSource, fps: float | None) -> pd.DataFrame:
    """Read a clip's labels into a table with columns :data:`TRACK_COLUMNS`.

    ``time_s`` (float64) ascends; ``valence`` / ``arousal`` (float32) are NaN and ``expression``
    (object) is None where not annotated. Aff-Wild2 files need ``fps`` (the video's frame
    rate): frame *i* is at ``i / fps``; when a clip has both a VA and an expression file of
    different lengths, the table has the longer length and the shorter track is unannotated
    past its end. End2You tables ignore ``fps``.

    Raises ClipError (``not_found`` for a missing file, ``bad_label`` for a file that is not
    UTF-8, has the wrong header, a non-numeric or out-of-range value; the message names the file
    and line) and ValueError for a source with no file or both kinds, or a missing ``fps``.
    """
    if source.table is not None:
        if source.va or source.expr:
            raise ValueError("a TrackSource has either an End2You table or Aff-Wild2 files")
        return _read_end2you(Path(source.table), source.columns)
    if not (source.va or source.expr):
        raise ValueError("the TrackSource names no label file")
    if fps is None or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"Aff-Wild2 labels are per video frame: a frame rate is needed, got {fps}")
    va = _read_affwild_va(Path(source.va)) if source.va else np.empty((0, 2), np.float32)
    expr = _read_affwild_expr(Path(source.expr)) if source.expr else []
    n = max(len(va), len(expr))
    valence = np.full(n, np.nan, np.float32)
    arousal = np.full(n, np.nan, np.float32)
    valence[: len(va)], arousal[: len(va)] = va[:, 0], va[:, 1]
    expression: list[str | None] = list(expr) + [None] * (n - len(expr))
    return _frame(np.arange(n, dtype=np.float64) / float(fps), valence, arousal, expression)


def _frame(
    times: np.ndarray, valence: np.ndarray, arousal: np.ndarray, expression: list[str | None]
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time_s": np.asarray(times, dtype=np.float64),
            "valence": np.asarray(valence, dtype=np.float32),
            "arousal": np.asarray(arousal, dtype=np.float32),
            "expression": pd.Series(expression, dtype=object),
        },
        columns=list(TRACK_COLUMNS),
    )


def _text_lines(path: Path) -> list[str]:
    """The file's lines (UTF-8, BOM dropped, trailing blank lines dropped)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ClipError("not_found", f"label file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ClipError("not_found", f"label file {str(path)!r} is a folder") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ClipError(
            "bad_label", f"label file {str(path)!r} is not UTF-8 text (byte {exc.start})"
        ) from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ClipError("bad_label", f"label file {str(path)!r} is empty: a header line is needed")
    return lines


def _data_lines(path: Path, lines: list[str]) -> Iterator[tuple[int, str]]:
    """(line number, text) of the lines after the header; a blank one is an error (the
    lines are frames, so a gap would shift every later label)."""
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            raise ClipError("bad_label", f"{path.name} line {number} is blank")
        yield number, line


def _number(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ClipError(
            "bad_label", f"{what} {text.strip()!r} on {where} is not a number"
        ) from None
    return value


def _va_value(text: str, what: str, where: str) -> float:
    """A VA value in [-1, 1], NaN for the unannotated mark -5 (and for an empty End2You cell
    or ``nan``); ClipError otherwise."""
    if not text.strip() or text.strip().lower() == "nan":
        return math.nan
    value = _number(text, what, where)
    if value == VA_UNANNOTATED:
        return math.nan
    if not -1.0 <= value <= 1.0:
        raise ClipError(
            "bad_label",
            f"{what} {text.strip()!r} on {where} is outside [-1, 1] (-5 marks an unannotated "
            "frame)",
        )
    return value


def _header(line: str) -> list[str]:
    return [cell.strip().lower() for cell in line.split(",")]


def _read_affwild_va(path: Path) -> np.ndarray:
    """(frames, 2) float32 valence, arousal of an Aff-Wild2 VA file; NaN where unannotated."""
    lines = _text_lines(path)
    header = _header(lines[0])
    if sorted(header) != ["arousal", "valence"]:
        raise ClipError(
            "bad_label",
            f"{path.name} line 1 is {lines[0].strip()!r}: an Aff-Wild2 VA file starts with the "
            "header 'valence,arousal'",
        )
    v_col, a_col = header.index("valence"), header.index("arousal")
    out = np.empty((len(lines) - 1, 2), np.float32)
    for i, (number, line) in enumerate(_data_lines(path, lines)):
        cells = line.split(",")
        where = f"{path.name} line {number}"
        if len(cells) != 2:
            raise ClipError(
                "bad_label", f"{where} has {len(cells)} values; 'valence,arousal' needs 2"
            )
        out[i, 0] = _va_value(cells[v_col], "valence", where)
        out[i, 1] = _va_value(cells[a_col], "arousal", where)
    return out


def _read_affwild_expr(path: Path) -> list[str | None]:
    """The class name per frame of an Aff-Wild2 expression file; None where unannotated."""
    lines = _text_lines(path)
    names = _header(lines[0])
    unknown = [name for name in names if name not in EXPRESSION_NAMES]
    if unknown or len(set(names)) != len(names):
        raise ClipError(
            "bad_label",
            f"{path.name} line 1 is {lines[0].strip()!r}: an Aff-Wild2 expression file starts "
            "with the class names, 'Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other'",
        )
    classes = [EXPRESSION_NAMES[name] for name in names]
    out: list[str | None] = []
    for number, line in _data_lines(path, lines):
        text = line.strip()
        try:
            code = int(text)
        except ValueError:
            code = len(classes)  # reported below
        if code == EXPR_UNANNOTATED:
            out.append(None)
        elif 0 <= code < len(classes):
            out.append(classes[code])
        else:
            raise ClipError(
                "bad_label",
                f"expression {text!r} on {path.name} line {number} is not a class index "
                f"(0 to {len(classes) - 1}, or -1 for an unannotated frame)",
            )
    return out


def _delimiter(header: str) -> str:
    if "," in header:
        return ","
    return ";" if ";" in header else "\t" if "\t" in header else ","


def _table_targets(
    path: Path, header: list[str], columns: tuple[tuple[str, str], ...]
) -> dict[str, int]:
    """target -> column index of the End2You file (by ``columns``, else by name)."""
    if columns:
        wanted = dict((target, column) for column, target in columns)
        bad = sorted(set(wanted) - set(TARGETS))
        if bad:
            raise ValueError(f"track columns map to {bad}; targets are {', '.join(TARGETS)}")
    else:
        lowered = {name.lower(): name for name in header[1:]}
        wanted = {target: lowered[target] for target in TARGETS if target in lowered}
    missing = [column for column in wanted.values() if column not in header[1:]]
    if missing or not wanted:
        present = ", ".join(map(repr, header[1:])) or "(none)"
        needed = ", ".join(map(repr, missing)) if missing else "valence, arousal or expression"
        raise ClipError(
            "bad_label",
            f"{path.name} line 1: no label column {needed} (the label columns present are "
            f"{present}; dataset.track_columns names them)",
        )
    return {target: header.index(column) for target, column in wanted.items()}


def _read_end2you(path: Path, columns: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    """An End2You label file: ``time,<label>,...`` with a header row, time in seconds."""
    lines = _text_lines(path)
    delimiter = _delimiter(lines[0])
    header = [cell.strip() for cell in lines[0].split(delimiter)]
    try:
        [float(cell) for cell in header]
    except ValueError:
        pass
    else:
        raise ClipError(
            "bad_label",
            f"{path.name} line 1 holds numbers, not a header: an End2You label file starts "
            "with 'time,<label>,...'",
        )
    if len(header) < 2:
        raise ClipError(
            "bad_label", f"{path.name} line 1 names no label column: 'time,<label>,...' is needed"
        )
    targets = _table_targets(path, header, columns)
    n = len(lines) - 1
    times = np.empty(n, np.float64)
    values = {t: np.full(n, np.nan, np.float32) for t in ("valence", "arousal")}
    expression: list[str | None] = [None] * n
    previous = -math.inf
    for i, (number, line) in enumerate(_data_lines(path, lines)):
        cells = line.split(delimiter)
        where = f"{path.name} line {number}"
        if len(cells) != len(header):
            raise ClipError(
                "bad_label", f"{where} has {len(cells)} values; the header has {len(header)}"
            )
        time = _number(cells[0], "time", where)
        if not math.isfinite(time) or time < 0 or time <= previous:
            raise ClipError(
                "bad_label",
                f"time {cells[0].strip()!r} on {where} is not a finite number of seconds above "
                "the previous row's",
            )
        times[i] = previous = time
        for target, index in targets.items():
            if target == "expression":
                text = cells[index].strip()
                expression[i] = None if text in ("", "-1") else text
            else:
                values[target][i] = _va_value(cells[index], target, where)
    return _frame(times, values["valence"], values["arousal"], expression)
