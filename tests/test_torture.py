"""Every bad input accounted for: the whole workflow on the torture corpus plus good clips (the
session's ``torture_run``, see conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from emoflow.storage.shards import open_shards
from tests.workflow import REPO, planned_jobs, snakemake

pytestmark = pytest.mark.slow


def test_every_clip_accounted_for(torture_run: tuple[Path, Path, dict]) -> None:
    _, out, expect = torture_run
    manifest = pd.read_parquet(out / "manifest.parquet")
    failures = pd.read_parquet(out / "failures.parquet")
    assert (failures.message.str.len() > 10).all()
    for stage in ("audio", "faces"):
        shards = open_shards(sorted((out / stage).glob("*.h5")), stage)
        failed = set(failures[failures.stage == stage].clip_id)
        assert not failed & set(shards.clip_ids)
        assert set(shards.clip_ids) | failed == set(manifest.clip_id)
        assert len(shards) + len(failed) == len(manifest)
    got: dict[str, dict[str, str]] = {}
    for row in failures.itertuples():
        got.setdefault(row.clip_id, {})[row.stage] = row.kind
    torture_ids = {c for c in set(manifest.clip_id) | set(got) if not c.startswith("good/")}
    assert {c: got.get(c, {}) for c in torture_ids} == expect
    assert not [c for c in got if c.startswith("good/")]  # good clips are unaffected


def test_partial_modalities_kept(torture_run: tuple[Path, Path, dict]) -> None:
    _, out, _ = torture_run
    audio = open_shards(sorted((out / "audio").glob("*.h5")), "audio")
    faces = open_shards(sorted((out / "faces").glob("*.h5")), "faces")
    assert "torture/audio_only" in audio and "torture/audio_only" not in faces
    assert "torture/video_only" in faces and "torture/video_only" not in audio
    mask = faces.get("torture/partial_face").mask
    assert 0 < mask.sum() < len(mask)
    assert audio.get("torture/short").padded
    long = audio.get("torture/four_minutes")
    assert len(long.window_start_s) == pytest.approx(159, abs=1)
    long_faces = faces.get("torture/four_minutes")
    # one time grid: the same windows (the audio, decoded a few ms longer, may have one more
    # padded window at the end), 16 face samples per 3 s along the whole clip
    n = len(long_faces.window_start_s)
    assert len(long.window_start_s) - n in (0, 1)
    assert long_faces.window_start_s.tolist() == long.window_start_s[:n].tolist()
    assert len(long_faces.mask) == pytest.approx(1279, abs=2) and long_faces.mask.mean() > 0.99
    fused = pd.read_parquet(sorted((out / "fusion").rglob("*.parquet"))[0])
    assert set(fused.source) >= {"both"}


def test_report_has_failures_section(torture_run: tuple[Path, Path, dict]) -> None:
    _, out, _ = torture_run
    summary = (out / "report" / "summary.md").read_text()
    assert "unreadable" in summary and "no_face" in summary and "duplicate_id" in summary


def test_no_injection_anywhere(torture_run: tuple[Path, Path, dict]) -> None:
    cfg, out, _ = torture_run
    for root in (cfg.parent, REPO, Path.cwd()):
        assert not list(root.rglob("pwned")), root


def test_strict_mode_fails_listing_the_clips(torture_run: tuple[Path, Path, dict]) -> None:
    cfg, out, _ = torture_run
    strict = cfg.with_name("strict.yaml")
    shutil.copy(cfg, strict)
    with open(strict, "a") as fh:
        fh.write("strict: true\n")
    assert planned_jobs(strict, "features").get("failures") == 1  # only the check reruns
    proc = snakemake(strict, "features", check=False)
    assert proc.returncode != 0
    log = (out / "logs" / "failures.log").read_text()
    assert "strict: true" in log and "torture/empty" in log and "unreadable" in log
