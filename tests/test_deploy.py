"""The deployable model's pieces: the epoch early stopping kept, the refit epoch count, the
refit clip table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emoflow.deploy.refit import best_epoch, refit_epochs, refit_folds


def history(path: Path, metric: list[float], loss: list[float]) -> Path:
    lines = ["epoch,train_loss,val_loss,val_metric"]
    lines += [f"{e + 1},1.0,{lo},{m}" for e, (m, lo) in enumerate(zip(metric, loss, strict=True))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_best_epoch_is_the_one_training_kept(tmp_path: Path) -> None:
    # best metric at epochs 2 and 4: the lower validation loss decides (epoch 4), as in train
    h = history(tmp_path / "a.csv", [0.2, 0.5, 0.4, 0.5, 0.1], [1.0, 0.9, 0.8, 0.7, 0.6])
    assert best_epoch(h) == 4
    # a full tie keeps the first
    h = history(tmp_path / "b.csv", [0.5, 0.5, 0.5], [0.9, 0.9, 0.9])
    assert best_epoch(h) == 1
    # NaN metrics (empty validation) rank lowest
    h = history(tmp_path / "c.csv", [float("nan"), 0.1], [float("nan"), 2.0])
    assert best_epoch(h) == 2


def test_refit_epochs_is_the_median_rounded_half_up(tmp_path: Path) -> None:
    paths = [
        history(tmp_path / f"{i}.csv", [0.1 * (j == best) for j in range(8)], [1.0] * 8)
        for i, best in enumerate((2, 3, 6, 7))  # best epochs 3, 4, 7, 8 -> median 5.5 -> 6
    ]
    assert refit_epochs(paths) == 6
    assert refit_epochs(paths[:3]) == 4


def test_refit_folds_take_every_labelled_clip_once() -> None:
    folds = pd.DataFrame(
        {
            "fold": [0, 0, 0, 1, 1, 1, 0],
            "clip_id": ["a", "b", "c", "a", "b", "c", "u"],
            "speaker": ["s1", "s2", "s3", "s1", "s2", "s3", None],
            "role": ["train", "val", "test", "test", "train", "val", "unlabelled"],
        }
    )
    table = refit_folds(folds)
    assert table.to_dict("list") == {
        "fold": [-1, -1, -1], "clip_id": ["a", "b", "c"], "speaker": ["s1", "s2", "s3"],
        "role": ["train", "train", "train"],
    }  # fmt: skip
