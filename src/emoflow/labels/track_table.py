"""``tracks.parquet``: every time-continuous clip's label track, one row per labelled frame or
time step (``clip_id``, ``time_s``, ``valence``, ``arousal``, ``expression``), sorted by clip and
time. The scan writes it (only when its content changes); training and scoring read the tracks
of the clips they need."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TRACKS_FILE = "tracks.parquet"
TRACK_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("time_s", pa.float64()),
        ("valence", pa.float32()),
        ("arousal", pa.float32()),
        ("expression", pa.string()),
    ]
)


def tracks_table(tracks: dict[str, pd.DataFrame]) -> pa.Table:
    """One table of the given tracks (each with the columns of
    :data:`emoflow.labels.tracks.TRACK_COLUMNS`), sorted by clip id then time."""
    parts = []
    for clip_id in sorted(tracks):
        t = tracks[clip_id].sort_values("time_s", kind="stable")
        parts.append(
            pa.table(
                {
                    "clip_id": pa.array([clip_id] * len(t), pa.string()),
                    "time_s": pa.array(t["time_s"].to_numpy(np.float64)),
                    "valence": pa.array(t["valence"].to_numpy(np.float32)),
                    "arousal": pa.array(t["arousal"].to_numpy(np.float32)),
                    "expression": pa.array(
                        [e if isinstance(e, str) else None for e in t["expression"]], pa.string()
                    ),
                },
                schema=TRACK_SCHEMA,
            )
        )
    return pa.concat_tables(parts) if parts else TRACK_SCHEMA.empty_table()


def read_tracks(path: Path, clip_ids: Iterable[str] | None = None) -> dict[str, pd.DataFrame]:
    """The tracks in ``tracks.parquet`` (of ``clip_ids`` only, when given) by clip id; an
    absent file holds none."""
    path = Path(path)
    if not path.exists():
        return {}
    table = pq.read_table(path)
    if clip_ids is not None:
        table = table.filter(
            pc.is_in(table["clip_id"], pa.array(sorted(set(clip_ids)), pa.string()))
        )
    frame = table.to_pandas()
    return {
        str(c): part.drop(columns="clip_id").reset_index(drop=True)
        for c, part in frame.groupby("clip_id", sort=True)
    }


def track_clip_ids(path: Path) -> list[str]:
    """The sorted ids of the clips that have a track in ``tracks.parquet`` (none if absent)."""
    path = Path(path)
    if not path.exists():
        return []
    ids = pq.read_table(path, columns=["clip_id"])["clip_id"]
    return sorted(set(ids.to_pylist()))


def track_classes(path: Path) -> list[str]:
    """The sorted expression names in ``tracks.parquet`` (the class list of a time-continuous
    run without ``dataset.labels``); none when absent."""
    path = Path(path)
    if not path.exists():
        return []
    names = pq.read_table(path, columns=["expression"])["expression"].drop_null()
    return sorted(set(names.to_pylist()))
