"""Time-continuous labels through training and scoring: per-window targets from a label track,
windows predicted as units, frame-level scores equal to CCC / F1 computed over the frames."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from emoflow.evaluation.frame_scoring import FrameContext, score_frames
from emoflow.evaluation.metrics import ccc
from emoflow.evaluation.scoring import average_seeds
from emoflow.labels.track_table import TRACKS_FILE, read_tracks, tracks_table
from emoflow.labels.units import split_unit, unit_id
from emoflow.storage.shards import open_shards
from emoflow.storage.tables import table_bytes
from emoflow.training.datasets import AudioClips, AudioWindows
from emoflow.training.targets import track_targets
from emoflow.training.train import run_training

sys.path.insert(0, str(Path(__file__).parent))
from shardmaker import AROUSAL, CLASSES, VALENCE, make_config, make_corpus  # noqa: E402

FPS = 10.0


def _track(clip_id: str, n_windows: int) -> pd.DataFrame:
    """Labels at 10 fps: the clip's class and V/A in window 0, nothing annotated in window 1
    (so it has no target), the class again after that."""
    c = CLASSES.index(clip_id.split("/")[1].split("_")[0])
    t = np.arange(int((n_windows * 1.5 + 1.5) * FPS)) / FPS
    gap = (t >= 3.0) & (t < 4.5)  # window 1 is [1.5, 4.5): half of it unannotated... and more
    gap |= (t >= 1.5) & (t < 3.0)
    return pd.DataFrame(
        {
            "time_s": t,
            "valence": np.where(gap, np.nan, VALENCE[c]).astype(np.float32),
            "arousal": np.where(gap, np.nan, AROUSAL[c]).astype(np.float32),
            "expression": [None if g else CLASSES[c] for g in gap],
        }
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("tc")
    c = make_corpus(root)
    shards = open_shards(c["audio"], "audio")
    tracks = {cid: _track(cid, len(shards.window_starts(cid))) for cid in shards.clip_ids}
    (root / TRACKS_FILE).write_bytes(table_bytes(tracks_table(tracks)))
    manifest = pd.read_parquet(c["manifest"])
    manifest["track"] = True  # as the scan marks time-continuous clips
    manifest.to_parquet(c["manifest"])
    c.update(root=root, tracks=tracks, shards=shards)
    return c


def test_window_targets_and_units(corpus: dict[str, Any]) -> None:
    config = make_config()
    manifest = pd.read_parquet(corpus["manifest"])
    targets = track_targets(config, manifest, corpus["root"], corpus["shards"], CLASSES)
    clip = corpus["shards"].clip_ids[0]
    c = CLASSES.index(clip.split("/")[1].split("_")[0])
    assert targets.windowed(clip) and targets.usable(clip, "categorical")
    assert targets.of(clip, 0)[0] == c and np.isclose(targets.of(clip, 0)[1], VALENCE[c])
    assert targets.of(clip, 1) == (-1, pytest.approx(np.nan, nan_ok=True),
                                   pytest.approx(np.nan, nan_ok=True))  # fmt: skip
    train = AudioWindows(corpus["shards"], [clip], targets)
    assert train.index == [(clip, 0)]  # the unannotated window is left out of training
    evals = AudioClips(corpus["shards"], [clip], targets)
    assert evals.clip_ids == [unit_id(clip, 0), unit_id(clip, 1)]
    x, y, va = evals[1]
    assert x.shape[0] == 1 and int(y) == -1 and bool(va.isnan().all())
    assert read_tracks(corpus["root"] / TRACKS_FILE, [clip])[clip].shape[0] == len(
        corpus["tracks"][clip]
    )


def test_training_predicts_units_and_scores_frames(corpus: dict[str, Any], tmp_path: Path) -> None:
    config = make_config(epochs=4, target="both")
    run_training(config, "audio", 0, 0, corpus["manifest"], corpus["folds"], corpus["audio"],
                 tmp_path)  # fmt: skip
    preds = pq.read_table(tmp_path / "predictions.parquet").to_pandas()
    assert all(split_unit(c) is not None for c in preds.clip_id)
    test = preds[preds.part == "test"]
    assert sorted({split_unit(c)[1] for c in test.clip_id}) == [0, 1]
    keys = [(0, c) for c in test.clip_id]
    p = average_seeds(keys, test.y.to_numpy(), np.stack([test.valence_true, test.arousal_true], 1),
                      np.stack(test.prob), np.stack([test.valence, test.arousal], 1))  # fmt: skip
    tracks = read_tracks(corpus["root"] / TRACKS_FILE)
    stats = FrameContext(tracks, (1.5, 3.0), "hold").stats(p, CLASSES)
    assert [k[1] for k in stats.keys] == sorted({split_unit(c)[0] for c in test.clip_id})
    got = score_frames(stats, np.arange(len(stats.keys)), True, True)
    # the same numbers computed directly over the concatenated annotated frames
    true_v, pred_v, true_c, pred_c = [], [], [], []
    for clip, rows in test.groupby(test.clip_id.map(lambda u: split_unit(u)[0])):
        rows = rows.sort_values("clip_id")
        track = tracks[clip]
        centre = np.array([split_unit(u)[1] for u in rows.clip_id]) * 1.5 + 1.5
        nearest = np.abs(track.time_s.to_numpy()[:, None] - centre[None]).argmin(axis=1)
        ok = track.valence.notna().to_numpy()
        true_v.append(track.valence.to_numpy()[ok])
        pred_v.append(rows.valence.to_numpy()[nearest][ok])
        true_c.append(np.array([CLASSES.index(e) for e in track.expression[ok]]))
        pred_c.append(np.stack(rows.prob).argmax(axis=1)[nearest][ok])
    assert got["valence_ccc"] == pytest.approx(ccc(np.concatenate(true_v), np.concatenate(pred_v)),
                                               abs=1e-9)  # fmt: skip
    t, q = np.concatenate(true_c), np.concatenate(pred_c)
    assert got["accuracy"] == pytest.approx(float((t == q).mean()))
    assert 0.0 <= got["macro_f1"] <= 1.0 and np.isfinite(got["video_valence_ccc"])


def test_choose_keeps_to_the_annotated_side() -> None:
    from emoflow.datasets.records import content_key, split_key
    from emoflow.faces.detect import Detections, choose

    # a large face on the right, a smaller one on the left of a 640 x 320 frame
    found = Detections(np.array([[400, 50, 600, 250], [60, 80, 200, 220]], float), np.ones(2))
    shape = (320, 640, 3)
    assert choose(found, "track", shape) == 0
    assert choose(found, "track", shape, side="left") == 1
    assert choose(found, "track", shape, side="right") == 0
    # a lost track never jumps to the other person: no face on that side, no face
    right_only = Detections(found.boxes[:1], found.scores[:1])
    assert choose(right_only, "track", shape, prev=found.boxes[1], side="left") is None
    assert split_key(content_key("ab" * 32, "left")) == ("ab" * 32, "left")
    assert split_key("ab" * 32) == ("ab" * 32, None)
