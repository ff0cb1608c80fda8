"""Time-continuous labels end to end: an Aff-Wild2-shaped corpus of generated half-minute
videos (official layout, -5 / -1 unannotated frames, a two-person video with _left / _right
annotations, an unannotated ABAW test video) through the real workflow, then the same videos
as a ``timeseries`` corpus of End2You-style label files."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from emoflow.storage.shards import open_shards

sys.path.insert(0, str(Path(__file__).parent))
from affwild_corpus import make_affwild_corpus  # noqa: E402

from workflow import env, planned_jobs, snakemake, write_config  # noqa: E402

CLASSES = ["neutral", "happy", "sad", "angry"]
SETTINGS = {
    "shards": 2,
    "folds": {"protocol": "official"},
    "train": {"epochs": 3, "patience": 3, "batch_size": 16, "seeds": [0], "target": "both"},
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("affwild2")
    return make_affwild_corpus(root / "data", durations=(30.0, 31.0, 32.0), two_person_s=30.0,
                               test_videos=1, workers=2)  # fmt: skip


@pytest.fixture(scope="module")
def run(corpus: dict[str, Any]) -> dict[str, Path]:
    base = Path(corpus["root"]).parent
    dataset = {"name": "aw", "adapter": "affwild2", "root": str(corpus["root"]), "labels": CLASSES}
    config = write_config(base / "aw.yaml", corpus["root"], base / "results", dataset=dataset,
                          cache={"dir": str(base / "cache")}, **SETTINGS)  # fmt: skip
    snakemake(config)
    return {"config": config, "out": base / "results" / "aw", "base": base}


def test_tables_score_frames_and_videos(run: dict[str, Path], corpus: dict[str, Any]) -> None:
    md = (run["out"] / "report" / "results.md").read_text()
    assert "scored per annotated frame" in md
    assert "Valence CCC (mean per video)" in md and "Macro-F1" in md
    table = pd.read_csv(run["out"] / "report" / "results.csv")
    for column in ("valence_ccc", "arousal_ccc", "video_valence_ccc", "macro_f1"):
        assert table[column].notna().all() and table[column].between(-1, 1).all()
    # the scored clips are the validation videos' annotated people, never windows
    val = sorted(c for c, info in corpus["clips"].items() if info["split"] == "val")
    assert set(table["n"]) == {len(val)}
    # per class: every frame of a validation clip with an expression counts once
    expected = sum(sum(e is not None for e in corpus["clips"][c]["expression"]) for c in val)
    per_class = pd.read_csv(run["out"] / "report" / "per_class.csv")
    assert per_class[per_class.method == "audio"]["support"].sum() == expected
    unlabelled = pd.read_csv(run["out"] / "report" / "unlabelled_predictions.csv")
    assert unlabelled["clip_id"].str.contains("-test@w").all()


def test_two_person_video_uses_the_annotated_face(run: dict[str, Path]) -> None:
    shards = open_shards(sorted((run["out"] / "faces").glob("*.h5")), "faces")
    centres = {}
    for side in ("left", "right"):
        rec = shards.get(f"video4_{side}")
        boxes = rec.boxes[rec.mask]
        assert rec.mask.mean() > 0.95 and rec.n_faces.max() == 2
        centres[side] = (boxes[:, 0] + boxes[:, 2]) / 2
    assert centres["left"].max() < 320 <= centres["right"].min()  # the frame is 640 wide


def test_windows_are_targets_and_rerun_is_identical(run: dict[str, Path]) -> None:
    preds = pd.read_parquet(
        run["out"] / "models" / "audio" / "fold0" / "seed0" / "predictions.parquet"
    )
    assert preds["clip_id"].str.contains("@w").all()
    train = preds[preds.part == "train"]
    assert train["valence_true"].notna().any() and (train["y"] >= 0).any()
    before = {p.name: p.read_bytes() for p in (run["out"] / "report").glob("results.*")}
    assert planned_jobs(run["config"]) == {}
    shutil.rmtree(run["out"] / "report")
    snakemake(run["config"])
    after = {p.name: p.read_bytes() for p in (run["out"] / "report").glob("results.*")}
    assert after == before


def test_timeseries_corpus_of_end2you_files(run: dict[str, Path], corpus: dict[str, Any]) -> None:
    """The same videos and labels as End2You files (time,valence,arousal per frame); the
    per-clip cache is shared, so no feature is computed again."""
    root = run["base"] / "e2y"
    root.mkdir()
    rows = []
    for clip, info in sorted(corpus["clips"].items()):
        if info["side"]:  # one person per video here: End2You has no sides
            continue
        t = np.arange(len(info["valence"])) / corpus["fps"]
        frame = pd.DataFrame({"time": t, "valence": info["valence"], "arousal": info["arousal"]})
        frame.dropna().to_csv(root / f"{clip}.csv", index=False, float_format="%.6g")
        rows.append({"file": str(info["path"]), "label_file": f"{clip}.csv",
                     "speaker": info["speaker"], "split": info["split"]})  # fmt: skip
    with open(root / "clips.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    dataset = {"name": "e2y", "adapter": "timeseries", "root": str(root),
               "labels_csv": "clips.csv", "allow_outside_root": True}  # fmt: skip
    settings = {**SETTINGS, "train": {**SETTINGS["train"], "target": "dimensional"}}
    config = write_config(run["base"] / "e2y.yaml", root, run["base"] / "results", dataset=dataset,
                          cache={"dir": str(run["base"] / "cache")}, **settings)  # fmt: skip
    snakemake(config)
    out = run["base"] / "results" / "e2y"
    table = pd.read_csv(out / "report" / "results.csv")
    assert table["valence_ccc"].notna().all() and "macro_f1" not in table.columns
    for stage in ("audio", "faces"):
        assert '"computed": []' in (out / "computed" / f"{stage}.json").read_text()


def test_predict_writes_the_per_frame_timeline(
    run: dict[str, Path], corpus: dict[str, Any]
) -> None:
    video = next(v for v in corpus["videos"].values() if v["split"] == "test")
    out = run["base"] / "predict"
    bundle = run["out"] / "model"
    args = ["predict", str(video["path"]), "--model", str(bundle), "--out", str(out)]
    subprocess.run([sys.executable, "-m", "emoflow", *args], check=True, env=env(), timeout=600)
    frames = pd.read_csv(out / f"{Path(video['path']).stem}.frames.csv")
    assert len(frames) == video["frames"]  # one row per video frame
    assert np.allclose(frames["time_s"], np.arange(video["frames"]) / corpus["fps"])
    assert frames["predicted"].isin(CLASSES).all() and frames["valence"].between(-1, 1).all()
