"""The eGeMAPS stage: openSMILE functionals on the audio stage's windows, in shards like the
others, and the egemaps branch through the shard job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import opensmile
import pytest

from emoflow.config import validate_config
from emoflow.datasets.manifest import refresh
from emoflow.extraction.shard_job import run_shard
from emoflow.extraction.specs import stage_spec
from emoflow.features.egemaps import feature_names, functionals
from emoflow.features.featurize import audio_features, egemaps_features
from emoflow.paths import Layout
from emoflow.storage.shard_write import write_shard
from emoflow.storage.shards import ShardReader, VectorClipFeatures, open_shards
from tests.mediagen import face_png, make_clip, talking_face_clip

CFG = validate_config({"dataset": {"name": "x", "adapter": "ravdess", "root": "."}})


def voiced(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced, pitch-gliding signal with syllable-rate loudness changes (16 kHz)."""
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    noise = np.random.default_rng(seed).normal(0, 0.01, len(t))
    return (0.3 * env * (np.sin(phase) + 0.5 * np.sin(2 * phase)) + noise).astype(np.float32)


def test_functionals_are_opensmiles_per_window() -> None:
    spec = stage_spec(CFG, "egemaps")
    assert spec["n_features"] == 88 and spec["feature_set"] == "eGeMAPSv02"
    assert spec["opensmile_version"] == opensmile.__version__ and "research" in spec["licence"]
    x = voiced(4.5)
    windows = np.stack([x[:48000], x[24000:72000]])
    got = functionals(windows, spec)
    assert got.shape == (2, 88) and got.dtype == np.float32 and np.isfinite(got).all()
    smile = opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02, opensmile.FeatureLevel.Functionals)
    direct = smile.process_signal(windows[1], 16000)
    np.testing.assert_allclose(got[1], direct.to_numpy()[0], rtol=1e-6)
    names = feature_names("eGeMAPSv02")
    assert names == list(direct.columns)
    f0 = got[0, names.index("F0semitoneFrom27.5Hz_sma3nz_amean")]
    assert 26 < f0 < 30  # 100-180 Hz around 140 Hz: 22-33 semitones above 27.5 Hz, 28 at 140
    # a window's functionals do not depend on the windows computed with it
    np.testing.assert_array_equal(functionals(windows[1:], spec)[0], got[1])


def test_egemaps_windows_are_the_audio_windows(tmp_path: Path) -> None:
    clip = talking_face_clip(tmp_path / "talk.mp4", face_png(tmp_path / "f.png"), 4.0)
    audio = audio_features(clip, stage_spec(CFG, "audio"))
    ege = egemaps_features(clip, stage_spec(CFG, "egemaps"))
    assert ege.window_start_s.tolist() == audio.window_start_s.tolist() == [0.0, 1.5]
    assert ege.vectors.shape == (2, 88) and ege.duration_s == pytest.approx(audio.duration_s)


def test_shard_round_trip_and_empty_shard(tmp_path: Path) -> None:
    spec = {"feature_set": "eGeMAPSv02"}
    rec = VectorClipFeatures("a", np.arange(2 * 88, dtype=np.float32).reshape(2, 88),
                              np.array([0.0, 1.5]), 3.2, False)  # fmt: skip
    write_shard(tmp_path / "s.h5", "egemaps", spec, {}, [rec])
    with ShardReader(tmp_path / "s.h5") as r:
        got = r.get("a")
        assert r.kind == "egemaps" and isinstance(got, VectorClipFeatures)
        np.testing.assert_array_equal(got.vectors, rec.vectors)
        assert got.window_start_s.tolist() == [0.0, 1.5] and got.duration_s == 3.2
    write_shard(tmp_path / "e.h5", "egemaps", spec, {}, [])
    with ShardReader(tmp_path / "e.h5") as r:
        assert len(r) == 0


def test_shard_job_and_parameter_change(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    face = face_png(root / ".face.png")
    make_clip(root / "01-01-03-01-01-01-01.mp4", 3.5, image=face, tone_hz=300)
    make_clip(root / "03-01-03-01-01-01-02.wav", 2.0, video=False, audio_codec="pcm_s16le")
    make_clip(root / "01-01-04-01-01-01-03.mp4", 2.0, image=face, volume=3e-5)  # silent track
    raw = {"dataset": {"name": "t", "adapter": "ravdess", "root": str(root)},
           "results": str(tmp_path / "results"), "shards": 1}  # fmt: skip
    cfg = validate_config(raw)
    refresh(cfg)
    out = run_shard(cfg, "egemaps", 0, workers=1)
    assert out["with_features"] == 2 and len(out["computed"]) == 3
    assert [(f["clip_id"], f["kind"]) for f in out["failures"]] == [
        ("01-01-04-01-01-01-03", "silent_audio")
    ]
    shards = open_shards([Layout.of(cfg).shard("egemaps", 0)], "egemaps")
    assert shards.get("01-01-03-01-01-01-01").vectors.shape == (2, 88)
    assert run_shard(cfg, "egemaps", 0)["computed"] == []  # all from the cache
    cfg2 = validate_config({**raw, "egemaps": {"feature_set": "GeMAPSv01b"}})
    again = run_shard(cfg2, "egemaps", 0, workers=1)
    assert len(again["computed"]) == 3
    shards = open_shards([Layout.of(cfg2).shard("egemaps", 0)], "egemaps")
    assert shards.get("01-01-03-01-01-01-01").vectors.shape == (2, 62)
