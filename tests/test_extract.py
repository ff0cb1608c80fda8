"""Shard jobs on real clips: features, failures, per-clip cache, parameter changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emoflow.config import validate_config
from emoflow.datasets.manifest import read_shard_list, refresh, shard_list_text, shard_of
from emoflow.extraction.shard_job import run_shard
from emoflow.paths import Layout
from emoflow.storage.shards import open_shards
from tests.mediagen import blank_png, face_png, make_clip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    face, blank = face_png(root / ".face.png"), blank_png(root / ".blank.png")
    make_clip(root / "01-01-03-01-01-01-01.mp4", 3.5, image=face, tone_hz=300)
    make_clip(root / "01-01-04-01-01-01-02.mp4", 2.0, image=face, tone_hz=150)
    make_clip(root / "01-01-05-01-01-01-03.mp4", 2.0, image=blank)  # no face
    make_clip(root / "01-01-01-01-01-01-04.mp4", 0.4, image=face)  # shorter than a window
    make_clip(root / "03-01-03-01-01-01-05.wav", 2.0, video=False, audio_codec="pcm_s16le")
    (root / "01-01-03-01-01-01-06.mp4").write_bytes(b"\x00" * 1000)  # corrupt
    return root


def config_for(corpus: Path, tmp_path: Path, **extra: object) -> dict:
    raw = {
        "dataset": {"name": "t", "adapter": "ravdess", "root": str(corpus)},
        "results": str(tmp_path / "results"),
        "shards": 1,
        **extra,
    }
    return validate_config(raw)


def test_features_failures_and_cache(corpus: Path, tmp_path: Path) -> None:
    cfg = config_for(corpus, tmp_path)
    assert refresh(cfg).clips == 6
    audio = run_shard(cfg, "audio", 0, workers=2)
    faces = run_shard(cfg, "faces", 0, workers=1)
    kinds = {(f["clip_id"], f["kind"]) for f in audio["failures"] + faces["failures"]}
    assert kinds == {
        ("01-01-03-01-01-01-06", "unreadable"),  # both stages say so
        ("01-01-05-01-01-01-03", "no_face"),
        ("03-01-03-01-01-01-05", "no_video"),
    } or kinds >= {("01-01-05-01-01-01-03", "no_face"), ("03-01-03-01-01-01-05", "no_video")}
    for summary in (audio, faces):  # every clip accounted for
        assert summary["with_features"] + len(summary["failures"]) == summary["clips"] == 6
        assert len(summary["computed"]) == 6 and summary["cached"] == []

    layout = Layout.of(cfg)
    a = open_shards([layout.shard("audio", 0)], "audio")
    assert "03-01-03-01-01-01-05" in a  # audio-only file keeps its audio
    long = a.get("01-01-03-01-01-01-01")
    assert long.logmel.shape == (2, 90, 94) and long.mfcc.shape == (2, 40, 94)
    assert long.window_start_s.tolist() == [0.0, 1.5] and not long.padded
    short = a.get("01-01-01-01-01-01-04")
    assert short.padded and short.logmel.shape[0] == 1
    f = open_shards([layout.shard("faces", 0)], "faces")
    got = f.get("01-01-03-01-01-01-01")
    # about 3.5 s at 16 frames per 3 s window: 18-19 samples; two windows from frames 0 and 8
    n = len(got.faces)
    assert 18 <= n <= 19 and got.faces.shape[1:] == (112, 112, 3) and got.mask.all()
    assert got.landmarks.shape == (n, 68, 2) and np.all(np.diff(got.frame_time_s) > 0)
    assert got.window_start_s.tolist() == long.window_start_s.tolist() == [0.0, 1.5]
    assert got.window_frame0.tolist() == [0, 8]

    # Rebuilding the shard computes nothing: every clip (failures too) comes from the cache.
    again = run_shard(cfg, "audio", 0, workers=2)
    assert again["computed"] == [] and len(again["cached"]) == 6
    assert again["failures"] == audio["failures"]


def test_audio_parameter_change_recomputes_audio_only(corpus: Path, tmp_path: Path) -> None:
    cfg = config_for(corpus, tmp_path)
    refresh(cfg)
    run_shard(cfg, "audio", 0)
    cfg2 = config_for(corpus, tmp_path, audio={"n_mels": 64})
    out = run_shard(cfg2, "audio", 0)
    assert len(out["computed"]) == 6
    shard = open_shards([Layout.of(cfg2).shard("audio", 0)], "audio")
    assert shard.spec["n_mels"] == 64
    assert shard.get("01-01-03-01-01-01-01").logmel.shape[1] == 64


def test_shard_assignment_is_stable() -> None:
    ids = [f"clip{i}" for i in range(200)]
    a = [shard_of(c, 8) for c in ids]
    assert a == [shard_of(c, 8) for c in ids]
    assert len(set(a)) == 8  # spreads over all shards


def test_shard_list_text_is_the_json_format(tmp_path: Path) -> None:
    # built by hand for speed; byte for byte what json.dumps(indent=0) always wrote
    odd = ["a", 'q"uote', "back\\slash", "new\nline", "\x00\x1f", "é", "e\u0301", "中😀", "\u2028"]
    cases = [
        [],
        [("c", "0" * 64, "/p/c.mp4")],
        [(a, b, c) for a in odd[:3] for b in odd for c in odd],
    ]
    for members in cases:
        text = shard_list_text(members)
        assert text == json.dumps([list(m) for m in members], ensure_ascii=False, indent=0) + "\n"
        (tmp_path / "k.json").write_text(text, "utf-8")
        assert read_shard_list(tmp_path / "k.json") == members


def test_summary_json_is_machine_readable(corpus: Path, tmp_path: Path) -> None:
    cfg = config_for(corpus, tmp_path)
    refresh(cfg)
    run_shard(cfg, "audio", 0)
    summary = json.loads(Layout.of(cfg).shard_summary("audio", 0).read_text())
    assert set(summary) >= {"computed", "cached", "failures", "clips", "with_features"}


def test_unreadable_cache_entry_is_recomputed(corpus: Path, tmp_path: Path) -> None:
    cfg = config_for(corpus, tmp_path)
    refresh(cfg)
    first = run_shard(cfg, "audio", 0, workers=1)
    entries = sorted((tmp_path / "results" / "t" / "cache" / "audio").rglob("*.h5"))
    entries[0].write_bytes(b"not an HDF5 file")
    again = run_shard(cfg, "audio", 0, workers=1)
    assert len(again["computed"]) == 1 and len(again["cached"]) == 5
    assert again["with_features"] == first["with_features"]


def test_training_refuses_shards_made_with_other_parameters(corpus: Path, tmp_path: Path) -> None:
    from emoflow.errors import SpecMismatchError
    from emoflow.stages import run_train

    cfg = config_for(corpus, tmp_path)
    refresh(cfg)
    run_shard(cfg, "audio", 0, workers=1)
    other = config_for(corpus, tmp_path, audio={"n_mels": 64})
    with pytest.raises(SpecMismatchError, match="n_mels: shard has 90, config wants 64"):
        run_train(other, "audio", 0, 0)


def test_internal_error_is_reported_not_cached_and_retried(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from emoflow.extraction import workers as extract

    cfg = config_for(corpus, tmp_path)
    refresh(cfg)
    real = extract.audio_features
    victim = "01-01-04-01-01-01-02"

    def buggy(path: str, *args: object, **kwargs: object) -> object:
        if Path(path).stem == victim:
            raise ZeroDivisionError("a bug in the featurizer")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(extract, "audio_features", buggy)
    first = run_shard(cfg, "audio", 0, workers=1)
    [fail] = [f for f in first["failures"] if f["clip_id"] == victim]
    assert fail["kind"] == "internal_error" and "ZeroDivisionError" in fail["message"]
    assert "Traceback" in caplog.text and "a bug in the featurizer" in caplog.text
    monkeypatch.setattr(extract, "audio_features", real)  # the bug is fixed
    again = run_shard(cfg, "audio", 0, workers=1)
    assert again["computed"] == [victim] and victim not in {f["clip_id"] for f in again["failures"]}


def test_feature_version_is_part_of_the_cache_key(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emoflow.features import featurize as extract

    cfg = config_for(corpus, tmp_path)
    refresh(cfg)
    run_shard(cfg, "audio", 0, workers=1)
    assert len(run_shard(cfg, "audio", 0, workers=1)["cached"]) == 6
    monkeypatch.setitem(extract.FEATURE_VERSION, "audio", extract.FEATURE_VERSION["audio"] + 1)
    bumped = run_shard(cfg, "audio", 0, workers=1)
    assert len(bumped["computed"]) == 6  # the old results are never served
    assert (
        open_shards([Layout.of(cfg).shard("audio", 0)], "audio").spec["feature_version"]
        == (extract.FEATURE_VERSION["audio"])
    )


def test_a_shard_job_with_every_clip_cached_loads_no_feature_code(
    corpus: Path, tmp_path: Path
) -> None:
    """Its fixed cost: neither librosa's features (numba), scipy's alignment nor dlib's models."""
    import subprocess
    import sys

    cfg = config_for(corpus, tmp_path)
    refresh(cfg)
    for stage in ("audio", "faces"):
        run_shard(cfg, stage, 0, workers=1)
    config_json = tmp_path / "config.json"
    config_json.write_text(json.dumps(cfg))
    probe = (
        "import json, sys; from emoflow.extraction.shard_job import run_shard; "
        "from emoflow.faces import embedded; "
        f"s = run_shard(json.load(open({str(config_json)!r})), sys.argv[1], 0, workers=1); "
        "heavy = [m for m in ('numba', 'librosa.feature', 'scipy.ndimage', 'torch') "
        "if m in sys.modules]; "
        "print(json.dumps([len(s['computed']), heavy, len(embedded._LOADED)]))"
    )
    for stage in ("audio", "faces"):
        done = subprocess.run([sys.executable, "-c", probe, stage], capture_output=True,
                              text=True, check=True)  # fmt: skip
        assert json.loads(done.stdout.splitlines()[-1]) == [0, [], 0]


def test_compute_job_fills_the_cache_and_shard_jobs_only_assemble(
    corpus: Path, tmp_path: Path
) -> None:
    import shutil

    from emoflow.extraction.compute import run_compute
    from emoflow.extraction.specs import stage_cache

    cfg = config_for(corpus, tmp_path, shards=2)
    refresh(cfg)
    job = run_compute(cfg, "audio", workers=2)
    assert len(job["computed"]) == 6 and job["clips"] == 6 and job["encoded_bytes"] > 0
    summaries = [run_shard(cfg, "audio", k, workers=1) for k in range(2)]
    assert all(s["computed"] == [] and s["encoded_bytes"] == 0 for s in summaries)
    failed = {f["clip_id"] for s in summaries for f in s["failures"]}
    assert failed == {job["failures"][sha]["clip_id"] for sha in job["failures"]}
    assert sum(s["with_features"] for s in summaries) == 6 - len(failed)
    assert run_compute(cfg, "audio")["computed"] == []  # nothing missing: nothing computed

    # A failure the cache does not keep (a tool timeout) is reported by the shard job, not retried.
    layout = Layout.of(cfg)
    _, cache = stage_cache(cfg, "audio")
    clip_id, sha = "01-01-04-01-01-01-02", None
    for k in range(2):
        for c, s, _ in json.loads(layout.shard_list(k).read_text()):
            sha = s if c == clip_id else sha
    shutil.rmtree(cache.dir)
    data = json.loads(layout.computed("audio").read_text())
    data["failures"] = {sha: {"clip_id": clip_id, "kind": "tool_timeout", "message": "slow"}}
    layout.computed("audio").write_text(json.dumps(data))
    k = shard_of(clip_id, 2)
    summary = run_shard(cfg, "audio", k, workers=1)
    assert {
        "clip_id": clip_id,
        "stage": "audio",
        "kind": "tool_timeout",
        "message": "slow",
    } in summary["failures"]
    assert clip_id not in summary["computed"]  # the others are computed again (cache removed)


def test_openface_batch_gives_every_worker_clips() -> None:
    from emoflow.extraction.workers import task_batch

    cfg = {"faces": {"openface": {"batch": 32}}}
    openface = {"backend": "openface"}
    assert task_batch(cfg, "faces", openface, 10, 4) == 3
    assert task_batch(cfg, "faces", openface, 1000, 4) == 32
    assert task_batch(cfg, "faces", openface, 0, 4) == 1
    assert task_batch(cfg, "faces", {"backend": "embedded"}, 1000, 4) == 1
    assert task_batch(cfg, "audio", {}, 1000, 4) == 1


def test_shards_without_a_compute_summary_are_rebuilt(tmp_path: Path) -> None:
    """Results from before compute jobs (or with computed/ deleted): their shards are removed
    at start so that Snakemake rebuilds them (it would not rerun them behind the checkpoint)."""
    from emoflow.extraction.compute import forget_uncomputed_shards

    cfg = validate_config({"dataset": {"name": "t", "adapter": "ravdess", "root": "."},
                           "results": str(tmp_path), "shards": 2})  # fmt: skip
    layout = Layout.of(cfg)
    for stage in ("audio", "faces"):
        for k in range(2):
            for p in (layout.shard(stage, k), layout.shard_summary(stage, k)):
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text("x")
    layout.computed("audio").parent.mkdir(parents=True)
    layout.computed("audio").write_text("{}")
    assert forget_uncomputed_shards(cfg, ["audio", "faces", "ssl"]) == ["faces"]
    assert layout.shard("audio", 1).exists() and not layout.shard("faces", 0).exists()
    assert not layout.shard_summary("faces", 1).exists()
    assert forget_uncomputed_shards(cfg, ["audio", "faces"]) == []  # nothing left to forget
