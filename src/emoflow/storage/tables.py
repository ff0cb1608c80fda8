"""Parquet tables written reproducibly, and the schemas of the tables stages hand each other.

- the failures table (``scan_failures.parquet``, ``failures.parquet``): :data:`FAILURE_SCHEMA`;
- a branch's clip-level predictions (``predictions.parquet``, written by training, read by
  fusion and evaluation) and the fused predictions (``fusion/fold*/seed*.parquet``): both are
  :func:`prediction_schema`, the truth and output columns they share in one place, with the
  key and extra columns of each. Schema metadata :data:`META_KEY` holds JSON about the run.
"""

from __future__ import annotations

import io
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from emoflow.storage.atomic import write_bytes, write_bytes_if_changed

META_KEY = b"emoflow"

FAILURE_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("stage", pa.string()),
        ("kind", pa.string()),
        ("message", pa.string()),
    ]
)

TRUTH_FIELDS = [("y", pa.int32()), ("valence_true", pa.float32()), ("arousal_true", pa.float32())]
"""What a clip's targets are: class index (-1 unknown), valence and arousal (NaN unknown)."""
OUTPUT_FIELDS = [("prob", pa.list_(pa.float32())), ("valence", pa.float32()),
                 ("arousal", pa.float32())]  # fmt: skip
"""What a model says of a clip: class probabilities (empty without a categorical head),
valence and arousal (NaN without a dimensional head)."""


def prediction_schema(
    keys: list[tuple[str, pa.DataType]], extra: list[tuple[str, pa.DataType]]
) -> pa.Schema:
    """``clip_id``, ``keys``, the truth and output columns, then ``extra``."""
    return pa.schema([("clip_id", pa.string()), *keys, *TRUTH_FIELDS, *OUTPUT_FIELDS, *extra])


PREDICTION_SCHEMA = prediction_schema(
    [("part", pa.string())], [("embedding", pa.list_(pa.float32()))]
)
"""A branch's ``predictions.parquet``: one row per (part, clip), with the clip's embedding."""
FUSED_SCHEMA = prediction_schema(
    [("method", pa.string())], [("source", pa.string()), ("part", pa.string())]
)
"""The fused predictions: one row per (method, clip), with the branches it came from."""


def table_bytes(table: pa.Table) -> bytes:
    """Serialise a table to Parquet bytes, reproducibly (same rows -> same bytes)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", write_statistics=False)
    return buf.getvalue()


def parquet_bytes(rows: list[dict[str, Any]], schema: pa.Schema) -> bytes:
    """Serialise rows to Parquet bytes, reproducibly (same rows -> same bytes)."""
    return table_bytes(pa.Table.from_pylist(rows, schema=schema))


def write_parquet_if_changed(
    path: str | os.PathLike[str], rows: list[dict[str, Any]], schema: pa.Schema
) -> bool:
    """Write rows as Parquet only when the bytes differ from the file's; return whether written."""
    return write_bytes_if_changed(path, parquet_bytes(rows, schema))


def write_table(
    path: str | os.PathLike[str], table: pa.Table, compression: str = "snappy",
    statistics: bool = True,
) -> None:  # fmt: skip
    """Write ``table`` atomically with fixed writer options (same bytes for the same table)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=compression, write_statistics=statistics)
    write_bytes(path, buf.getvalue())
