"""Reading labels tables (CSV/TSV) and locating the files they list.

A listed path is relative to the dataset root unless absolute. Its clip id is its
root-relative POSIX path without extension (NFC); a path outside the root keeps a ``../``
id when allowed. Missing files are ``not_found``, paths resolving outside the root are
``outside_root`` (unless allowed).
"""

from __future__ import annotations

import csv
import errno
import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from emoflow.datasets.records import clip_id_of, failure
from emoflow.errors import ClipError, ConfigError, Failure


@dataclass(frozen=True)
class Row:
    """One data row of a labels table: its line number and its cells by column name."""

    line: int
    cells: dict[str, str]

    def get(self, column: str | None) -> str | None:
        """The stripped cell of ``column``; None when the column is absent or the cell empty."""
        if column is None:
            return None
        value = self.cells.get(column)
        if value is None or not value.strip():
            return None
        return value.strip()

    def raw(self, column: str) -> str | None:
        """The cell of ``column`` as written (for paths); None when absent or blank."""
        value = self.cells.get(column)
        if value is None or not value.strip():
            return None
        return value


@dataclass(frozen=True)
class Table:
    """A labels table: its file, its column names (stripped) and its data rows."""

    path: Path
    columns: list[str]
    rows: list[Row]

    def require(self, *names: str) -> None:
        """Raise ConfigError naming the missing columns and the columns present."""
        missing = [name for name in names if name not in self.columns]
        if missing:
            raise ConfigError(
                f"{self.path}: missing column(s) {', '.join(map(repr, missing))}; "
                f"the columns present are {', '.join(map(repr, self.columns)) or '(none)'}"
            )


def table_path(root: Path, labels_csv: str | None, adapter: str) -> Path:
    """``dataset.labels_csv`` resolved against the root; ConfigError when unset or missing."""
    if not labels_csv:
        raise ConfigError(f"dataset.labels_csv is required by the {adapter!r} adapter")
    path = Path(labels_csv).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise ConfigError(f"dataset.labels_csv: file not found: {path}")
    return path


def read_table(path: Path) -> Table:
    """Read a UTF-8 CSV (or a tab-separated ``.tsv``/``.tab``) with a header row."""
    delimiter = "\t" if path.suffix.lower() in {".tsv", ".tab"} else ","
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            lines = list(csv.reader(handle, delimiter=delimiter))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc}") from exc
    except csv.Error as exc:
        raise ConfigError(f"{path} is not a valid CSV file: {exc}") from exc
    if not lines:
        raise ConfigError(f"{path} is empty: a header row is needed")
    columns = [name.strip() for name in lines[0]]
    rows = [
        Row(line=number, cells=dict(zip(columns, cells, strict=False)))
        for number, cells in enumerate(lines[1:], start=2)
        if any(cell.strip() for cell in cells)
    ]
    return Table(path=path, columns=columns, rows=rows)


def parse_number(text: str | None, what: str, where: str) -> float | None:
    """A finite float from a cell, None for an empty cell; ClipError(bad_label) otherwise."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ClipError("bad_label", f"{what} {text!r} on {where} is not a number") from None
    if not math.isfinite(value):
        raise ClipError("bad_label", f"{what} {text!r} on {where} is not a finite number")
    return value


@dataclass(frozen=True)
class Listed:
    """A file named by a labels table: its clip id, the path as written, its resolved path."""

    clip_id: str
    written: str
    path: Path


def locate(root: Path, written: str) -> Listed:
    """Clip id and resolved path of ``written`` (relative to the resolved ``root``)."""
    lexical = os.path.normpath(os.path.join(root, written))
    real = Path(os.path.realpath(lexical))
    if Path(lexical).is_relative_to(root):
        rel = os.path.relpath(lexical, root)
    else:
        rel = os.path.relpath(real, root)
    rel = PurePosixPath(Path(rel)).as_posix()
    return Listed(clip_id=clip_id_of(rel), written=written, path=real)


def check_listed(listed: Listed, root: Path, allow_outside_root: bool) -> Failure | None:
    """not_found, symlink_loop or outside_root for a listed file; None when it is usable."""
    shown = listed.written
    try:
        os.stat(os.path.join(root, listed.written))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return failure(listed.clip_id, "symlink_loop", f"{shown!r} is a symbolic link loop")
    if not allow_outside_root and not listed.path.is_relative_to(root):
        return failure(
            listed.clip_id,
            "outside_root",
            f"{shown!r} resolves to {str(listed.path)!r}, outside the dataset root "
            f"{str(root)!r} (set dataset.allow_outside_root to allow it)",
        )
    if not listed.path.is_file():
        return failure(
            listed.clip_id,
            "not_found",
            f"{shown!r} (listed in the labels table) does not exist or is not a file "
            f"(looked for {str(listed.path)!r})",
        )
    return None
