"""The speaker-level (cluster) bootstrap against a case computable by hand."""

from __future__ import annotations

import numpy as np

from emoflow.evaluation.bootstrap import (
    cluster_bootstrap,
    cluster_draws,
    cluster_members,
    percentile_interval,
)
from emoflow.evaluation.scoring import ClipPredictions, evaluate_methods


def two_speakers() -> tuple[np.ndarray, np.ndarray]:
    """Speaker A: 10 clips, all right; speaker B: 10 clips, all wrong (perfectly correlated
    within a speaker)."""
    correct = np.r_[np.ones(10), np.zeros(10)]
    speakers = np.array(["A"] * 10 + ["B"] * 10)
    return correct, speakers


def test_speaker_interval_is_the_hand_computed_one_and_wider_than_clip_level() -> None:
    correct, speakers = two_speakers()

    def acc(rows: np.ndarray) -> dict[str, float]:
        return {"accuracy": float(correct[rows].mean())}

    # by hand: drawing 2 of 2 speakers gives accuracy 0 (BB), 0.5 (AB, BA) or 1 (AA) with
    # probabilities 1/4, 1/2, 1/4; the 2.5 % and 97.5 % percentiles fall in the atoms 0 and 1.
    by_speaker = cluster_bootstrap(acc, speakers, n=2000, seed=0)["accuracy"]
    assert by_speaker == (0.0, 1.0)
    values = np.array([correct[r].mean() for r in cluster_draws(speakers, 2000, 0)])
    shares = [np.mean(values == v) for v in (0.0, 0.5, 1.0)]
    np.testing.assert_allclose(shares, [0.25, 0.5, 0.25], atol=0.03)
    # clip level (every clip its own cluster) treats the 20 clips as independent: far narrower
    # (binomial(20, 0.5) / 20: about 0.5 +- 0.22)
    lo, hi = cluster_bootstrap(acc, np.arange(20), n=2000, seed=0)["accuracy"]
    assert 0.25 <= lo <= 0.35 and 0.65 <= hi <= 0.75
    assert hi - lo < by_speaker[1] - by_speaker[0]


def test_members_draws_and_percentiles() -> None:
    members = cluster_members(np.array(["b", "a", "b", "c"]))
    assert [m.tolist() for m in members] == [[1], [0, 2], [3]]
    draws = [d.tolist() for d in cluster_draws(np.array(["b", "a", "b", "c"]), 5, seed=1)]
    assert draws == [d.tolist() for d in cluster_draws(np.array(["b", "a", "b", "c"]), 5, 1)]
    assert all(len(d) >= 3 for d in draws)  # three clusters drawn, each of 1 or 2 rows
    assert percentile_interval(np.array([np.nan, np.nan])) != percentile_interval(np.ones(3))
    np.testing.assert_allclose(percentile_interval(np.arange(101.0)), (2.5, 97.5))


def test_evaluation_resamples_speakers_and_pairs_the_difference() -> None:
    correct, speakers = two_speakers()
    y = np.zeros(20, dtype=np.int64)
    keys = [(0, f"c{i:02d}") for i in range(20)]

    def preds(pred: np.ndarray) -> ClipPredictions:
        prob = np.eye(2)[pred]
        return ClipPredictions(keys, y, np.full((20, 2), np.nan), prob, np.full((20, 2), np.nan))

    audio = preds(np.where(correct == 1, 0, 1))
    late = preds(np.where(correct == 1, 0, 1))  # identical to audio: difference 0 in every draw
    visual = preds(np.ones(20, dtype=np.int64))  # always wrong
    per_method = {"audio": audio, "visual": visual, "late": late}
    speaker_of = {c: s for (_, c), s in zip(keys, speakers, strict=True)}
    ev = evaluate_methods(per_method, {}, speaker_of, "categorical", n_boot=500, boot_seed=0)
    rows = {r.method: r for r in ev.rows}
    assert ev.best_branch == "audio" and ev.clusters == "speaker" and ev.n_clusters == 2
    assert rows["audio"].point["accuracy"] == 0.5
    assert rows["audio"].interval["accuracy"] == (0.0, 1.0)
    assert rows["late"].delta == (0.0, 0.0, 0.0)
    speakerless = evaluate_methods(per_method, {}, {}, "categorical", n_boot=500, boot_seed=0)
    lo, hi = {r.method: r for r in speakerless.rows}["audio"].interval["accuracy"]
    assert speakerless.clusters == "clip" and 0.2 < lo and hi < 0.8
