"""``emoflow predict``: a small bundle trained by the workflow's own stages on demo clips plus a
70 s talking face and a 0.4 s clip; predict on the same files sees exactly the shards' windows
and gives the evaluation's stored prediction; timelines for an audio-only file and a video
without audio; the fusion plan, the CLI help and a missing face backend."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tracemalloc
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from emoflow.deploy.predict import run_predict
from emoflow.deploy.predictor import fusion_plan
from emoflow.errors import EmoflowError, SpecMismatchError, ToolMissingError
from emoflow.models.bundle import load_bundle, save_bundle
from tests.workflow import linked_clips

sys.path.insert(0, str(Path(__file__).parent))
from mediagen import face_png, make_clip, talking_face_clip  # noqa: E402

EMOFLOW = Path(sys.executable).parent / "emoflow"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _config(root: Path, bundle: str = "fold0", **folds: Any) -> dict[str, Any]:
    from emoflow.config import validate_config

    return validate_config(
        {
            "dataset": {"name": "t", "adapter": "ravdess", "root": str(root / "data")},
            "results": str(root / "results"),
            "shards": 1,
            "folds": {"k": 3, **folds},
            "train": {"epochs": 2, "patience": 2, "batch_size": 8, "seeds": [0], "threads": 1},
            "execution": {"workers": 1},
            "bundle": {"mode": bundle},
            "fusion": {"fit_on": "val"},  # 3 actors: too few for inner folds
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, demo16: Path) -> dict[str, Any]:
    """A bundle trained by the real workflow pieces on 12 demo clips (3 actors, k = 3) plus a
    70 s talking face and a 0.4 s clip of the actor that fold 0 tests."""
    from emoflow import stages
    from emoflow.datasets import manifest
    from emoflow.extraction import shard_job as extract

    root = tmp_path_factory.mktemp("predict")
    clips = linked_clips(demo16, root / "data", 12)
    config = _config(root)
    manifest.refresh(config)
    stages.run_split(config)
    folds = pd.read_parquet(root / "results/t/folds.parquet")
    actor = folds[(folds.fold == 0) & (folds.role == "test")].speaker.iloc[0]
    code = actor.split("_")[-1]
    face = face_png(root / "face.png")
    extra = {
        "long": talking_face_clip(root / f"data/{actor}/01-01-03-01-02-02-{code}.mp4", face, 70.0),
        "short": talking_face_clip(root / f"data/{actor}/01-01-04-01-02-02-{code}.mp4", face, 0.4),
    }
    manifest.refresh(config)
    for stage in ("audio", "faces"):
        extract.run_shard(config, stage, 0, workers=1)
    stages.run_split(config)
    for branch in ("audio", "visual"):
        stages.run_train(config, branch, 0, 0)
    stages.run_fuse(config, 0, 0)
    model = stages.run_bundle(config)
    return {"root": root, "config": config, "clips": clips, "model": model, **extra}


@pytest.fixture(scope="module")
def media(trained: dict[str, Any]) -> dict[str, Path]:
    """A .wav and a video without audio."""
    folder = trained["root"] / "media"
    folder.mkdir()
    face = face_png(folder / "face.png")
    return {
        "wav": make_clip(folder / "tone.wav", duration=5.0, video=False, audio_codec="pcm_s16le"),
        "silent": make_clip(folder / "silent.mp4", duration=6.0, image=face, audio=False),
        "hush": make_clip(folder / "hush.mp4", duration=6.0, image=face, volume=3e-5),
    }


def read_timeline(out: Path, stem: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{stem}.timeline.csv", keep_default_na=False, na_values=[""])


def read_json(out: Path, stem: str) -> dict[str, Any]:
    return json.loads((out / f"{stem}.json").read_text("utf-8"))


def _clip_id(trained: dict[str, Any], path: Path) -> str:
    return path.relative_to(trained["root"] / "data").with_suffix("").as_posix()


# --------------------------------------------------------------------------- the one code path


@pytest.mark.parametrize("which", ["long", "short"])
def test_predict_sees_the_shards_windows_and_gives_the_stored_prediction(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    from emoflow.deploy import branch_outputs
    from emoflow.storage.shards import ShardReader
    from emoflow.training.windows import face_windows

    seen: dict[str, Any] = {}

    def record(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen[name] = fn(*args, **kwargs)
            return seen[name]

        return wrapper

    monkeypatch.setattr(
        branch_outputs, "audio_features", record("audio", branch_outputs.audio_features)
    )
    monkeypatch.setattr(
        branch_outputs, "face_features", record("faces", branch_outputs.face_features)
    )
    path, clip_id = trained[which], _clip_id(trained, trained[which])
    tracemalloc.start()
    try:
        doc = run_predict([path], trained["model"], tmp_path, threads=1)[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    results = trained["root"] / "results/t"
    with ShardReader(results / "audio/0.h5") as shard:
        ref_a = shard.get(clip_id)
    with ShardReader(results / "faces/0.h5") as shard:
        ref_f = shard.get(clip_id)
    got_a, [got_f] = seen["audio"], seen["faces"]
    # every audio window and every face frame (and so every face window) is the shard's
    assert got_a.logmel.shape == ref_a.logmel.shape
    np.testing.assert_allclose(got_a.logmel, ref_a.logmel, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got_a.window_start_s, ref_a.window_start_s)
    np.testing.assert_array_equal(got_f.faces, ref_f.faces)
    np.testing.assert_array_equal(got_f.mask, ref_f.mask)
    np.testing.assert_array_equal(got_f.window_frame0, ref_f.window_frame0)
    norm = load_bundle(trained["model"] / "visual.pt")["norm"]
    x_got, m_got = face_windows(got_f, 16, int(norm["size"]), True)
    x_ref, m_ref = face_windows(ref_f, 16, int(norm["size"]), True)
    assert bool((x_got == x_ref).all()) and bool((m_got == m_ref).all())
    # one time grid: audio window i and face window i start at the same second
    np.testing.assert_array_equal(ref_f.window_start_s, ref_a.window_start_s)
    n = {"long": 46, "short": 1}[which]
    assert len(ref_a.window_start_s) == n and ref_a.padded == (which == "short")
    assert doc["n_windows"] == n
    # the clip-level prediction is the evaluation's stored one for this clip (same model)
    fused = pd.read_parquet(results / "fusion/fold0/seed0.parquet")
    method = doc["fusion"]["applied"]
    row = fused[(fused.clip_id == clip_id) & (fused.method == method)].iloc[0]
    got = np.array([doc["probabilities"][c] for c in doc["classes"]])
    np.testing.assert_allclose(got, row.prob, rtol=0, atol=1e-5)
    for branch in ("audio", "visual"):
        b = fused[(fused.clip_id == clip_id) & (fused.method == branch)].iloc[0]
        got = [doc["branches"][branch]["probabilities"][c] for c in doc["classes"]]
        np.testing.assert_allclose(got, b.prob, rtol=0, atol=1e-5)
    if which == "long":
        timeline = read_timeline(tmp_path, path.stem)
        np.testing.assert_allclose(timeline.start_s.to_numpy(), np.arange(n) * 1.5)
        assert timeline.end_s.iloc[-1] == pytest.approx(70.0, abs=0.05)
        assert (timeline.source == "both").mean() > 0.9
        # frames all at once would be 373 x 320 x 320 x 3 bytes = 115 MB
        assert peak < 60 * 2**20, f"peak traced memory {peak / 2**20:.0f} MiB"


def test_demo_clip_outputs_are_deterministic(trained: dict[str, Any], tmp_path: Path) -> None:
    clip = trained["clips"][0]
    docs = run_predict([clip], trained["model"], tmp_path, threads=1)
    stem = clip.stem
    doc = read_json(tmp_path, stem)
    assert docs == [doc]
    timeline = read_timeline(tmp_path, stem)
    assert len(timeline) == 2 == doc["n_windows"]
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
    shard = json.loads((trained["root"] / "results/t/audio/0.json").read_text())
    assert doc["spec_hashes"]["audio"] == shard["spec_hash"]
    assert (tmp_path / f"{stem}.png").read_bytes()[:8] == PNG_MAGIC
    first = [(tmp_path / f"{stem}{x}").read_bytes() for x in (".json", ".timeline.csv")]
    run_predict([clip], trained["model"], tmp_path, threads=1)
    assert first == [(tmp_path / f"{stem}{x}").read_bytes() for x in (".json", ".timeline.csv")]


def test_feature_fusion_is_reapplied(trained: dict[str, Any], tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    info = json.loads((model / "bundle.json").read_text("utf-8"))
    assert info["fusion_weights"]["methods"]["feature"]["fitted"] is True
    info["fusion"] = "feature"
    (model / "bundle.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    path = trained["long"]
    doc = run_predict([path], model, tmp_path / "out", threads=1)[0]
    assert doc["fusion"]["requested"] == doc["fusion"]["applied"] == "feature"
    assert "note" not in doc["fusion"]
    fused = pd.read_parquet(trained["root"] / "results/t/fusion/fold0/seed0.parquet")
    row = fused[(fused.clip_id == _clip_id(trained, path)) & (fused.method == "feature")].iloc[0]
    got = np.array([doc["probabilities"][c] for c in doc["classes"]])
    np.testing.assert_allclose(got, row.prob, rtol=0, atol=1e-5)


def test_ensemble_and_refit_bundles(trained: dict[str, Any], tmp_path: Path) -> None:
    """ensemble: each fold model with its own normalisation, outputs averaged; refit: retrained
    on every labelled clip for the median best epoch. predict names the mode."""
    from emoflow import stages
    from emoflow.deploy import refit as deploy

    config = trained["config"]
    for branch in ("audio", "visual"):
        stages.run_train(config, branch, 1, 0)
    stages.run_fuse(config, 1, 0)
    clip = trained["clips"][0]
    single = {}
    for fold in (0, 1):
        path = trained["root"] / f"results/t/models/audio/fold{fold}/seed0/model.pt"
        single[fold] = run_predict([clip], path, tmp_path / f"fold{fold}", threads=1)[0]
    ensemble = _config(trained["root"], bundle="ensemble", only=[0, 1])
    model = stages.run_bundle(ensemble)
    info = json.loads((model / "bundle.json").read_text())
    assert info["branches"]["audio"] == ["audio_fold0.pt", "audio_fold1.pt"]
    assert "out-of-fold test predictions of folds [0, 1]" in info["fusion_weights"]["fitted_on"]
    doc = run_predict([clip], model, tmp_path / "ens", threads=1)[0]
    assert doc["model_mode"] == "ensemble"
    # the mean of the members' pooled logits = softmax of the mean log-probabilities
    logp = np.mean([np.log([d["probabilities"][c] for c in d["classes"]]) for d in single.values()],
                   axis=0)  # fmt: skip
    expected = np.exp(logp) / np.exp(logp).sum()
    got = [doc["branches"]["audio"]["probabilities"][c] for c in doc["classes"]]
    np.testing.assert_allclose(got, expected, atol=1e-4)

    refit = _config(trained["root"], bundle="refit", only=[0, 1])
    histories = [trained["root"] / f"results/t/models/audio/fold{f}/seed0/history.csv"
                 for f in (0, 1)]  # fmt: skip
    for branch in ("audio", "visual"):
        stages.run_refit(refit, branch)
    done = json.loads((trained["root"] / "results/t/models/audio/refit/refit.json").read_text())
    labelled = pd.read_parquet(trained["root"] / "results/t/folds.parquet")
    assert done == {"epochs": deploy.refit_epochs(histories),
                    "clips": labelled[labelled.fold == 0].clip_id.nunique()}  # fmt: skip
    model = stages.run_bundle(refit)
    assert json.loads((model / "bundle.json").read_text())["mode"] == "refit"
    doc = run_predict([clip], model, tmp_path / "refit", threads=1)[0]
    assert doc["model_mode"] == "refit" and doc["label"] in doc["classes"]


def test_fusion_plan_of_older_bundles() -> None:
    weights = {"methods": {"late": {"categorical": 0.8, "n_fit": 5}, "feature": {"fitted": True}}}
    feature = fusion_plan("feature", weights, ["audio", "visual"])
    assert (feature.requested, feature.applied, feature.params) == (
        "feature", "late", {"categorical": 0.8},
    )  # fmt: skip
    assert "not stored" in (feature.note or "")
    assert fusion_plan("feature", {}, ["audio", "visual"]).params == {}
    assert fusion_plan(None, None, ["audio"]).applied == "none"
    assert fusion_plan("late", weights, ["audio", "visual"]).describe()["weights"] == {
        "categorical": {"audio": 0.8, "visual": 0.2}
    }
    three = {"methods": {"late": {"branches": ["audio", "visual"], "categorical": [0.3, 0.7]}}}
    assert fusion_plan("late", three, ["audio", "visual"]).describe()["weights"] == {
        "categorical": {"audio": 0.3, "visual": 0.7}
    }
    # a late fusion that could not be fitted stores why; the plan keeps only the weights
    unfitted = {"methods": {"late": {"categorical": 0.5, "n_fit": 0, "reason": "no clip"}}}
    assert fusion_plan("late", unfitted, ["audio", "visual"]).params == {"categorical": 0.5}


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
    assert len(timeline) == 3  # 6 s on the window grid: 0, 1.5, 3.0
    assert (timeline.source == "visual_only").all() and (timeline.face_fraction > 0.5).all()
    probs = timeline[[f"p_{c}" for c in doc["classes"]]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert doc["source"] == "visual_only" and doc["modalities"] == ["visual"]
    assert "no audio stream" in doc["missing"]["audio"]


def test_digitally_silent_track_is_a_missing_modality(
    trained: dict[str, Any], media: dict[str, Path], tmp_path: Path
) -> None:
    """An audio track at about -93 dBFS: the audio branch is not used (it would predict on
    nothing); the faces carry every window, and the JSON says why."""
    doc = run_predict([media["hush"]], trained["model"], tmp_path, threads=1)[0]
    timeline = read_timeline(tmp_path, "hush")
    assert (timeline.source == "visual_only").all()
    assert doc["source"] == "visual_only" and doc["modalities"] == ["visual"]
    assert "digital silence" in doc["missing"]["audio"]
    assert "below audio.silence_dbfs -60" in doc["missing"]["audio"]


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


def test_model_of_an_older_feature_version_is_refused(
    trained: dict[str, Any], media: dict[str, Path], tmp_path: Path
) -> None:
    old = tmp_path / "model"
    shutil.copytree(trained["model"], old)
    _rewrite(old / "audio.pt", old / "audio.pt", feature_version=1)
    with pytest.raises(SpecMismatchError, match="version 1.*retrain"):
        run_predict([media["wav"]], old, tmp_path / "out", threads=1)


def test_timeline_bands_are_runs_of_one_source() -> None:
    from emoflow.deploy.plot import _runs

    sources = ["both", "both", "audio_only", "both", "both", "both", "none"]
    assert _runs(sources) == [(0, 2), (2, 3), (3, 6), (6, 7)]
    assert _runs([]) == [] and _runs(["both"] * 600) == [(0, 600)]
