"""Protocols: speaker-independent k-fold, the official split (AFEW, OMG), a fold file; guards
against empty or one-class parts; exclusions; the leakage check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emoflow.errors import EmoflowError
from emoflow.protocols.folds import (
    check_leakage,
    class_names,
    fold_numbers,
    inner_folds,
    make_folds,
    make_split,
    resolve_protocol,
)


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


def test_inner_folds_partition_each_training_part_by_speaker() -> None:
    folds = make_folds(manifest([3, 5, 2, 4, 3, 6, 2, 3, 4, 5, 3, 2]), {"k": 4, "seed": 1})
    inner = inner_folds(folds, 3, 0.2, 0)
    assert list(inner.columns) == ["fold", "inner", "clip_id", "speaker", "role"]
    assert inner.equals(inner.sort_values(["fold", "inner", "clip_id"]).reset_index(drop=True))
    for fold, outer in folds.groupby("fold"):
        training = set(outer.loc[outer.role != "test", "clip_id"])
        mine = inner[inner.fold == fold]
        assert set(mine["clip_id"]) == training  # the outer test clips never appear
        held = mine[mine.role == "test"]
        assert sorted(held["clip_id"]) == sorted(training)  # each held out exactly once
        for _, part in mine.groupby("inner"):
            roles = {r: set(part.loc[part.role == r, "speaker"]) for r in ("train", "val", "test")}
            assert all(roles.values())
            assert not roles["test"] & (roles["train"] | roles["val"])
            assert not roles["train"] & roles["val"]
    assert inner.equals(inner_folds(folds, 3, 0.2, 0))
    assert not inner.equals(inner_folds(folds, 3, 0.2, 1))
    three = make_folds(manifest([2] * 3), {"k": 3})  # 2 training speakers per fold
    with pytest.raises(EmoflowError, match="fold 0: .*2 speaker group.*fusion.fit_on: val"):
        inner_folds(three, 2, 0.2, 0)
    four = make_folds(manifest([2] * 4), {"k": 4})  # 3: one inner fold would leave 1 to train
    with pytest.raises(EmoflowError, match="3 speaker group.*too few for 2 inner folds"):
        inner_folds(four, 2, 0.2, 0)
    assert len(inner_folds(four, 3, 0.2, 0)) == 4 * 3 * 6  # folds x inner folds x clips


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
    assert resolve_protocol(table, {}, "csv") == "official"
    folds = make_folds(table, {"k": 5})
    assert folds["fold"].unique().tolist() == [0]
    assert folds["role"].tolist() == table["split"].tolist()
    # no val rows: validation speakers drawn from the training speakers
    table["split"] = ["train"] * 8 + ["test"] * 4
    split = make_split(table, {"k": 5, "val_speakers": 0.25})
    folds = split.folds
    val = set(folds.loc[folds.role == "val", "speaker"])
    assert len(val) == 1 and val < {"s00", "s01", "s02", "s03"}
    assert (folds.loc[folds.role == "test", "clip_id"] == table["clip_id"][8:].values).all()
    assert split.protocol["name"] == "official"
    assert "0.25 of the training speakers" in split.protocol["description"]
    # protocol kfold ignores the split column
    assert resolve_protocol(table, {"protocol": "kfold"}, "csv") == "kfold"
    folds = make_folds(table, {"k": 3, "protocol": "kfold"})
    assert folds["fold"].nunique() == 3


def afew_table() -> pd.DataFrame:
    """AFEW's layout: Train and Val labelled, Test unlabelled (EmotiW)."""
    rows = []
    for split, n_speakers, labelled in (("train", 6, True), ("val", 3, True), ("test", 2, False)):
        for s in range(n_speakers):
            for j in range(3):
                rows.append(
                    {"clip_id": f"{split}/{s}_{j}", "speaker": None,
                     "label": ("angry", "happy", "sad")[j] if labelled else None,
                     "valence": None, "arousal": None, "split": split}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_afew_scores_val_and_predicts_unlabelled_test() -> None:
    table = afew_table()
    assert resolve_protocol(table, {}, "afew") == "official"
    assert fold_numbers(table, {"k": 5}, "afew") == [0]
    split = make_split(table, {"val_speakers": 0.2, "seed": 0}, "categorical", "afew")
    role = dict(zip(split.folds["clip_id"], split.folds["role"], strict=True))
    assert {c for c, r in role.items() if r == "test"} == set(table.clip_id[18:27])
    assert {c for c, r in role.items() if r == "unlabelled"} == set(table.clip_id[27:])
    train_val = {r for c, r in role.items() if c.startswith("train/")}
    assert train_val == {"train", "val"}  # validation carved from Train
    assert split.protocol["unlabelled"] == 6
    assert "validation part scored (the test part has no labels)" in (split.protocol["description"])


def test_empty_or_one_class_test_part_stops_split() -> None:
    table = afew_table()
    table.loc[table.split == "val", "label"] = None  # no labelled Val and no labelled Test
    with pytest.raises(EmoflowError, match=r"protocol official: fold 0: empty test part "
                       r"\(train \d+, val \d+, test 0 clips\)"):  # fmt: skip
        make_split(table, {}, "categorical", "afew")
    table = afew_table()
    table.loc[table.split == "val", "label"] = "happy"
    with pytest.raises(EmoflowError, match="fold 0: the test part has 1 class \\(happy"):
        make_split(table, {}, "categorical", "afew")


def write_fold_file(path: Path, rows: list[tuple]) -> Path:
    path.write_text("fold,speaker,role\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_fold_file_reproduces_a_split_and_rejects_leaks(tmp_path: Path) -> None:
    table = manifest([2] * 6)
    rows = [
        (0, "s00", "test"), (0, "s01", "val"), (0, "s02", "train"), (0, "s03", "train"),
        (1, "s04", "test"), (1, "s05", "val"), (1, "s00", "train"), (1, "s01", "train"),
    ]  # fmt: skip
    path = write_fold_file(tmp_path / "folds.csv", rows)
    cfg = {"protocol": "file", "file": str(path)}
    assert fold_numbers(table, cfg, "ravdess") == [0, 1]
    split = make_split(table, cfg, "categorical", "ravdess")
    got = {
        (f, s, r) for f, s, r in split.folds[["fold", "speaker", "role"]].itertuples(index=False)
    }
    assert got == set(rows)
    assert len(split.folds) == 2 * len(rows)  # two clips per speaker
    assert split.protocol["name"] == "file"
    leaking = write_fold_file(tmp_path / "leak.csv", [*rows, (1, "s04", "train")])
    with pytest.raises(EmoflowError, match="listed twice in one fold: s04"):
        make_split(table, {"protocol": "file", "file": str(leaking)})
    # by clip id: a speaker in train and test of one fold is a leak
    by_clip = tmp_path / "clips.csv"
    by_clip.write_text("fold,clip_id,role\n0,s00_00,train\n0,s00_01,test\n0,s01_00,val\n")
    with pytest.raises(EmoflowError, match="fold 0: speaker\\(s\\) s00 in train/val and test"):
        make_split(table, {"protocol": "file", "file": str(by_clip)})
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("clip_id,role\ns00_00,train\nnope_1,test\nnope_2,val\n")
    with pytest.raises(EmoflowError, match="clip_id\\(s\\) not in the clip table: nope_1, nope_2"):
        make_split(table, {"protocol": "file", "file": str(unknown)})


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
    assert class_names(table, None) == ["ang", "hap", "sad"]
    assert class_names(table, ["hap", "sad", "ang"]) == ["hap", "sad", "ang"]
