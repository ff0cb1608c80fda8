"""Rows of a clip's large per-frame or per-window arrays held on disk while the clip is computed.

A 15-minute video gives 180 MB of 112-pixel face crops and 30 MB of log-mel windows. Held in
memory, a job's peak grows with the video; spooled, the featurizer holds one chunk of rows at a
time and whoever consumes the clip (the per-clip cache entry, ``predict``) reads the rows back a
block at a time. The spool is an unnamed temp file (``TMPDIR``; gone when the spool is closed or
collected, and when the process dies). Reads use ``pread``, never a memory map, so rows read
back do not stay in the process's resident memory.
"""

from __future__ import annotations

import copy
import os
import tempfile
from typing import Any

import numpy as np

READ_ROWS = 16  # rows a consumer reads at a time (:func:`row_blocks`): 0.6 MB of crops


class RowSpool:
    """An append-only ``(n, *row_shape)`` array in a temp file, read back like an array.

    Indexing (an int, a slice, an int or bool array, optionally followed by indices into the
    row) returns a new in-memory array; ``np.asarray`` reads every row. :meth:`remap` gives a
    read-only view whose row *i* is this spool's row ``index[i]``, zeros where ``index[i] < 0``.
    """

    def __init__(self, row_shape: tuple[int, ...], dtype: Any) -> None:
        self.row_shape = tuple(int(d) for d in row_shape)
        self.dtype = np.dtype(dtype)
        self._row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self._file: Any = tempfile.TemporaryFile(prefix="emoflow-rows-")
        self._index: np.ndarray | None = None
        self._stored = 0

    @classmethod
    def zeros(cls, n: int, row_shape: tuple[int, ...], dtype: Any) -> RowSpool:
        """``n`` rows of zeros (a sparse file: rows never set take no disk), set by index."""
        spool = cls(row_shape, dtype)
        os.ftruncate(spool._file.fileno(), int(n) * spool._row_bytes)
        spool._stored = int(n)
        return spool

    def __setitem__(self, i: int, row: np.ndarray) -> None:
        """Set row ``i`` (an int in ``0..len-1``) of a spool that is not a remapped view."""
        if self._index is not None:
            raise ValueError("a remapped spool is read-only")
        if not 0 <= int(i) < self._stored:
            raise IndexError(f"row {i} out of range for a spool of {self._stored} rows")
        row = np.ascontiguousarray(row, dtype=self.dtype).reshape(self.row_shape)
        os.pwrite(self._file.fileno(), row.data, int(i) * self._row_bytes)

    def append(self, rows: np.ndarray) -> None:
        """Append rows ``(k, *row_shape)`` (cast to the spool's dtype)."""
        if self._index is not None:
            raise ValueError("a remapped spool is read-only")
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {rows.shape[1:]}, spool rows are {self.row_shape}")
        os.pwrite(self._file.fileno(), rows.data, self._stored * self._row_bytes)
        self._stored += len(rows)

    def __len__(self) -> int:
        return self._stored if self._index is None else len(self._index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    @property
    def nbytes(self) -> int:
        return len(self) * self._row_bytes

    def remap(self, index: np.ndarray) -> RowSpool:
        """Row *i* is this spool's row ``index[i]`` (zeros where ``index[i] < 0``)."""
        index = np.asarray(index, np.int64)
        if self._index is not None:
            index = np.where(index >= 0, self._index[np.maximum(index, 0)], -1)
        elif len(index) and index.max() >= self._stored:
            raise IndexError(f"row index out of range for a spool of {self._stored} rows")
        view = copy.copy(self)
        view._index = index
        return view

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        positions = np.arange(len(self))[key]
        if np.ndim(positions) == 0:
            row = self._rows(np.array([positions], np.int64))[0]
            return row[rest] if rest else row
        rows = self._rows(np.asarray(positions, np.int64))
        return rows[(slice(None), *rest)] if rest else rows

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        rows = self._rows(np.arange(len(self)))
        return rows if dtype is None else rows.astype(dtype)

    def _rows(self, positions: np.ndarray) -> np.ndarray:
        """The rows at ``positions`` (of this view), read run by run."""
        stored = positions if self._index is None else self._index[positions]
        out = np.zeros((len(stored), *self.row_shape), self.dtype)
        valid = np.flatnonzero(stored >= 0)
        # a run: consecutive rows of the output that are consecutive stored rows (one read)
        breaks = np.flatnonzero((np.diff(stored[valid]) != 1) | (np.diff(valid) != 1)) + 1
        for run in np.split(valid, breaks) if len(valid) else []:
            first, count = int(stored[run[0]]), len(run)
            data = os.pread(self._file.fileno(), count * self._row_bytes, first * self._row_bytes)
            if len(data) != count * self._row_bytes:
                raise OSError("the row spool's temp file is shorter than its rows")
            rows = np.frombuffer(data, self.dtype).reshape(count, *self.row_shape)
            out[run[0] : run[0] + count] = rows
        return out

    def close(self) -> None:
        """Remove the temp file (views made by :meth:`remap` share it)."""
        self._file.close()


def row_blocks(rows: Any, block: int = READ_ROWS) -> Any:
    """``(start, block of rows)`` of an array or a :class:`RowSpool`, ``block`` rows at a time."""
    for lo in range(0, len(rows), block):
        yield lo, np.asarray(rows[lo : lo + block])
