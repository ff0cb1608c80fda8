"""The probe's answer per clip, probed once for all the stages.

Every stage needs a clip's streams, duration, frame rate and rotation before it decodes. The
answer depends only on the file's bytes and on the probe, so it is cached by (sha256 of the
clip, the probe's version: PyAV's for the in-process probe, else ffprobe's version line):
``<cache dir>/probe/<version hash>/<sha[:2]>/<sha>.json``, written atomically. The first stage
to meet a clip probes it; the others read the file. With ``media.ffprobe: ffprobe`` this saves
a call of about 0.1 s per clip and stage, nearly all of it the dynamic loader linking Debian's
ffmpeg libraries (measured in bench/faces.py and by ``perf``); the in-process probe (the
default) costs about 5 ms. A failed probe is never cached (the stage records the failure; the
next run tries again).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from emoflow.config import stable_hash
from emoflow.media.ffmpeg import MEDIA_DEFAULTS, MediaInfo, probe, probe_version
from emoflow.storage.atomic import write_text

FORMAT_VERSION = 1
"""Version of the entries' layout (part of the folder name: a change never reads old ones)."""


class ProbeCache:
    """Probe results by clip content under one ffprobe (``media`` is the config's section)."""

    def __init__(self, root: str | Path, media: dict[str, Any] | None = None) -> None:
        self.media = {**MEDIA_DEFAULTS, **(media or {})}
        version = probe_version(self.media["ffprobe"])  # once per process (forks inherit it)
        key = stable_hash({"ffprobe": version, "format": FORMAT_VERSION})
        self.dir = Path(root) / "probe" / key

    def _path(self, sha256: str) -> Path:
        return self.dir / sha256[:2] / f"{sha256}.json"

    def info(self, path: str | Path, sha256: str) -> MediaInfo:
        """The clip's :class:`~emoflow.media.ffmpeg.MediaInfo`: cached, else probed and cached.

        Raises what :func:`emoflow.media.ffmpeg.probe` raises for a file it cannot read."""
        entry = self._path(sha256)
        try:
            return MediaInfo(**json.loads(entry.read_text("utf-8")))
        except (OSError, ValueError, TypeError):
            pass  # absent or unreadable: probe
        info = probe(path, self.media["ffprobe"], self.media["timeout_s"])
        write_text(entry, json.dumps(dataclasses.asdict(info), sort_keys=True))
        return info
