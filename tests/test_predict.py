"""``emoflow predict``: a small bundle trained in-process on the demo corpus, then timelines for
a demo clip, a 2-minute video (bounded memory), an audio-only file and a video without audio;
the fusion re-application, the CLI help and a missing face backend."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from emoflow.audio import cut_windows
from emoflow.bundle import load_bundle, save_bundle
from emoflow.errors import EmoflowError, ToolMissingError
from emoflow.fuse import Aligned, fit_apply_stacking, with_fallback
from emoflow.media import decode_audio
from emoflow.predict import (
    FusionPlan,
    chunk_frame_plan,
    decode_frames_at,
    frame_times,
    fuse_outputs,
    fusion_plan,
    run_predict,
    window_segments,
    window_starts,
)

sys.path.insert(0, str(Path(__file__).parent))
from mediagen import face_png, make_clip  # noqa: E402

EMOFLOW = Path(sys.executable).parent / "emoflow"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A bundle trained by the real workflow pieces on 12 demo clips (k = 3 folds, 1 shard)."""
    from emoflow import extract, manifest, stages
    from emoflow.config import validate_config
    from emoflow.demo import make_demo_corpus

    root = tmp_path_factory.mktemp("predict")
    clips = make_demo_corpus(root / "data", clips=12)
    config = validate_config(
        {
            "dataset": {"name": "t", "adapter": "ravdess", "root": str(root / "data")},
            "results": str(root / "results"),
            "shards": 1,
            "folds": {"k": 3},
            "train": {"epochs": 2, "patience": 2, "batch_size": 8, "seeds": [0], "threads": 1},
            "execution": {"workers": 1},
        }
    )
    manifest.refresh(config)
    for stage in ("audio", "faces"):
        extract.run_shard(config, stage, 0, workers=1)
    stages.run_split(config)
    for branch in ("audio", "visual"):
        stages.run_train(config, branch, 0, 0)
    stages.run_fuse(config, 0, 0)
    model = stages.run_bundle(config)
    return {"root": root, "config": config, "clips": clips, "model": model}


@pytest.fixture(scope="module")
def media(trained: dict[str, Any]) -> dict[str, Path]:
    """A 2-minute still-face video with a tone, a .wav and a video without audio."""
    folder = trained["root"] / "media"
    folder.mkdir()
    face = face_png(folder / "face.png")
    return {
        "long": make_clip(folder / "long.mp4", duration=120.0, image=face),
        "wav": make_clip(folder / "tone.wav", duration=5.0, video=False, audio_codec="pcm_s16le"),
        "silent": make_clip(folder / "silent.mp4", duration=6.0, image=face, audio=False),
    }


def read_timeline(out: Path, stem: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{stem}.timeline.csv", keep_default_na=False, na_values=[""])


def read_json(out: Path, stem: str) -> dict[str, Any]:
    return json.loads((out / f"{stem}.json").read_text("utf-8"))


def expected_windows(path: Path, spec: dict[str, Any]) -> int:
    samples = decode_audio(path, spec["sample_rate"])
    win = cut_windows(samples, spec["sample_rate"], spec["window_s"], spec["hop_s"],
                      spec["last_window"])  # fmt: skip
    return len(win.segments)


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize("seconds", [0.5, 3.0, 3.2, 4.4, 4.6, 10.0, 61.7])
@pytest.mark.parametrize("last_window", ["pad", "drop"])
def test_windows_are_the_training_windows(seconds: float, last_window: str) -> None:
    sr, rng = 16000, np.random.default_rng(0)
    samples = rng.standard_normal(int(seconds * sr)).astype(np.float32)
    ref = cut_windows(samples, sr, 3.0, 1.5, last_window)
    starts = window_starts(len(samples), 3 * sr, int(1.5 * sr), last_window)
    np.testing.assert_array_equal(starts / sr, ref.start_s)
    np.testing.assert_array_equal(window_segments(samples, starts, 3 * sr), ref.segments)


def test_frames_are_sampled_within_each_window() -> None:
    times = frame_times(12.0, 15.0, 16)
    assert len(times) == 16 and times.min() > 12.0 and times.max() < 15.0
    np.testing.assert_allclose(np.diff(times), 3.0 / 16)
    assert len(frame_times(5.0, 5.0, 16)) == 0
    spans = [(s, s + 3.0) for s in np.arange(0, 30, 1.5)]
    plan = chunk_frame_plan(spans, 16, 4)
    # every window's frames are there, and overlapping windows share their frames
    assert sum(len(ts) for _, per, _ in plan for ts in per) == 16 * len(spans)
    fresh = np.concatenate([new for _, _, new in plan])
    assert len(fresh) == len(np.unique(np.round(fresh, 6))) == 8 * (len(spans) + 1)


def test_frames_decoded_at_times_are_the_right_frames(tmp_path: Path) -> None:
    from emoflow.media import _decode_frames, probe

    clip = make_clip(tmp_path / "pattern.mp4", duration=4.0, audio=False, fps=25,
                     extra=("-g", "30"))  # fmt: skip
    info = probe(clip)
    _, every = _decode_frames(clip, None, 320, 240, "ffmpeg", 60)
    assert len(every) == 100
    times = np.array([0.01, 1.02, 1.5, 2.13, 3.97])
    frames, got, valid = decode_frames_at(clip, times, info, max_side=640)
    # the first frame at or after each time; none after 3.96 s, the last frame
    assert valid.tolist() == [True, True, True, True, False]
    expected = np.ceil(times[:4] * 25 - 1e-9).astype(int)
    np.testing.assert_allclose(got, expected / 25, atol=1e-6)
    np.testing.assert_array_equal(frames, every[expected])
    frames, got, valid = decode_frames_at(clip, np.array([4.5, 5.0]), info, max_side=640)
    assert len(frames) == len(got) == 0 and not valid.any()  # past the end


def _aligned(rng: np.random.Generator, n: int, c: int) -> Aligned:
    y = rng.integers(0, c, n)
    pa_ = rng.dirichlet(np.ones(c), n)
    pv = rng.dirichlet(np.ones(c), n)
    pa_[np.arange(n), y] += 1.0  # informative branches
    pa_ /= pa_.sum(axis=1, keepdims=True)
    has_v = np.ones(n, bool)
    has_v[:3] = False
    return Aligned(
        clip_id=np.array([f"c{i:03d}" for i in range(n)], dtype=object),
        part=np.array(["val"] * (n // 2) + ["test"] * (n - n // 2), dtype=object),
        y=y,
        va_true=rng.uniform(-1, 1, (n, 2)),
        has={"audio": np.ones(n, bool), "visual": has_v},
        prob={"audio": pa_, "visual": np.where(has_v[:, None], pv, 0.0)},
        va={"audio": rng.uniform(-1, 1, (n, 2)), "visual": rng.uniform(-1, 1, (n, 2))},
        embedding={"audio": np.zeros((n, 0)), "visual": np.zeros((n, 0))},
    )


@pytest.mark.parametrize("n_classes", [2, 4])
def test_stacking_reapplies_the_stored_coefficients(n_classes: int) -> None:
    a = _aligned(np.random.default_rng(n_classes), 60, n_classes)
    fit_rows = (a.part == "val") & a.both
    prob, va, info = fit_apply_stacking(a, fit_rows, "both", n_classes, seed=0)
    ref_p, ref_va = with_fallback(a, prob, va)
    plan = fusion_plan("stacking", {"methods": {"stacking": info}}, ["audio", "visual"])
    assert plan.applied == "stacking" and plan.note is None
    got_p, got_va = fuse_outputs(plan, "both", a.prob, a.va, a.has)
    np.testing.assert_allclose(got_p, ref_p, atol=1e-9)
    np.testing.assert_allclose(got_va, ref_va, atol=1e-9)


def test_late_weight_fallbacks_and_feature_fusion() -> None:
    weights = {"methods": {"late": {"categorical": 0.8, "n_fit": 5}, "feature": {"fitted": True}}}
    pa_ = np.array([[1.0, 0.0], [0.2, 0.8], [0.6, 0.4]])
    pv = np.array([[0.0, 1.0], [0.5, 0.5], [0.0, 0.0]])
    va = {b: np.full((3, 2), np.nan) for b in ("audio", "visual")}
    has = {"audio": np.array([True, False, True]), "visual": np.array([True, True, False])}
    late = fusion_plan("late", weights, ["audio", "visual"])
    p, _ = fuse_outputs(late, "categorical", {"audio": pa_, "visual": pv}, va, has)
    np.testing.assert_allclose(p, [[0.8, 0.2], [0.5, 0.5], [0.6, 0.4]])
    feature = fusion_plan("feature", weights, ["audio", "visual"])
    assert (feature.requested, feature.applied, feature.late) == (
        "feature", "late", {"categorical": 0.8},
    )  # fmt: skip
    assert "not stored" in (feature.note or "")
    assert fusion_plan("feature", {}, ["audio", "visual"]).late == {}
    single = fusion_plan(None, None, ["audio"])
    p, _ = fuse_outputs(single, "categorical", {"audio": pa_}, {"audio": va["audio"]},
                        {"audio": has["audio"]})  # fmt: skip
    np.testing.assert_array_equal(p[[0, 2]], pa_[[0, 2]])
    assert np.isnan(p[1]).all()
    assert FusionPlan("late", "late", {"categorical": 0.25}).describe()["audio_weight"] == {
        "categorical": 0.25
    }


# --------------------------------------------------------------------------- end to end


def test_demo_clip(trained: dict[str, Any], tmp_path: Path) -> None:
    model = trained["model"]
    preds = pd.read_parquet(
        trained["root"] / "results/t/models/audio/fold0/seed0/predictions.parquet"
    )
    row = preds[preds.part == "test"].iloc[0]
    paths = pd.read_parquet(trained["root"] / "results/t/manifest.parquet").set_index("clip_id")
    clip = Path(paths.loc[row.clip_id, "path"])
    docs = run_predict([clip], model, tmp_path, threads=1)
    stem = clip.stem
    doc = read_json(tmp_path, stem)
    assert docs == [doc]
    audio = load_bundle(model / "audio.pt")
    timeline = read_timeline(tmp_path, stem)
    assert len(timeline) == expected_windows(clip, audio["spec"]) == 2
    classes = doc["classes"]
    probs = timeline[[f"p_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert list(timeline.columns) == ["start_s", "end_s", *[f"p_{c}" for c in classes],
                                      "face_fraction", "source"]  # fmt: skip
    assert (timeline.source == "both").all() and (timeline.face_fraction > 0.5).all()
    assert doc["label"] in classes and doc["source"] == "both"
    assert doc["modalities"] == ["audio", "visual"] and doc["missing"] == {}
    assert doc["fusion"]["requested"] == doc["fusion"]["applied"] == "late"
    assert abs(sum(doc["probabilities"].values()) - 1) < 1e-5
    assert doc["n_windows"] == 2 and doc["model"] == str(model)
    # the audio branch sees exactly the training features: its clip score is the training one
    np.testing.assert_allclose(
        [doc["branches"]["audio"]["probabilities"][c] for c in classes], row.prob, atol=2e-5
    )
    shard = json.loads((trained["root"] / "results/t/audio/0.json").read_text())
    assert doc["spec_hashes"]["audio"] == shard["spec_hash"]
    assert (tmp_path / f"{stem}.png").read_bytes()[:8] == PNG_MAGIC
    # deterministic content
    first = (
        (tmp_path / f"{stem}.json").read_bytes(),
        (tmp_path / f"{stem}.timeline.csv").read_bytes(),
    )
    run_predict([clip], model, tmp_path, threads=1)
    assert first == (
        (tmp_path / f"{stem}.json").read_bytes(),
        (tmp_path / f"{stem}.timeline.csv").read_bytes(),
    )


def test_feature_fusion_is_reapplied(trained: dict[str, Any], tmp_path: Path) -> None:
    from emoflow.media import probe
    from emoflow.models.fusion import fusion_mlp_from_json, predict_fusion_mlp, state_hash
    from emoflow.predict import load_predictor, predict_timeline, softmax

    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    info = json.loads((model / "bundle.json").read_text("utf-8"))
    entry = info["fusion_weights"]["methods"]["feature"]
    assert entry["fitted"] is True and "state" in entry
    info["fusion"] = "feature"
    (model / "bundle.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    mlp = fusion_mlp_from_json(entry)
    assert state_hash(mlp) == entry["state_sha256"]
    preds = pd.read_parquet(
        trained["root"] / "results/t/models/audio/fold0/seed0/predictions.parquet"
    )
    row = preds[preds.part == "test"].iloc[0]
    paths = pd.read_parquet(trained["root"] / "results/t/manifest.parquet").set_index("clip_id")
    clip = Path(paths.loc[row.clip_id, "path"])
    out = tmp_path / "out"
    doc = run_predict([clip], model, out, threads=1)[0]
    assert doc["source"] == "both"
    assert doc["fusion"]["requested"] == doc["fusion"]["applied"] == "feature"
    assert "note" not in doc["fusion"]
    # the branch embeddings, window by window and pooled over the clip like training pools
    predictor = load_predictor(model)
    assert predictor.fusion.applied == "feature" and predictor.fusion.note is None
    timeline = predict_timeline(clip, predictor, probe(clip))
    both = timeline.has["audio"] & timeline.has["visual"]
    assert both.all()
    emb = {b: timeline.embedding[b] for b in ("audio", "visual")}
    # the audio clip embedding is the training one (same features, mean over windows)
    np.testing.assert_allclose(emb["audio"].mean(axis=0), row.embedding, atol=2e-5)
    x = np.hstack([emb["audio"].mean(axis=0), emb["visual"].mean(axis=0)])[None, :]
    expected = predict_fusion_mlp(mlp, x)["prob"][0].astype(np.float64)
    classes = doc["classes"]
    got = np.array([doc["probabilities"][c] for c in classes])
    assert got.tolist() == [round(float(p), 6) for p in expected]
    assert doc["label"] == classes[int(np.argmax(expected))]
    # not the late fusion of the branch probabilities
    late = np.mean([softmax(timeline.logits[b].mean(axis=0, keepdims=True))[0]
                    for b in ("audio", "visual")], axis=0)  # fmt: skip
    assert not np.allclose(got, late, atol=1e-4)
    # per window: the MLP on each window's concatenated embeddings
    csv = read_timeline(out, clip.stem)
    per_window = predict_fusion_mlp(mlp, np.hstack([emb["audio"], emb["visual"]]))["prob"]
    np.testing.assert_allclose(
        csv[[f"p_{c}" for c in classes]].to_numpy(), per_window, rtol=0, atol=1e-6
    )


def test_long_video_in_bounded_memory(
    trained: dict[str, Any], media: dict[str, Path], tmp_path: Path
) -> None:
    spec = load_bundle(trained["model"] / "audio.pt")["spec"]
    n = expected_windows(media["long"], spec)
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        run_predict([media["long"]], trained["model"], tmp_path, threads=2)
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    timeline = read_timeline(tmp_path, "long")
    assert len(timeline) == n and 79 <= n <= 80
    np.testing.assert_allclose(timeline.start_s.to_numpy(), np.arange(n) * 1.5)
    assert timeline.end_s.iloc[-1] == pytest.approx(120.0, abs=0.05)
    assert (timeline.face_fraction > 0.5).mean() > 0.9
    assert (timeline.source == "both").mean() > 0.9
    doc = read_json(tmp_path, "long")
    assert doc["n_windows"] == n and doc["duration_s"] == pytest.approx(120.0, abs=0.1)
    # all frames at once would be 3000 x 320 x 320 x 3 bytes = 920 MB; audio alone is 7.7 MB
    assert peak < 150 * 2**20, f"peak traced memory {peak / 2**20:.0f} MiB"
    print(f"\n2-minute video: {seconds:.1f} s ({seconds / 2:.1f} s per minute of video), "
          f"peak traced memory {peak / 2**20:.0f} MiB")  # fmt: skip


def test_audio_only_file(trained: dict[str, Any], media: dict[str, Path], tmp_path: Path) -> None:
    docs = run_predict([media["wav"]], trained["model"], tmp_path, threads=1)
    timeline = read_timeline(tmp_path, "tone")
    assert len(timeline) == 3
    assert (timeline.face_fraction == 0).all() and (timeline.source == "audio_only").all()
    doc = docs[0]
    assert doc["source"] == "audio_only" and doc["modalities"] == ["audio"]
    assert "no video stream" in doc["missing"]["visual"]
    assert doc["fusion"]["used"] is False and doc["label"] in doc["classes"]
    assert (tmp_path / "tone.png").read_bytes()[:8] == PNG_MAGIC
    # one branch model file instead of the bundle folder
    single = run_predict([media["wav"]], trained["model"] / "audio.pt", tmp_path / "one")[0]
    assert single["fusion"]["applied"] == "none" and single["source"] == "audio_only"
    assert single["probabilities"] == doc["branches"]["audio"]["probabilities"]
    with pytest.raises(EmoflowError, match="visual branch only"):
        run_predict([media["wav"]], trained["model"] / "visual.pt", tmp_path / "two")


def test_video_without_audio(
    trained: dict[str, Any], media: dict[str, Path], tmp_path: Path
) -> None:
    doc = run_predict([media["silent"]], trained["model"], tmp_path, threads=1)[0]
    timeline = read_timeline(tmp_path, "silent")
    assert len(timeline) == 3  # 6 s on the audio window grid: 0, 1.5, 3.0
    assert (timeline.source == "visual_only").all() and (timeline.face_fraction > 0.5).all()
    probs = timeline[[f"p_{c}" for c in doc["classes"]]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert doc["source"] == "visual_only" and doc["modalities"] == ["visual"]
    assert "no audio stream" in doc["missing"]["audio"]


def _rewrite(src: Path, dst: Path, **spec_changes: Any) -> None:
    b = load_bundle(src)
    spec = {**b["spec"], **spec_changes}
    save_bundle(dst, branch=b["branch"], arch=b["arch"], state_dict=b["state_dict"],
                classes=b["classes"], target=b["target"], norm=b["norm"], spec=spec,
                train_config=b["train_config"])  # fmt: skip


def test_missing_face_backend_and_version_warnings(
    trained: dict[str, Any], media: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "model"
    shutil.copytree(trained["model"], broken)
    openface = {"bin": str(tmp_path / "no" / "FeatureExtraction"), "model": "m.txt",
                "au_static": True}  # fmt: skip
    _rewrite(broken / "visual.pt", broken / "visual.pt", backend="openface", openface=openface)
    _rewrite(broken / "audio.pt", broken / "audio.pt", librosa_version="0.0.1")
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(EMOFLOW), "predict", str(trained["clips"][0]), "--model", str(broken),
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "'openface' face backend" in proc.stderr and "not available" in proc.stderr
    assert "FeatureExtraction not found" in proc.stderr
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(ToolMissingError):
        run_predict([media["silent"]], broken, out, threads=1)
    # an audio-only file does not need the face backend; a tool version difference warns
    doc = run_predict([media["wav"]], broken, out, threads=1)[0]
    assert doc["source"] == "audio_only"
    assert any("librosa" in w and "0.0.1" in w for w in doc["warnings"])


def test_help_documents_every_option() -> None:
    from emoflow.cli import app

    command = next(c for c in app.registered_commands if c.name in (None, "predict")
                   and c.callback.__name__ == "predict")  # fmt: skip
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    proc = subprocess.run([str(EMOFLOW), "predict", "--help"], capture_output=True, text=True,
                          timeout=60, check=False, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    hints = typing.get_type_hints(command.callback, include_extras=True)
    params = [n for n in hints if n != "return"]
    assert set(params) == {"videos", "model", "out", "workers"}
    for name in params:
        info = typing.get_args(hints[name])[1]
        if name != "videos":
            assert f"--{name}" in text
        assert " ".join(info.help.split()) in text, name
