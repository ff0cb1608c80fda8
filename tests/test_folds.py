"""Folds: speaker independence, balance, official split, exclusions, leakage check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emoflow.errors import EmoflowError
from emoflow.folds import check_leakage, class_names, make_folds, uses_official_split


def manifest(counts: list[int], labels: tuple[str, ...] = ("a", "b")) -> pd.DataFrame:
    """Speaker i has counts[i] clips; labels cycle."""
    rows = []
    for s, n in enumerate(counts):
        for j in range(n):
            rows.append(
                {"clip_id": f"s{s:02d}_{j:02d}", "speaker": f"s{s:02d}",
                 "label": labels[j % len(labels)], "valence": 0.1, "arousal": -0.1,
                 "split": None}
            )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("counts", "k", "val", "seed"),
    [([4] * 10, 5, 0.2, 0), ([3, 9, 1, 5, 7, 2, 6, 4], 3, 0.3, 1), ([2] * 24, 10, 0.5, 7)],
)
def test_speaker_independent_kfold(counts: list[int], k: int, val: float, seed: int) -> None:
    table = manifest(counts)
    folds = make_folds(table, {"k": k, "val_speakers": val, "seed": seed})
    assert list(folds.columns) == ["fold", "clip_id", "speaker", "role"]
    assert sorted(folds["fold"].unique()) == list(range(k))
    assert folds.equals(folds.sort_values(["fold", "clip_id"]).reset_index(drop=True))
    for _, part in folds.groupby("fold"):
        assert sorted(part["clip_id"]) == sorted(table["clip_id"])
        by_role = {r: set(part.loc[part.role == r, "speaker"]) for r in ("train", "val", "test")}
        assert all(by_role.values())
        assert not by_role["test"] & (by_role["train"] | by_role["val"])
        assert not by_role["train"] & by_role["val"]
        n_val = max(1, round(val * (len(by_role["train"]) + len(by_role["val"]))))
        assert len(by_role["val"]) == n_val
    # every clip is tested exactly once
    tested = folds[folds.role == "test"]
    assert sorted(tested["clip_id"]) == sorted(table["clip_id"])
    # balanced by clip count: folds differ by at most the largest speaker's count
    sizes = tested.groupby("fold").size()
    assert sizes.max() - sizes.min() <= max(counts)


def test_deterministic_and_seeded() -> None:
    table = manifest([3] * 12)
    cfg = {"k": 4, "val_speakers": 0.25, "seed": 3}
    first = make_folds(table, cfg)
    assert first.equals(make_folds(table.sample(frac=1.0, random_state=1), cfg))
    others = [make_folds(table, {**cfg, "seed": s}) for s in (4, 5, 6)]
    assert any(not o.equals(first) for o in others)


def test_official_split_with_and_without_val() -> None:
    table = manifest([2] * 6)
    table["split"] = ["train"] * 6 + ["val"] * 2 + ["test"] * 4
    assert uses_official_split(table, {"use_official": True})
    folds = make_folds(table, {"k": 5, "use_official": True})
    assert folds["fold"].unique().tolist() == [0]
    assert folds["role"].tolist() == table["split"].tolist()
    # no val rows: validation speakers drawn from the training speakers
    table["split"] = ["train"] * 8 + ["test"] * 4
    folds = make_folds(table, {"k": 5, "use_official": True, "val_speakers": 0.25})
    val = set(folds.loc[folds.role == "val", "speaker"])
    assert len(val) == 1 and val < {"s00", "s01", "s02", "s03"}
    assert (folds.loc[folds.role == "test", "clip_id"] == table["clip_id"][8:].values).all()
    # use_official false -> k-fold
    assert not uses_official_split(table, {"use_official": False})
    folds = make_folds(table, {"k": 3, "use_official": False})
    assert folds["fold"].nunique() == 3


def test_exclusions_and_speakerless_clips() -> None:
    table = manifest([4] * 5)
    table.loc[0, "label"] = None
    table.loc[[1, 2, 3], "speaker"] = None
    folds = make_folds(table, {"k": 3, "seed": 0})
    assert table.loc[0, "clip_id"] not in set(folds["clip_id"])
    assert folds["speaker"].isna().sum() == 3 * 3
    # dimensional target keeps the clip without a label, drops one without valence/arousal
    table.loc[5, "valence"] = np.nan
    dims = make_folds(table, {"k": 3, "seed": 0}, target="dimensional")
    assert table.loc[0, "clip_id"] in set(dims["clip_id"])
    assert table.loc[5, "clip_id"] not in set(dims["clip_id"])


def test_too_few_speakers() -> None:
    with pytest.raises(EmoflowError, match="cannot make 5 folds"):
        make_folds(manifest([2, 2, 2]), {"k": 5})


def test_leakage_check_names_speakers() -> None:
    folds = make_folds(manifest([2] * 6), {"k": 3})
    check_leakage(folds)
    bad = folds.copy()
    row = bad.index[(bad.fold == 1) & (bad.role == "train")][0]
    speaker = bad.loc[row, "speaker"]
    bad.loc[bad.index[(bad.fold == 1) & (bad.role == "test")][0], "speaker"] = speaker
    with pytest.raises(EmoflowError, match=f"fold 1: speaker\\(s\\) {speaker}"):
        check_leakage(bad)


def test_class_names() -> None:
    table = manifest([3], labels=("sad", "ang", "hap"))
    assert class_names(table, {"labels": None}) == ["ang", "hap", "sad"]
    assert class_names(table, {"labels": ["hap", "sad", "ang"]}) == ["hap", "sad", "ang"]
