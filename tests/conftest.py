"""Session-wide corpora: each demo corpus is generated once per test session.

A demo corpus of N clips is a prefix of a larger one with the same seed (see
:mod:`emoflow.demo`), and its sorted file list starts with whole actors, so tests that need
fewer clips link the first ones of a session corpus with :func:`tests.workflow.linked_clips`.
Tests never write into these folders: they link the clips they need into their own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emoflow.demo.clips import EMOTIONS
from emoflow.demo.corpus import make_demo_corpus
from tests.torture import make_torture
from tests.workflow import linked_clips, snakemake, write_config


@pytest.fixture(scope="session")
def demo32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 demo clips, seed 3: 8 actors x 4 emotions (its first 12 sorted: actors 1-3)."""
    root = tmp_path_factory.mktemp("demo32")
    make_demo_corpus(root, clips=32, seed=3, workers=2)
    return root


@pytest.fixture(scope="session")
def demo16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 demo clips, seed 0: 4 actors x 4 emotions (its first 12 sorted: actors 1-3)."""
    root = tmp_path_factory.mktemp("demo16")
    make_demo_corpus(root, clips=16, seed=0, workers=2)
    return root


@pytest.fixture(scope="session")
def torture_run(
    tmp_path_factory: pytest.TempPathFactory, demo32: Path
) -> tuple[Path, Path, dict[str, dict[str, str]]]:
    """The one whole local workflow run of the suite: 12 good demo clips (actors 1-3, RAVDESS
    names under ``good/``) plus the torture corpus, generic CSV adapter, 3 shards, fold 0 of 3,
    both branches and every fusion. Returns (config, results/t, expected failure kinds).

    Its tables, report, bundle and failure accounting are checked by tests/test_torture.py and
    tests/test_pipeline.py (which also reruns it through SLURM and compares the bytes); the
    strict-mode test runs last (tests/test_torture.py) because it fails the failures job."""
    tmp = tmp_path_factory.mktemp("torture")
    data = tmp / "data"
    good = []
    for clip in linked_clips(demo32, data / "good", 12):
        code = clip.name.split("-")
        good.append((clip, f"Actor_{code[6][:2]}", EMOTIONS[code[2]]))
    expect = make_torture(data, good)
    cfg = write_config(
        tmp / "cfg.yaml", data, tmp / "results", folds={"k": 3, "only": [0]},
        dataset={"name": "t", "adapter": "csv", "root": str(data), "labels_csv": "labels.csv",
                 "labels": sorted(set(EMOTIONS.values()))},
    )  # fmt: skip
    snakemake(cfg)  # the whole workflow completes
    return cfg, tmp / "results" / "t", expect
