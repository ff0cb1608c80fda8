"""Incremental reprocessing, proven on the real workflow (extraction target `features`).

Each scenario counts recomputed clips from the summaries the stages write: the stage's compute
job (``computed/<stage>.json``) and its shard jobs (``<stage>/<k>.json``, which compute a clip
only when the compute job left it out).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_store import stored_chunks
from tests.workflow import REPO, env, mtimes, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool(demo32: Path) -> Path:
    """The session's demo clips; scenarios copy the first 12 (actors 1-3) as they need."""
    return demo32


def clips_of(pool: Path) -> list[Path]:
    return sorted(pool.rglob("*.mp4"))[:12]


def setup_run(tmp_path: Path, pool: Path, n: int, **overrides: object) -> tuple[Path, Path, Path]:
    data, results = tmp_path / "data", tmp_path / "results"
    for clip in clips_of(pool)[:n]:
        dest = data / clip.relative_to(pool)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(clip, dest)
    cfg = write_config(
        tmp_path / "cfg.yaml", data, results, cache={"dir": str(tmp_path / "cache")}, **overrides
    )
    return cfg, data, results / "t"


def computed(out: Path, stage: str) -> list[str]:
    """Clips computed (not from cache) by the last compute job and shard jobs of a stage."""
    ids: list[str] = list(compute_summary(out, stage)["computed"])
    for summary in sorted((out / stage).glob("*.json")):
        ids += json.loads(summary.read_text())["computed"]
    return sorted(ids)


def compute_summary(out: Path, stage: str) -> dict:
    """The summary of the stage's last compute job."""
    return json.loads((out / "computed" / f"{stage}.json").read_text())


def test_nothing_changed_and_touch(tmp_path: Path, pool: Path) -> None:
    cfg, data, out = setup_run(tmp_path, pool, 6)
    snakemake(cfg, "features")
    assert len(computed(out, "audio")) == 6 and len(computed(out, "faces")) == 6
    assert planned_jobs(cfg, "features") == {}  # scenario 1: nothing to do
    before = mtimes(out)
    snakemake(cfg, "features")
    assert mtimes(out) == before  # a real rerun touches no output
    # scenario 6: touched without changing bytes -> nothing recomputed
    clip = sorted(data.rglob("*.mp4"))[0]
    os.utime(clip, ns=(time.time_ns(), time.time_ns()))
    assert planned_jobs(cfg, "features") == {}
    snakemake(cfg, "features")
    assert mtimes(out) == before


def test_new_changed_and_deleted_clips(tmp_path: Path, pool: Path) -> None:
    cfg, data, out = setup_run(tmp_path, pool, 8)
    snakemake(cfg, "features")
    manifest = pd.read_parquet(out / "manifest.parquet")
    before = mtimes(out)
    chunks_before = {p: stored_chunks(p) for p in sorted(out.glob("*/[0-9]*.h5"))}

    # scenario 2: N new clips -> exactly N extracted, only their shards rebuilt
    new = clips_of(pool)[8:11]
    for clip in new:
        dest = data / clip.relative_to(pool)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(clip, dest)
    plan = planned_jobs(cfg)
    assert plan.get("train", 0) > 0 and plan.get("evaluate") == 1  # models depend on the data
    snakemake(cfg, "features")
    new_ids = sorted(str(c.relative_to(pool).with_suffix("")) for c in new)
    manifest2 = pd.read_parquet(out / "manifest.parquet")
    touched = set(manifest2[manifest2.clip_id.isin(new_ids)].shard)
    for stage in ("audio", "faces"):
        rebuilt = {int(p.stem) for p in (out / stage).glob("*.h5")
                   if mtimes(out)[f"{stage}/{p.name}"] != before[f"{stage}/{p.name}"]}  # fmt: skip
        assert rebuilt == touched
        # one compute job computed exactly the new clips, encoding each once into its cache
        # entry; the shard jobs computed nothing
        job = compute_summary(out, stage)
        assert job["computed"] == new_ids and computed(out, stage) == new_ids
        shas = manifest2.set_index("clip_id").sha256[new_ids]
        entries = [next((tmp_path / "cache" / stage).rglob(f"{sha}.h5")) for sha in shas]
        assert job["encoded_bytes"] == sum(e.stat().st_size for e in entries) > 0
        # a rebuilt shard holds every untouched clip's stored chunks unchanged, byte for byte,
        # and encodes nothing
        for k in rebuilt:
            path = out / stage / f"{k}.h5"
            summary = json.loads(path.with_suffix(".json").read_text())
            old, now = chunks_before[path], stored_chunks(path)
            assert old and all(now[c] == old[c] for c in old)
            assert set(now) - set(old) == set(manifest2[manifest2.shard == k].clip_id) & set(
                new_ids
            )
            assert summary["encoded_bytes"] == 0 and summary["copied_bytes"] > 0

    # scenario 3: one clip's bytes change under the same name -> only it is re-extracted
    victim = manifest.clip_id.iloc[0]
    path = Path(manifest.path.iloc[0])
    shutil.copy2(clips_of(pool)[11], path)
    snakemake(cfg, "features")
    for stage in ("audio", "faces"):
        assert computed(out, stage) == [victim]

    # scenario 4: a deleted clip leaves the clip table, its shard and the failures table
    path.unlink()
    snakemake(cfg, "features")
    manifest3 = pd.read_parquet(out / "manifest.parquet")
    assert victim not in set(manifest3.clip_id)
    from emoflow.storage.shards import open_shards

    for stage in ("audio", "faces"):
        assert victim not in open_shards(sorted((out / stage).glob("*.h5")), stage)
    assert victim not in set(pd.read_parquet(out / "failures.parquet").clip_id)


def test_parameter_changes_redo_only_their_stage(tmp_path: Path, pool: Path) -> None:
    cfg, data, out = setup_run(tmp_path, pool, 5)
    snakemake(cfg, "features")
    faces_before = {k: v for k, v in mtimes(out).items() if k.startswith("faces/")}
    # scenario 5: an audio parameter -> all audio recomputed, faces untouched
    cfg = write_config(cfg, data, out.parent, cache={"dir": str(tmp_path / "cache")},
                       audio={"n_mels": 64})  # fmt: skip
    stage_jobs = {"compute_audio", "extract_audio", "failures", "features"}
    assert set(planned_jobs(cfg, "features")) <= stage_jobs
    snakemake(cfg, "features")
    assert len(computed(out, "audio")) == 5
    assert {k: v for k, v in mtimes(out).items() if k.startswith("faces/")} == faces_before
    # and vice versa: a face parameter -> faces recomputed, audio untouched
    audio_before = {k: v for k, v in mtimes(out).items() if k.startswith("audio/")}
    cfg = write_config(cfg, data, out.parent, cache={"dir": str(tmp_path / "cache")},
                       audio={"n_mels": 64}, faces={"frames": 8})  # fmt: skip
    snakemake(cfg, "features")
    assert len(computed(out, "faces")) == 5
    assert {k: v for k, v in mtimes(out).items() if k.startswith("audio/")} == audio_before


def shard_digest(out: Path) -> dict[str, str]:
    """sha256 of every dataset's content in every shard (HDF5 file bytes aside)."""
    import hashlib

    import h5py

    digests = {}
    for path in sorted(out.glob("*/[0-9]*.h5")):
        with h5py.File(path) as h5:
            for name in sorted(h5):
                data = h5[name][()]
                blob = repr(data.tolist()).encode() if data.dtype == object else data.tobytes()
                digests[f"{path.relative_to(out)}:{name}"] = hashlib.sha256(blob).hexdigest()
    return digests


def cache_entries(tmp: Path, stage: str) -> list[Path]:
    """The per-clip cache's result entries of a stage (temp files of a write aside)."""
    return [p for p in (tmp / "cache" / stage).rglob("*.h5") if not p.name.startswith(".tmp-")]


KILL_POINTS = {
    "audio extraction": lambda tmp, out: len(cache_entries(tmp, "audio")) >= 2,
    "face extraction": lambda tmp, out: len(cache_entries(tmp, "faces")) >= 3,
    "between shard jobs": lambda tmp, out: any(out.glob("*/[0-9]*.h5")),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, pool: Path) -> Path:
    tmp = tmp_path_factory.mktemp("reference")
    cfg, _, out = setup_run(tmp, pool, 8, shards=2)
    snakemake(cfg, "features")
    return out


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_killed_run_resumes_to_the_same_outputs(
    tmp_path: Path, pool: Path, reference: Path, point: str
) -> None:
    # scenario 7 (and issue 7's crash safety): kill -9 the whole run, then rerun
    cfg, data, out = setup_run(tmp_path, pool, 8, shards=2)
    cmd = [str(Path(env()["PATH"].split(os.pathsep)[0]) / "snakemake"), "--configfile", str(cfg),
           "--cores", "1", "features"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and not KILL_POINTS[point](tmp_path, out):
        assert proc.poll() is None, "the run ended before the kill point"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    cached_before = {stage: {p.stem for p in cache_entries(tmp_path, stage)}
                     for stage in ("audio", "faces")}  # fmt: skip
    assert sum(map(len, cached_before.values())) >= 2
    assert not (out / "failures.parquet").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-") and p.suffix != ".h5"]
    done_before = {p: p.stat().st_mtime_ns for p in out.glob("*/*.json")}
    snakemake(cfg, "--unlock")  # Snakemake's own step after a kill -9: its lock stayed behind
    snakemake(cfg, "features", "--rerun-incomplete")
    manifest = pd.read_parquet(out / "manifest.parquet").set_index("clip_id")
    for stage in ("audio", "faces"):
        summaries = [out / "computed" / f"{stage}.json", *sorted((out / stage).glob("*.json"))]
        for summary in summaries:
            if done_before.get(summary) == summary.stat().st_mtime_ns:
                continue  # a job finished before the kill was not redone
            ids = json.loads(summary.read_text())["computed"]
            recomputed = {manifest.loc[c, "sha256"] for c in ids}
            assert not recomputed & cached_before[stage]  # nothing computed twice
    assert shard_digest(out) == shard_digest(reference)
    ref_failures = (reference / "failures.parquet").read_bytes()
    assert (out / "failures.parquet").read_bytes() == ref_failures
    assert not list(out.rglob(".tmp-*"))  # the interrupted write's temp file was cleaned up
