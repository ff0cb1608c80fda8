"""The scan's part for time-continuous clips: read each clip's label track (probing the video
for its frame rate when the labels are per frame) into ``tracks.parquet``; a clip whose labels
cannot be read is a scan failure, never a silent clip without targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from emoflow.config import Config, cache_dir
from emoflow.datasets.records import ClipRecord, failure
from emoflow.errors import ClipError, Failure
from emoflow.labels.track_table import TRACKS_FILE, tracks_table
from emoflow.labels.tracks import TrackSource, read_track
from emoflow.media.probe_cache import ProbeCache
from emoflow.storage.atomic import write_bytes_if_changed
from emoflow.storage.tables import table_bytes


def read_clip_tracks(
    config: Config,
    sources: dict[str, TrackSource],
    clips: list[ClipRecord],
    digest_of: dict[str, str],
) -> tuple[dict[str, pd.DataFrame], list[Failure]]:
    """The tracks of ``clips`` that have a source (``digest_of``: path -> sha256), and a
    failure for each clip whose labels or video could not be read."""
    probes: ProbeCache | None = None
    tracks: dict[str, pd.DataFrame] = {}
    failures: list[Failure] = []
    for clip in clips:
        source = sources.get(clip.clip_id)
        if source is None or not source.files:  # no labels (a test video): predicted only
            continue
        try:
            fps = None
            if source.needs_fps:
                probes = probes or ProbeCache(cache_dir(config), config["media"])
                fps = probes.info(clip.path, digest_of[clip.path]).fps
                if not fps:
                    raise ClipError("unreadable", "the video has no frame rate, so its "
                                    "per-frame labels cannot be placed in time")  # fmt: skip
            tracks[clip.clip_id] = read_track(source, fps)
        except ClipError as exc:
            failures.append(failure(clip.clip_id, exc.kind, str(exc)))
    return tracks, failures


def write_tracks(out: Path, tracks: dict[str, pd.DataFrame]) -> bool:
    """Write ``<out>/tracks.parquet`` when its content changed (also when the run no longer
    has tracks but the file exists); True when written."""
    path = Path(out) / TRACKS_FILE
    if not tracks and not path.exists():
        return False
    return write_bytes_if_changed(path, table_bytes(tracks_table(tracks)))


def track_sides(sources: dict[str, TrackSource]) -> dict[str, Any]:
    """clip id -> the annotated side (``left``/``right``) of the clips that have one."""
    return {c: s.side for c, s in sources.items() if s.side}
