"""The failures table: every clip a stage could not process, with a kind and a message."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from emoflow.branches import selected_stages
from emoflow.config import Config
from emoflow.paths import Layout
from emoflow.storage.tables import FAILURE_SCHEMA, write_parquet_if_changed


def collect_failures(config: Config) -> list[dict[str, str]]:
    """Merge scan failures and the selected stages' shard summaries' failures into
    ``failures.parquet``."""
    layout = Layout.of(config)
    rows: list[dict[str, str]] = []
    if layout.scan_failures.exists():
        rows += pq.read_table(layout.scan_failures).to_pylist()
    for stage in selected_stages(config):
        for k in range(config["shards"]):
            summary = json.loads(layout.shard_summary(stage, k).read_text("utf-8"))
            rows += summary["failures"]
    rows.sort(key=lambda r: (r["clip_id"], r["stage"], r["kind"], r["message"]))
    write_parquet_if_changed(layout.failures, rows, FAILURE_SCHEMA)
    return rows
