"""Protocols through the real workflow: an AFEW-shaped corpus (Train/Val labelled, Test not)
is scored on Val with its Test clips predicted, and a corpus whose test part would be empty
stops at `split` with a message naming the fold, the protocol and the counts."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tests.workflow import snakemake, write_config

RAVDESS_EMOTION = {"01": "Neutral", "03": "Happy", "04": "Sad", "05": "Angry"}


def afew_corpus(demo: Path, root: Path, with_val: bool = True) -> Path:
    """Demo clips laid out as AFEW: actors 1-4 Train/<Emotion>, 5-6 Val/<Emotion>, 7-8 Test."""
    for clip in sorted(demo.rglob("*.mp4")):
        actor = int(clip.stem.split("-")[-1])
        emotion = RAVDESS_EMOTION[clip.stem.split("-")[2]]
        if actor <= 4:
            dest = root / "Train" / emotion / clip.name
        elif actor <= 6:
            dest = root / ("Val" if with_val else "Train") / emotion / clip.name
        else:
            dest = root / "Test" / clip.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(clip, dest)
    return root


@pytest.fixture(scope="module")
def demo(demo32: Path) -> Path:
    return demo32


def config(corpus: Path, base: Path) -> Path:
    return write_config(
        base / "cfg.yaml", corpus, base / "results", shards=2,
        dataset={"adapter": "afew"}, cache={"dir": str(base / "cache")},
    )  # fmt: skip


@pytest.mark.slow
def test_afew_is_scored_on_val_and_test_clips_are_predicted(demo: Path, tmp_path: Path) -> None:
    corpus = afew_corpus(demo, tmp_path / "afew")
    snakemake(config(corpus, tmp_path))
    out = tmp_path / "results" / "t"
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["name"] == "official" and protocol["unlabelled"] == 8
    table = (out / "report" / "results.md").read_text()
    assert table.startswith("Protocol: official split (official validation part scored")
    rows = {r["method"]: r for r in csv.DictReader((out / "report" / "results.csv").open())}
    val_clips = {f"Val/{p.parent.name}/{p.stem}" for p in (corpus / "Val").rglob("*.mp4")}
    assert len(val_clips) == 8
    assert all(int(r["n"]) + int(r["missing"]) <= 8 for r in rows.values())
    assert int(rows["audio"]["n"]) == 8 - int(rows["visual"]["missing"])
    unlabelled = list(csv.DictReader((out / "report" / "unlabelled_predictions.csv").open()))
    assert {r["clip_id"] for r in unlabelled} == {
        f"Test/{p.stem}" for p in demo.rglob("*-0[78].mp4")
    }
    bundle = json.loads((out / "model" / "bundle.json").read_text())
    assert bundle["mode"] == "refit" and bundle["audio_refit"]["clips"] == 24


@pytest.mark.slow
def test_an_empty_test_part_stops_split(demo: Path, tmp_path: Path) -> None:
    corpus = afew_corpus(demo, tmp_path / "afew", with_val=False)  # only unlabelled Test
    proc = snakemake(config(corpus, tmp_path), str(tmp_path / "results/t/folds.parquet"),
                     check=False)  # fmt: skip
    assert proc.returncode != 0
    log = (tmp_path / "results" / "t" / "logs" / "split.log").read_text()
    assert "folds.protocol official: fold 0: empty test part (train 19, val 5, test 0 clips)" in log
