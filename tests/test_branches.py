"""Configurable branches: the selection, N-branch fusion, and audio-only / silent-video corpora
through the real workflow (only the selected branches' stages run; tables hold only them)."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from emoflow.branches import row_sources, selected_branches, selected_stages, source_label
from emoflow.config import validate_config
from emoflow.errors import ConfigError
from emoflow.fusion.apply import apply_fusion
from tests.encoders import tiny_wav2vec2
from tests.fake_openface import install as install_fake_openface
from tests.workflow import BIN, env, planned_jobs, snakemake, write_config

FIXTURES = Path(__file__).resolve().parent / "data" / "openface"


def base(**extra: object) -> dict:
    return {"dataset": {"name": "x", "adapter": "ravdess", "root": "d"}, **extra}


def test_selection_is_in_registry_order_and_validated() -> None:
    cfg = validate_config(base())
    assert selected_branches(cfg) == ("audio", "visual")
    assert selected_stages(cfg) == ("audio", "faces")
    cfg = validate_config(base(branches=["visual"]))
    assert selected_branches(cfg) == ("visual",) and selected_stages(cfg) == ("faces",)
    assert selected_branches(validate_config(base(branches=["visual", "audio"]))) == (
        "audio", "visual",
    )  # fmt: skip
    for bad in ([], ["audio", "audio"], ["video"]):
        with pytest.raises(ConfigError, match="branches"):
            validate_config(base(branches=bad))


def test_source_labels() -> None:
    assert source_label(["visual", "audio"], ["audio", "visual"]) == "both"
    assert source_label(["a", "b", "c"], ["a", "b", "c"]) == "all"
    assert source_label(["c", "a"], ["a", "b", "c"]) == "a+c"
    assert source_label(["b"], ["a", "b", "c"]) == "b_only"
    assert source_label([], ["a", "b"]) == "none"
    has = {"audio": np.array([1, 1, 0, 0], bool), "visual": np.array([1, 0, 1, 0], bool)}
    assert row_sources(has) == ["both", "audio_only", "visual_only", "none"]


def test_late_fusion_of_three_branches_renormalises_over_present_ones() -> None:
    rng = np.random.default_rng(0)
    names = ["a", "b", "c"]
    prob = {b: rng.dirichlet(np.ones(4), size=5) for b in names}
    va = {b: rng.normal(size=(5, 2)) for b in names}
    has = {"a": np.array([1, 1, 1, 0, 0], bool), "b": np.array([1, 1, 0, 0, 0], bool),
           "c": np.array([1, 0, 0, 1, 0], bool)}  # fmt: skip
    params = {"branches": names, "categorical": [0.5, 0.3, 0.2], "dimensional": [0.2, 0.2, 0.6]}
    p, v = apply_fusion("late", params, "both", prob, va, has)
    np.testing.assert_allclose(p[0], 0.5 * prob["a"][0] + 0.3 * prob["b"][0] + 0.2 * prob["c"][0])
    np.testing.assert_allclose(v[0], 0.2 * va["a"][0] + 0.2 * va["b"][0] + 0.6 * va["c"][0])
    np.testing.assert_allclose(p[1], (0.5 * prob["a"][1] + 0.3 * prob["b"][1]) / 0.8)  # a+b
    np.testing.assert_allclose(v[1], 0.5 * va["a"][1] + 0.5 * va["b"][1])
    np.testing.assert_allclose(p[2], prob["a"][2])  # a only
    np.testing.assert_allclose(p[3], prob["c"][3])  # c only
    assert np.isnan(p[4]).all() and np.isnan(v[4]).all()  # none
    # stacking/feature rows with some branches take the equal-weight average of those
    p, _ = apply_fusion("stacking", {"branches": names}, "categorical", prob, va, has)
    np.testing.assert_allclose(p[1], 0.5 * prob["a"][1] + 0.5 * prob["b"][1])


# --------------------------------------------------------------------------- real workflow


@pytest.fixture(scope="module")
def demo(demo32: Path) -> Path:
    return demo32


def converted(demo: Path, root: Path, suffix: str, args: list[str]) -> Path:
    """Every demo clip through ffmpeg with ``args`` (RAVDESS names, ``suffix``)."""
    for clip in sorted(demo.rglob("*.mp4")):
        dest = root / clip.parent.name / (clip.stem + suffix)
        dest.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(clip), *args, str(dest)]
        subprocess.run(cmd, check=True)
    return root


def run(corpus: Path, base: Path, branches: list[str], **extra: object) -> Path:
    cfg = write_config(
        base / "cfg.yaml", corpus, base / "results", shards=2, branches=branches,
        cache={"dir": str(base / "cache")}, folds={"k": 2, "only": [0]},
        bundle={"mode": "fold0"}, **extra,
    )  # fmt: skip
    snakemake(cfg)
    out = base / "results" / "t"
    first = (out / "report" / "results.csv").read_bytes()
    again = snakemake(cfg)
    assert "Nothing to be done" in again.stdout + again.stderr
    assert (out / "report" / "results.csv").read_bytes() == first
    return out


def predict_one(media: Path, model: Path, out: Path) -> dict:
    """``emoflow predict`` (the installed command) on one file; its JSON."""
    cmd = [str(BIN / "emoflow"), "predict", str(media), "--model", str(model), "--out", str(out)]
    subprocess.run(cmd, check=True, env=env(), capture_output=True)
    return json.loads((out / f"{media.stem}.json").read_text())


def rows(out: Path) -> dict[str, dict[str, str]]:
    return {r["method"]: r for r in csv.DictReader((out / "report" / "results.csv").open())}


@pytest.mark.slow
def test_audio_only_corpus_of_wav_files(demo: Path, tmp_path: Path) -> None:
    """`branches: [audio, egemaps, ssl]` on .wav files (a tiny local wav2vec 2.0): the three
    audio branches and every fusion, no face stage; changing only ``ssl.layer`` reruns only the
    ssl stage and what depends on it."""
    corpus = converted(demo, tmp_path / "wav", ".wav", ["-vn", "-ac", "1", "-ar", "16000"])
    encoder = tiny_wav2vec2(tmp_path / "w2v2")
    settings = {"train": {"epochs": 4, "patience": 4}, "ssl": {"model_path": str(encoder)}}
    out = run(corpus, tmp_path, ["audio", "egemaps", "ssl"], **settings)
    table = rows(out)
    assert list(table) == ["audio", "egemaps", "ssl", "late", "stacking", "feature"]
    assert all(int(r["n"]) == 16 and r["missing"] == "0" for r in table.values())  # fold 0
    # 4 classes: chance is 0.25; the demo voice tells arousal only (two pairs): 0.5 at best
    assert float(table["egemaps"]["uar"]) > 0.3
    assert (out / "egemaps").is_dir() and not (out / "faces").exists()
    assert not (out / "models" / "visual").exists()
    assert "| eGeMAPS |" in (out / "report" / "results.md").read_text()
    prov = json.loads((out / "report" / "provenance.json").read_text())
    assert prov["branches"] == ["audio", "egemaps", "ssl"]
    assert "research" in prov["encoders"]["egemaps"]["licence"]
    assert list(prov["encoders"]["ssl"]["weights_sha256"]) == ["model.safetensors"]
    assert str(encoder) not in json.dumps(prov)
    bundle = json.loads((out / "model" / "bundle.json").read_text())
    assert sorted(bundle["branches"]) == ["audio", "egemaps", "ssl"] and bundle["fusion"] == "late"
    assert bundle["encoders"] == {"ssl": str(encoder)}
    doc = predict_one(sorted(corpus.rglob("*.wav"))[0], out / "model", tmp_path / "pred")
    assert doc["modalities"] == ["audio", "egemaps", "ssl"] and doc["source"] == "all"
    assert doc["fusion"]["applied"] == "late" and "visual" in doc["missing"]
    cfg = write_config(
        tmp_path / "cfg2.yaml", corpus, tmp_path / "results", shards=2,
        branches=["audio", "egemaps", "ssl"], cache={"dir": str(tmp_path / "cache")},
        folds={"k": 2, "only": [0]}, bundle={"mode": "fold0"},
        train={"epochs": 4, "patience": 4}, ssl={"model_path": str(encoder), "layer": 1},
    )  # fmt: skip
    planned = planned_jobs(cfg)
    assert planned["extract_ssl"] == 2 and planned["train"] == 1  # the ssl branch's fold 0
    assert planned["bundle"] == 1 and planned["evaluate"] == 1 and "refit" not in planned
    assert "extract_audio" not in planned and "extract_egemaps" not in planned


@pytest.mark.slow
def test_silent_video_corpus_trains_the_face_branches_only(demo: Path, tmp_path: Path) -> None:
    """`branches: [visual, face_cnn]` on videos without audio: no audio stage, the face_cnn
    stage encodes the faces stage's cached faces (computed once), both branches are fused."""
    corpus = converted(demo, tmp_path / "silent", ".mp4", ["-an", "-c:v", "copy"])
    out = run(corpus, tmp_path, ["visual", "face_cnn"])
    assert list(rows(out)) == ["visual", "face_cnn", "late", "stacking", "feature"]
    assert (out / "faces").is_dir() and (out / "face_cnn").is_dir()
    assert not (out / "audio").exists()
    import pyarrow.parquet as pq

    failures = pq.read_table(out / "failures.parquet").to_pylist()
    assert all(f["stage"] != "audio" for f in failures)  # no clip failed for lacking audio
    folds = pq.read_table(out / "folds.parquet").to_pylist()
    tested = {f["clip_id"] for f in folds if f["fold"] == 0 and f["role"] == "test"}
    failed = {f["clip_id"] for f in failures}
    assert len(tested) == 16 and int(rows(out)["visual"]["n"]) + len(failed & tested) == 16
    faces = json.loads((out / "computed" / "faces.json").read_text())
    face_cnn = json.loads((out / "computed" / "face_cnn.json").read_text())
    assert len(faces["computed"]) == len(face_cnn["computed"]) > 0
    log = (out / "logs" / "face_cnn" / "compute.log").read_text()
    assert "not in the faces stage's cache" not in log  # it ran after the faces stage


@pytest.mark.slow
def test_au_branch_with_the_openface_backend(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`branches: [egemaps, au]` with `faces.backend: openface` (the replay double of
    FeatureExtraction as a real subprocess): the faces stage stores AUs, pose and gaze, the au
    branch trains on them, fuses with eGeMAPS, and `predict` runs OpenFace for it. (The double
    replays one recording for every clip, so the au branch cannot learn here; test_train.py
    checks that it learns.)"""
    if not FIXTURES.is_dir():
        pytest.fail(f"the recorded OpenFace output is missing: {FIXTURES}")
    monkeypatch.setenv("FAKE_OPENFACE_FIXTURES", str(FIXTURES))
    binary = install_fake_openface(tmp_path / "open face")
    faces = {"backend": "openface", "openface": {"bin": str(binary), "timeout_s": 120}}
    out = run(demo, tmp_path, ["egemaps", "au"], faces=faces, au={"aggregation": "mean"})
    table = rows(out)
    assert list(table) == ["egemaps", "au", "late", "stacking", "feature"]
    assert all(int(r["n"]) == 16 and r["missing"] == "0" for r in table.values())  # fold 0
    assert "| Action units (OpenFace) |" in (out / "report" / "results.md").read_text()
    assert not (out / "audio").exists() and not (out / "models" / "visual").exists()
    with h5py.File(sorted((out / "faces").glob("*.h5"))[0], "r") as h5:
        frames = len(h5["mask"])
        assert h5["au"].shape == (frames, 17) and h5["gaze"].shape == (frames, 8)
        assert "-gaze" in json.loads(h5.attrs["spec"])["backend_versions"]["flags"]
    bundle = json.loads((out / "model" / "bundle.json").read_text())
    assert sorted(bundle["branches"]) == ["au", "egemaps"]
    doc = predict_one(sorted(demo.rglob("*.mp4"))[0], out / "model", tmp_path / "pred")
    assert doc["modalities"] == ["au", "egemaps"] and doc["source"] == "both"  # sorted
    assert set(doc["fusion"]["weights"]["categorical"]) == {"egemaps", "au"}
