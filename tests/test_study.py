"""A study of three corpora in three real layouts, built from demo clips (issue 24): a
RAVDESS-style audio-visual corpus, a TESS-style audio-only corpus and an AFEW-style corpus with
its official split; a label map, audio trained on two corpora and visual on two, the within,
pooled and cross protocols in one run, byte-identical on rerun; adding the third corpus to a
two-corpus study computes features for that corpus only."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.workflow import planned_jobs, snakemake

DEMO = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry"}  # RAVDESS emotion codes
WORDS = ["back", "bar", "base", "bath", "bean", "beg", "bite", "boat", "bone", "book"]  # TESS's


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def _clips(demo: Path, actors: set[int]) -> list[tuple[Path, int, str]]:
    """(path, actor, emotion) of the demo clips of ``actors``, sorted."""
    out = []
    for clip in sorted(demo.rglob("*.mp4")):
        fields = clip.stem.split("-")
        if int(fields[6]) in actors:
            out.append((clip, int(fields[6]), DEMO[fields[2]]))
    return out


def make_corpora(demo: Path, root: Path) -> dict[str, Path]:
    """rav/ (actors 1-4, RAVDESS names), tess/ (the audio of actors 5 and 6 as OAF and YAF
    wavs, plus one pleasant-surprise file), afew/ (actors 7 and 8 as Train/ and Val/ .avi)."""
    rav, tess, afew = root / "rav", root / "tess", root / "afew"
    for clip, _, _ in _clips(demo, {1, 2, 3, 4}):
        (rav / f"Actor_{clip.stem[-2:]}").mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, rav / f"Actor_{clip.stem[-2:]}" / clip.name)
    for i, (clip, actor, emotion) in enumerate(_clips(demo, {5, 6})):
        speaker = "OAF" if actor == 5 else "YAF"
        folder = tess / f"{speaker}_{emotion}"
        folder.mkdir(parents=True, exist_ok=True)
        _ffmpeg(
            "-i", str(clip), "-vn", "-ac", "1", str(folder / f"{speaker}_{WORDS[i]}_{emotion}.wav")
        )
    first = next(tess.rglob("OAF_*.wav"))
    (tess / "OAF_Pleasant_surprise").mkdir()
    shutil.copy(first, tess / "OAF_Pleasant_surprise" / "OAF_book_ps.wav")
    for clip, actor, emotion in _clips(demo, {7, 8}):
        folder = afew / ("Train" if actor == 7 else "Val") / emotion.capitalize()
        folder.mkdir(parents=True, exist_ok=True)
        _ffmpeg("-i", str(clip), "-c:v", "mpeg4", "-q:v", "3", "-c:a", "mp3",
                str(folder / f"{clip.stem.replace('-', '')}.avi"))  # fmt: skip
    return {"rav": rav, "tess": tess, "afew": afew}


def study_config(path: Path, roots: dict[str, Path], results: Path, corpora: list[str]) -> Path:
    adapters = {"rav": "ravdess", "tess": "tess", "afew": "afew"}
    maps = {"tess": {"surprised": None}, "afew": {}, "rav": {"calm": None}}
    three = len(corpora) == 3
    cfg = {
        "study": {
            "name": "s",
            "labels": ["neutral", "happy", "sad", "angry"],
            "protocols": ["within", "pooled", "cross"] if three else ["pooled"],
        },
        "datasets": [
            {"name": c, "adapter": adapters[c], "root": str(roots[c]), "map": maps[c]}
            for c in corpora
        ],
        "branches": [{"audio": ["rav", "tess"]}, {"visual": ["rav", "afew"] if three else ["rav"]}],
        "results": str(results),
        "shards": 2,
        "folds": {"k": 2},
        "faces": {"frames": 4},
        "audio": {"n_mels": 32},
        "train": {"epochs": 2, "patience": 2, "batch_size": 8, "seeds": [0], "visual_size": 24},
        "fusion": {"fit_on": "val", "methods": ["late"]},
        "report": {"bootstrap": 50},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def study(demo32: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two-corpus study's extraction, then the three-corpus study run to the end."""
    base = tmp_path_factory.mktemp("study")
    roots = make_corpora(demo32, base / "data")
    results = base / "results"
    two = study_config(base / "two.yaml", roots, results, ["rav", "tess"])
    shard_targets = [str(results / "s" / stage / f"{k}.h5") for stage in ("audio", "faces")
                     for k in (0, 1)]  # fmt: skip
    snakemake(two, *shard_targets)
    three = study_config(base / "three.yaml", roots, results, ["rav", "tess", "afew"])
    snakemake(three)
    return {"base": base, "out": results / "s", "config": three}


def test_adding_a_corpus_computes_only_its_clips(study: dict[str, Path]) -> None:
    out = study["out"]
    for stage in ("audio", "faces"):  # the compute jobs of the three-corpus run
        computed = json.loads((out / "computed" / f"{stage}.json").read_text())["computed"]
        assert len(computed) == 8 and all(c.startswith("afew/") for c in computed), computed
        for k in (0, 1):  # the shard jobs took every clip from the per-clip cache
            assert json.loads((out / stage / f"{k}.json").read_text())["computed"] == []
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert {c.split("/")[0] for c in manifest["clip_id"]} == {"rav", "tess", "afew"}
    assert {s for s in manifest["speaker"].dropna()} >= {"tess/OAF", "tess/YAF", "rav/Actor_01"}


def test_study_tables_per_protocol_and_corpus(study: dict[str, Path]) -> None:
    out = study["out"]
    table = (out / "report" / "results.md").read_text()
    for heading in (
        "### Protocol within: within afew", "### Protocol within: within rav",
        "### Protocol within: within tess", "### Protocol pooled: pooled folds over the union, "
        "test clips of afew", "### Protocol pooled: pooled folds over the union, all test clips",
        "### Protocol cross: cross-corpus: trained on the other corpora, tested on tess",
    ):  # fmt: skip
        assert heading in table, heading
    # the label map: TESS's pleasant surprise dropped and counted, never mixed in
    assert "| tess | 8 | 1 | 0 | 8 |"  # 8: no video for the faces stage in table
    failures = pd.read_parquet(out / "failures.parquet")
    assert failures[failures["kind"] == "label_dropped"]["clip_id"].tolist() == [
        "tess/OAF_Pleasant_surprise/OAF_book_ps"
    ]
    rows = pd.read_csv(out / "report" / "results.csv")
    by = {(p, c): set(g["method"]) for (p, c), g in rows.groupby(["protocol", "test_corpus"])}
    assert by[("within", "tess")] == {"audio"}  # audio-only corpus: no face branch, no fusion
    assert by[("within", "afew")] == {"visual"}  # audio trains on rav and tess only
    assert by[("within", "rav")] == {"audio", "visual", "late"}
    assert by[("cross", "tess")] == {"audio"}
    assert by[("cross", "rav")] == {"audio", "visual", "late"}
    assert by[("pooled", "all corpora")] == {"audio", "visual", "late"}
    # each branch trained on its own corpora only
    folds = pd.read_parquet(out / "folds.parquet")
    protocol = json.loads((out / "protocol.json").read_text())
    cross_rav = next(int(f) for f, r in protocol["folds"].items()
                     if r["protocol"] == "cross" and r["corpus"] == "rav")  # fmt: skip
    assert set(folds[(folds["fold"] == cross_rav) & (folds["role"] == "test")]["clip_id"].map(
        lambda c: c.split("/")[0])) == {"rav"}  # fmt: skip
    preds = pd.read_parquet(out / "models" / "visual" / f"fold{cross_rav}" / "seed0" /
                            "predictions.parquet")  # fmt: skip
    trained = preds[preds["part"] == "train"]["clip_id"].map(lambda c: c.split("/")[0])
    assert set(trained) == {"afew"}
    bundle = json.loads((out / "model" / "bundle.json").read_text())
    assert bundle["corpora"] == {"audio": ["rav", "tess"], "visual": ["afew", "rav"]}


def test_study_rerun_is_byte_identical(study: dict[str, Path]) -> None:
    report = study["out"] / "report"
    before = {p.name: p.read_bytes() for p in sorted(report.glob("results.*"))}
    assert planned_jobs(study["config"]) == {}
    shutil.rmtree(report)
    snakemake(study["config"])
    assert {p.name: p.read_bytes() for p in sorted(report.glob("results.*"))} == before


def test_adding_and_removing_a_clip_reruns_nothing(study: dict[str, Path], demo32: Path) -> None:
    """A clip added (the scan of a dry run sees it) and removed again: the clip table and the
    shard lists are back to what the folds and shards were built from, so nothing reruns."""
    out, config = study["out"], study["config"]
    clip = _clips(demo32, {5})[0][0]
    added = study["base"] / "data" / "rav" / "Actor_05" / clip.name
    added.parent.mkdir()
    shutil.copy(clip, added)
    lists = {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.json"))}
    plan = planned_jobs(config)
    assert plan.get("train", 0) > 0 and plan.get("split") == 1, plan
    shutil.rmtree(added.parent)
    assert planned_jobs(config) == {}
    assert {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.json"))} == lists
