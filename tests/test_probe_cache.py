"""ffprobe once per clip for all the stages: the probe cache."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from emoflow.config import validate_config
from emoflow.datasets.manifest import refresh
from emoflow.errors import ClipError
from emoflow.extraction.shard_job import run_shard
from emoflow.media.ffmpeg import probe
from emoflow.media.probe_cache import ProbeCache
from emoflow.paths import Layout
from emoflow.storage.shards import open_shards
from tests.mediagen import face_png, make_clip


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def logging_ffprobe(folder: Path) -> tuple[Path, Path]:
    """A wrapper of the real ffprobe that appends its arguments to a log (a name with a space)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "calls.log"
    wrapper = folder / "ffprobe logged"
    real = shutil.which("ffprobe")
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, log


def probes_of(log: Path) -> list[str]:
    """The logged calls that probed a file (not ``-version``)."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if "-version" not in line]


def test_a_clip_is_probed_once_and_read_back_equal(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "a clip $(x).mp4", 1.0, image=face_png(tmp_path / "f.png"))
    wrapper, log = logging_ffprobe(tmp_path / "bin")
    cache = ProbeCache(tmp_path / "cache", {"ffprobe": str(wrapper)})
    first = cache.info(clip, _sha(clip))
    assert first == probe(clip) and len(probes_of(log)) == 1
    again = ProbeCache(tmp_path / "cache", {"ffprobe": str(wrapper)})
    assert again.info(clip, _sha(clip)) == first and len(probes_of(log)) == 1  # read, not probed
    entries = list((tmp_path / "cache" / "probe").rglob("*.json"))
    assert [p.name for p in entries] == [f"{_sha(clip)}.json"]

    entries[0].write_text("{not json")  # an unreadable entry is probed again and rewritten
    assert again.info(clip, _sha(clip)) == first and len(probes_of(log)) == 2
    assert json.loads(entries[0].read_text())["duration_s"] == first.duration_s


def test_a_failed_probe_is_not_cached(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    cache = ProbeCache(tmp_path / "cache")
    with pytest.raises(ClipError) as exc:
        cache.info(bad, _sha(bad))
    assert exc.value.kind == "unreadable"
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_the_face_stage_reads_the_audio_stages_probes(tmp_path: Path) -> None:
    face = face_png(tmp_path / ".face.png")
    root = tmp_path / "corpus"
    root.mkdir()
    make_clip(root / "01-01-03-01-01-01-01.mp4", 2.0, image=face)
    make_clip(root / "01-01-04-01-01-01-02.mp4", 2.0, image=face, tone_hz=150)
    (root / "01-01-05-01-01-01-03.mp4").write_bytes(b"\x00" * 1000)  # corrupt
    wrapper, log = logging_ffprobe(tmp_path / "bin")
    cfg = validate_config({
        "dataset": {"name": "t", "adapter": "ravdess", "root": str(root)},
        "results": str(tmp_path / "results"), "shards": 1,
        "media": {"ffprobe": str(wrapper)},
    })  # fmt: skip
    refresh(cfg)
    audio = run_shard(cfg, "audio", 0, workers=1)
    assert len(probes_of(log)) == 3  # every clip, the corrupt one too
    faces = run_shard(cfg, "faces", 0, workers=2)
    # only the corrupt clip, whose failed probe was not cached, is probed again
    assert len(probes_of(log)) == 4 and probes_of(log)[-1].endswith("01-01-05-01-01-01-03.mp4")
    for summary in (audio, faces):
        assert summary["with_features"] == 2
        assert [(f["clip_id"], f["kind"]) for f in summary["failures"]] == [
            ("01-01-05-01-01-01-03", "unreadable")
        ]
    got = open_shards([Layout.of(cfg).shard("faces", 0)], "faces")
    assert got.get("01-01-03-01-01-01-01").mask.all()
