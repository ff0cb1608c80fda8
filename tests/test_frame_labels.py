"""Window targets from label tracks, window outputs mapped to frames, and the frame-level scores
of :mod:`emoflow.evaluation.frame_scoring` (the report's one implementation) checked against
transcriptions of the ABAW (Aff-Wild2) challenge's published metric code."""

from __future__ import annotations

import time
import warnings
from collections import Counter
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from emoflow.evaluation import metrics
from emoflow.evaluation.frame_scoring import (
    N_MOMENTS,
    FrameStats,
    ccc_of,
    clip_stats,
    combine,
    moments,
    score_frames,
)
from emoflow.labels.frames import frame_classes, frame_values, hold_index
from emoflow.labels.windows import window_targets

CLASSES = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "other")


# --------------------------------------------------------------------------- ABAW transcriptions
# Faithful transcriptions (same operations, same order, same dtypes) of the published code.


def abaw_concordance_cc2(r1: np.ndarray, r2: np.ndarray) -> float:
    """dkollias/Aff-Wild-models, eval_script.py, ``concordance_cc2`` (Aff-Wild organisers),
    commit 520819e246f5309fe9abbe3328f8e23d4cca0b7b."""
    mean_cent_prod = ((r1 - r1.mean()) * (r2 - r2.mean())).mean()
    return (2 * mean_cent_prod) / (r1.var() + r2.var() + (r1.mean() - r2.mean()) ** 2)


def abaw_ccc_score(x: np.ndarray, y: np.ndarray) -> float:
    """The ABAW ``CCC_score`` (rho form, no epsilon) as circulated with ``VA_metric`` /
    ``EXPR_metric``; here from wtomin/Multitask-Emotion-Recognition-with-Incomplete-Labels,
    eval_val_set.py, commit 807a1a9eea8ac5e3ebb5001d20d6abb87c072732."""
    vx = x - np.mean(x)
    vy = y - np.mean(y)
    rho = np.sum(vx * vy) / (np.sqrt(np.sum(vx**2)) * np.sqrt(np.sum(vy**2)))
    x_m = np.mean(x)
    y_m = np.mean(y)
    x_s = np.std(x)
    y_s = np.std(y)
    return 2 * rho * x_s * y_s / (x_s**2 + y_s**2 + (x_m - y_m) ** 2)


def abaw_ccc_val(true: np.ndarray, pred: np.ndarray) -> float:
    """dkollias/Fair-Consistent-Affect-Analysis (ABAW 6/7 organisers' group),
    model_utils/validation.py, ``CCC_val``, commit a95ea00792a8758d176366d75934ebde8e79bdb8
    (float32 casts, 1e-8 in rho's denominator)."""
    true = true.astype(np.float32)
    pred = pred.astype(np.float32)
    v_true = true - true.mean()
    v_pred = pred - pred.mean()
    rho = np.sum(v_true * v_pred) / (
        np.sqrt(np.sum(np.power(v_true, 2))) * np.sqrt(np.sum(np.power(v_pred, 2))) + 1e-8
    )
    true_m = np.mean(true)
    pred_m = np.mean(pred)
    true_s = np.std(true)
    pred_s = np.std(pred)
    return (
        2
        * rho
        * true_s
        * pred_s
        / (np.power(true_s, 2) + np.power(pred_s, 2) + np.power(true_m - pred_m, 2))
    )


def abaw_expr_f1(pred: np.ndarray, true: np.ndarray) -> float:
    """The F1 part of ABAW's ``EXPR_metric(x=pred, y=true)`` (same file and commit as
    :func:`abaw_ccc_score`): ``f1_score(x, y, average='macro')`` on 1-D labels."""
    return f1_score(pred, true, average="macro")


def _ccc_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(25)
    cases = []
    for i in range(200):
        n = int(rng.integers(2, 3000))
        t = np.clip(rng.normal(0, 0.4, n), -1, 1)
        p = np.clip(0.6 * t + rng.normal(rng.normal(0, 0.3), 0.3, n), -1, 1)
        cases.append((f"random{i}", t, p))
    n = 27_000
    t = np.sin(np.linspace(0, 40, n)) * 0.8
    cases += [
        ("two frames", np.array([0.1, 0.2]), np.array([-0.3, 0.5])),
        ("anti", t, -t),
        ("scaled", t, 0.01 * t),
        ("offset", t, t + 0.9),
        ("big offset tiny var", 1000.0 + 1e-4 * t, 1000.0 + 1e-4 * np.roll(t, 7)),
        ("near-constant pred", t, 0.3 + 1e-9 * rng.normal(size=n)),
        ("heavy tails", rng.standard_cauchy(5000), rng.standard_cauchy(5000)),
        ("float32 grid", t.astype(np.float32).astype(np.float64), np.round(t, 2)),
        ("one outlier", np.r_[np.zeros(999), 1.0], np.r_[np.zeros(999), 0.5]),
    ]
    return cases


def _ccc(true: np.ndarray, pred: np.ndarray) -> float:
    """frame_scoring's CCC of the pairs, every one counted."""
    return ccc_of(moments(true, pred))


EXPR = [f"c{i}" for i in range(8)]


def _stats(
    true: list[np.ndarray], pred: list[np.ndarray],
    true_c: list[np.ndarray] | None = None, pred_c: list[np.ndarray] | None = None,
) -> FrameStats:  # fmt: skip
    """FrameStats of videos through :func:`clip_stats` (the report's path): one window per
    frame, centred on it (hold), so each frame gets exactly its own prediction. NaN truth /
    class -1 marks an unannotated frame; the arousal track is the valence one negated."""
    rows = []
    for i, (t, p) in enumerate(zip(true, pred, strict=True)):
        n = len(t)
        tc = true_c[i] if true_c is not None else np.full(n, -1)
        pc = pred_c[i] if pred_c is not None else np.zeros(n, np.int64)
        track = pd.DataFrame({"time_s": np.arange(n, dtype=np.float64), "valence": t,
                              "arousal": -t, "expression": [EXPR[c] if c >= 0 else None
                                                            for c in tc]})  # fmt: skip
        prob = np.eye(8)[pc] if true_c is not None else np.zeros((0, 0))
        va = np.stack([p, -p], axis=1)
        classes = EXPR if true_c is not None else []
        rows.append(clip_stats(track, np.arange(n), prob, va, (1.0, 0.0), classes, "hold"))
    k = 8 if true_c is not None else 0
    return FrameStats(
        [(0, f"v{i}") for i in range(len(rows))],
        np.array([r[0] for r in rows]).reshape(len(rows), 2, N_MOMENTS),
        np.array([r[1] for r in rows]).reshape(len(rows), 2),
        np.array([r[2] for r in rows], np.int64).reshape(len(rows), k, k),
    )


def _pieces(rng: np.random.Generator, n: int, k: int) -> list[slice]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=min(k, n) - 1, replace=False))
    edges = np.r_[0, cuts, n]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def test_ccc_matches_abaw_transcriptions():
    worst = {"cc2": 0.0, "rho": 0.0, "float32": 0.0}
    for name, t, p in _ccc_cases():
        ours = _ccc(t, p)
        for key, theirs in (
            ("cc2", abaw_concordance_cc2(t, p)),
            ("rho", abaw_ccc_score(t, p)),
            ("float32", abaw_ccc_val(t, p)),
        ):
            assert np.isfinite(theirs), (name, key)
            if key == "float32" and name == "big offset tiny var":
                # float32 cannot hold 1e-4 variations around 1000: their casts, not the formula
                print("float32 CCC_val on 1000 + 1e-4 * signal:", abs(ours - float(theirs)))
                continue
            worst[key] = max(worst[key], abs(ours - float(theirs)))
    print("largest |ccc_of(moments) - ABAW|:", worst)
    assert worst["cc2"] < 1e-12
    assert worst["rho"] < 1e-12
    assert worst["float32"] < 1e-6


def test_clips_combine_to_abaw_ccc_of_concatenated_frames():
    """Cases cut into clips, scored via clip_stats + score_frames (moments combined per clip),
    and resampled with repeats as the bootstrap does: ABAW's CCC of the concatenation. Where
    the two differ by more than 1e-13 (ABAW's own rounding on large offsets), the exact value
    is computed and must side with ours."""
    rng = np.random.default_rng(8)
    worst = {"split": 0.0, "resample": 0.0, "ours-exact": 0.0, "abaw-exact": 0.0}
    for name, t, p in _ccc_cases()[::5] + _ccc_cases()[-9:]:
        cut = _pieces(rng, len(t), int(rng.integers(1, 40)))
        s = _stats([t[c] for c in cut], [p[c] for c in cut])
        got = score_frames(s, np.arange(len(cut)), False, True)
        assert got["arousal_ccc"] == pytest.approx(got["valence_ccc"], abs=1e-12)
        rows = rng.integers(0, len(cut), len(cut))  # repeats count twice
        cat_t = np.concatenate([t[cut[r]] for r in rows])
        cat_p = np.concatenate([p[cut[r]] for r in rows])
        again = score_frames(s.take(rows), np.arange(len(rows)), False, True)["valence_ccc"]
        assert again == score_frames(s, rows, False, True)["valence_ccc"]
        for key, ours, (a, b) in (("split", got["valence_ccc"], (t, p)),
                                  ("resample", again, (cat_t, cat_p))):  # fmt: skip
            with np.errstate(invalid="ignore"):  # ABAW's 0/0 on one constant
                theirs = abaw_concordance_cc2(a, b) if len(a) >= 2 else np.nan
            if not np.isfinite(theirs):  # < 2 frames: NaN; one constant: ABAW 0/0, ours 1.0
                assert np.isnan(ours) if len(a) < 2 else ours == 1.0, name
                continue
            worst[key] = max(worst[key], abs(ours - theirs))
            if abs(ours - theirs) > 1e-13:
                exact = _exact_ccc(a, b)
                worst["ours-exact"] = max(worst["ours-exact"], abs(ours - exact))
                worst["abaw-exact"] = max(worst["abaw-exact"], abs(theirs - exact))
    print("largest |score_frames valence_ccc - ABAW cc2 of the concatenation|:", worst)
    assert worst["split"] < 1e-9 and worst["resample"] < 1e-9
    assert worst["ours-exact"] < 1e-13


def _summary(m: np.ndarray) -> np.ndarray:
    """n, mean(t) - mean(p), the three centred sums and the absolute-error sum of moments()."""
    return np.array([m[0], (m[1] - m[2]) + (m[3] - m[4]), m[5], m[6], m[7], m[8]])


def _exact_moments(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """:func:`_summary` in exact rational arithmetic on the float64 inputs."""
    ft, fp = [Fraction(float(x)) for x in t], [Fraction(float(x)) for x in p]
    n = len(ft)
    mt, mp = sum(ft) / n, sum(fp) / n
    out = [n, mt - mp, sum((x - mt) ** 2 for x in ft), sum((y - mp) ** 2 for y in fp),
           sum((x - mt) * (y - mp) for x, y in zip(ft, fp, strict=True)),
           sum(abs(x - y) for x, y in zip(ft, fp, strict=True))]  # fmt: skip
    return np.array([float(v) for v in out])


def _exact_ccc(t: np.ndarray, p: np.ndarray) -> float:
    """The CCC of the float64 inputs in exact rational arithmetic, rounded once."""
    ft, fp = [Fraction(float(x)) for x in t], [Fraction(float(x)) for x in p]
    n = len(ft)
    mt, mp = sum(ft) / n, sum(fp) / n
    ctt = sum((x - mt) ** 2 for x in ft)
    cpp = sum((y - mp) ** 2 for y in fp)
    ctp = sum((x - mt) * (y - mp) for x, y in zip(ft, fp, strict=True))
    return float(2 * ctp / (ctt + cpp + n * (mt - mp) ** 2))


def test_combine_is_centred_and_order_free():
    rng = np.random.default_rng(4)
    t = 1000.0 + 1e-4 * rng.normal(size=5000)
    p = 1000.0 + 1e-4 * rng.normal(size=5000)
    cut = _pieces(rng, 5000, 30)
    rows = np.array([moments(t[c], p[c]) for c in cut] + [np.zeros(N_MOMENTS)])  # + empty
    whole = moments(t, p)
    exact = _exact_moments(t, p)
    for order in (np.arange(len(rows)), rng.permutation(len(rows))):
        got = combine(rows[order])
        np.testing.assert_allclose(_summary(got), _summary(whole), rtol=1e-12, atol=0)
        np.testing.assert_allclose(_summary(got), exact, rtol=1e-12, atol=0)
    # raw sums of squares lose these 1e-8 variances entirely (what centring avoids)
    raw = (t * t).sum() / len(t) - t.mean() ** 2
    assert abs(raw - whole[5] / len(t)) > 1e-3 * whole[5] / len(t)
    assert combine(np.zeros((0, 2, N_MOMENTS))).shape == (2, N_MOMENTS)
    assert np.isnan(ccc_of(combine(np.zeros((0, N_MOMENTS)))))


def test_ccc_degenerate_inputs_versus_abaw():
    t = np.linspace(-1, 1, 50)
    const = np.full(50, 0.25)  # exactly representable: its mean is exact
    # constant prediction: the cov form gives 0, the rho form without epsilon 0/0 = NaN
    with np.errstate(invalid="ignore", divide="ignore"):
        assert abaw_concordance_cc2(t, const) == pytest.approx(0.0, abs=1e-15)
        assert np.isnan(abaw_ccc_score(t, const))
        assert np.isnan(abaw_concordance_cc2(const, const))
    assert _ccc(t, const) == pytest.approx(0.0, abs=1e-15)
    assert _ccc(const, const) == 1.0  # ABAW: NaN; ours follows evaluation.metrics.ccc
    assert _ccc(const, const + 0.1) == 0.0
    assert np.isnan(_ccc(np.zeros(0), np.zeros(0)))
    assert np.isnan(_ccc(np.array([0.3]), np.array([0.3])))  # fewer than 2 frames
    assert _ccc(t, t) == pytest.approx(1.0)
    assert _ccc(t, -t) == pytest.approx(-1.0)
    for a, b in ((t, const), (const, const), (const, const + 0.1), (t, t), (t, -t)):
        assert _ccc(a, b) == pytest.approx(metrics.ccc(a, b), abs=1e-15)


def test_losses_ccc_is_close_to_abaw():
    torch = pytest.importorskip("torch")
    from emoflow.models.losses import ccc as torch_ccc

    worst = 0.0
    for _, t, p in _ccc_cases()[:50]:
        ours = _ccc(t, p)
        got = float(torch_ccc(torch.as_tensor(p), torch.as_tensor(t)))
        worst = max(worst, abs(ours - got))
    print("largest |frame ccc - losses.ccc| (float32, +1e-8):", worst)
    assert worst < 1e-4


# --------------------------------------------------------------------------- per-video CCC


def test_frame_ccc_concatenates_videos_and_per_video_averages():
    rng = np.random.default_rng(1)
    true = [rng.normal(0.5, 0.2, 300), rng.normal(-0.5, 0.2, 200)]
    pred = [rng.normal(0.0, 0.2, 300), rng.normal(0.0, 0.2, 200)]
    true[0][:10] = np.nan  # unannotated frames are dropped
    keep = [~np.isnan(x) for x in true]
    cat_t = np.concatenate([x[k] for x, k in zip(true, keep, strict=True)])
    cat_p = np.concatenate([x[k] for x, k in zip(pred, keep, strict=True)])
    got = score_frames(_stats(true, pred), np.arange(2), False, True)
    assert got["valence_ccc"] == pytest.approx(abaw_concordance_cc2(cat_t, cat_p), abs=1e-12)
    each = [abaw_concordance_cc2(x[k], y[k]) for x, y, k in zip(true, pred, keep, strict=True)]
    assert got["video_valence_ccc"] == pytest.approx(np.mean(each), abs=1e-12)
    assert abs(got["valence_ccc"] - got["video_valence_ccc"]) > 0.01  # they do differ
    # arousal is the negated track and prediction: the same r and MAE on both dimensions
    assert got["pearson_r"] == pytest.approx(metrics.pearson_r(cat_t, cat_p), abs=1e-12)
    assert got["mae"] == pytest.approx(metrics.mae(cat_t, cat_p), abs=1e-12)
    flat = _stats([np.full(4, 0.2)], [np.linspace(0, 1, 4)])  # constant truth: r is 0
    assert score_frames(flat, np.arange(1), False, True)["pearson_r"] == 0.0
    one = score_frames(_stats([np.concatenate(true)], [np.concatenate(pred)]), np.arange(1),
                       False, True)  # fmt: skip
    assert one["valence_ccc"] == pytest.approx(got["valence_ccc"], abs=1e-14)


def test_per_video_ccc_matches_abaw():
    """video_valence_ccc: mean over videos of ABAW's CCC of each (clips < 2 frames left out);
    every tenth resample sits at 1000 +- 1e-4, where the exact value is checked as well."""
    rng = np.random.default_rng(6)
    worst = {"abaw": 0.0, "ours-exact": 0.0, "abaw-exact": 0.0}
    for i in range(60):
        k = int(rng.integers(1, 12))
        offset, scale = (1000.0, 1e-4) if i % 10 == 0 else (0.0, 1.0)
        true, pred = [], []
        for _ in range(k):
            n = int(rng.integers(1, 800))
            t = offset + scale * np.clip(rng.normal(0, 0.4, n), -1, 1)
            true.append(t)
            pred.append(offset + scale * rng.normal(0, 0.3, n) + 0.5 * (t - offset))
        rows = rng.integers(0, k, k)  # a resample: repeats count twice
        got = score_frames(_stats(true, pred), rows, False, True)["video_valence_ccc"]
        kept = [r for r in rows if len(true[r]) >= 2]
        if not kept:
            assert np.isnan(got)
            continue
        theirs = float(np.mean([abaw_concordance_cc2(true[r], pred[r]) for r in kept]))
        worst["abaw"] = max(worst["abaw"], abs(got - theirs))
        if offset:
            exact = float(np.mean([_exact_ccc(true[r], pred[r]) for r in kept]))
            worst["ours-exact"] = max(worst["ours-exact"], abs(got - exact))
            worst["abaw-exact"] = max(worst["abaw-exact"], abs(theirs - exact))
    print("largest |video_valence_ccc - mean of ABAW cc2 per video|:", worst)
    assert worst["abaw"] < 1e-9
    assert worst["ours-exact"] < 1e-13


def test_per_video_ccc_edge_cases():
    t = np.linspace(-1, 1, 20)
    one = np.r_[0.3, np.full(9, np.nan)]  # one annotated frame: left out
    flat = np.full(20, 0.4)  # constant truth: kept, scored by the formula
    s = _stats([t, one, flat], [t, np.zeros(10), t])
    assert s.video_ccc[0, 0] == pytest.approx(1.0)
    assert np.isnan(s.video_ccc[1, 0])
    assert s.video_ccc[2, 0] == pytest.approx(0.0, abs=1e-15)
    assert score_frames(s, np.arange(3), False, True)["video_valence_ccc"] == pytest.approx(0.5)
    assert np.isnan(score_frames(s, np.array([1]), False, True)["video_valence_ccc"])
    assert np.isnan(score_frames(s, np.array([], np.int64), False, True)["video_valence_ccc"])
    blank = _stats([np.full(5, np.nan)], [np.zeros(5)])
    assert np.isnan(score_frames(blank, np.arange(1), False, True)["valence_ccc"])


def test_frames_without_outputs_do_not_count():
    t = np.array([0.1, 0.5, np.nan, -0.2, 0.4])
    track = pd.DataFrame({"time_s": np.arange(5.0), "valence": t, "arousal": t,
                          "expression": [None] * 5})  # fmt: skip
    va = np.stack([[0.0, 0.2, 0.7, 0.3, np.nan]] * 2, axis=1)
    got, own, _ = clip_stats(track, np.arange(5), np.zeros((0, 0)), va, (1.0, 0.0), [], "hold")
    # hold: the NaN last window is unusable, its frame takes the nearest usable window's output
    want = moments(np.array([0.1, 0.5, -0.2, 0.4]), np.array([0.0, 0.2, 0.3, 0.3]))
    np.testing.assert_allclose(got[0], want, rtol=1e-12, atol=1e-15)
    assert own[0] == ccc_of(want)
    nothing = np.full((5, 2), np.nan)  # no window has an output: the clip has no frames
    got, own, _ = clip_stats(track, np.arange(5), np.zeros((0, 0)), nothing, (1.0, 0.0), [],
                             "hold")  # fmt: skip
    assert got[0, 0] == 0 and np.isnan(own).all()


# --------------------------------------------------------------------------- frame F1


def _confusion_stats(t: np.ndarray, p: np.ndarray, k: int = 8) -> FrameStats:
    cm = np.zeros((1, k, k), np.int64)
    np.add.at(cm[0], (t, p), 1)
    return FrameStats([(0, "v")], np.zeros((1, 2, N_MOMENTS)), np.full((1, 2), np.nan), cm)


def test_frame_f1_matches_abaw_expr_metric():
    rng = np.random.default_rng(3)
    worst = {"macro_f1": 0.0, "accuracy": 0.0, "uar": 0.0}
    for i in range(200):
        n = int(rng.integers(1, 2000))
        k = int(rng.integers(1, 9))  # some runs leave classes out of truth and prediction
        t = rng.integers(0, k, n)
        p = np.where(rng.random(n) < 0.5, t, rng.integers(0, 8, n))
        got = score_frames(_confusion_stats(t, p), np.arange(1), True, False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # y_pred holds classes absent from y_true
            theirs = {"macro_f1": abaw_expr_f1(p, t), "accuracy": accuracy_score(t, p),
                      "uar": balanced_accuracy_score(t, p)}  # fmt: skip
        for key, value in theirs.items():
            worst[key] = max(worst[key], abs(got[key] - value))
        assert got["macro_f1"] == pytest.approx(metrics.macro_f1(t, p))
        if i < 5:  # the same through clip_stats (-1 frames unannotated), cut into 3 videos
            t_lab = np.where(rng.random(n) < 0.1, -1, t)
            keep = t_lab >= 0
            cut = _pieces(rng, n, 3) if n >= 3 else [slice(0, n)]
            s = _stats([np.full(c.stop - c.start, np.nan) for c in cut],
                       [np.zeros(c.stop - c.start) for c in cut],
                       [t_lab[c] for c in cut], [p[c] for c in cut])  # fmt: skip
            via = score_frames(s, np.arange(len(cut)), True, False)["macro_f1"]
            if keep.any():
                assert via == pytest.approx(abaw_expr_f1(p[keep], t[keep]), abs=1e-12)
    print("largest |score_frames - sklearn (EXPR_metric's f1_score)|:", worst)
    assert max(worst.values()) < 1e-12


def test_frame_f1_class_sets():
    t = np.array([0, 0, 1, 1])
    p = np.array([0, 1, 1, 1])
    got = score_frames(_confusion_stats(t, p), np.arange(1), True, False)
    assert got["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)  # classes 2-7 absent: not counted
    assert got["accuracy"] == pytest.approx(0.75) and got["uar"] == pytest.approx(0.75)
    # a class only predicted counts (F1 0); 'other' (7) frames count as errors and as a class
    t2, p2 = np.array([0, 7, 7]), np.array([0, 0, 5])
    got = score_frames(_confusion_stats(t2, p2), np.arange(1), True, False)
    assert got["macro_f1"] == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert got["macro_f1"] == pytest.approx(abaw_expr_f1(p2, t2))
    s = _confusion_stats(t, p)
    twice = score_frames(s, np.array([0, 0]), True, False)  # a repeated clip counts twice
    assert twice == score_frames(s, np.array([0]), True, False)
    empty = score_frames(_confusion_stats(t[:0], p[:0]), np.arange(1), True, False)
    assert np.isnan(empty["macro_f1"]) and np.isnan(empty["accuracy"])


# --------------------------------------------------------------------------- window targets


def _track(times, valence, arousal, expression) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time_s": np.asarray(times, dtype=np.float64),
            "valence": np.asarray(valence, dtype=np.float32),
            "arousal": np.asarray(arousal, dtype=np.float32),
            "expression": pd.Series(list(expression), dtype=object),
        }
    )


def _brute_targets(track, starts, window_s, classes, min_annotated):
    t = track["time_s"].to_numpy()
    y, va = [], []
    for s in starts:
        rows = track[(t >= s) & (t < s + window_s)]
        n = len(rows)
        means = []
        for col in ("valence", "arousal"):
            v = rows[col].to_numpy(dtype=np.float64)
            v = v[~np.isnan(v)]
            ok = n > 0 and v.size > 0 and v.size >= min_annotated * n - 1e-9
            means.append(v.mean() if ok else np.nan)
        va.append(means)
        names = [e for e in rows["expression"] if isinstance(e, str)]
        label = -1
        if names and len(names) >= min_annotated * n - 1e-9:
            counts = Counter(names)
            top = max(counts.values())
            winners = [c for c in counts if counts[c] == top]
            inside = sorted(classes.index(c) for c in winners if c in classes)
            label = inside[0] if inside else -1
        y.append(label)
    return np.array(y, dtype=np.int64), np.array(va, dtype=np.float32).reshape(-1, 2)


def _random_track(rng, n, fps=30.0):
    """Frames at ``fps`` with unannotated stretches (blocks of 45 frames) as in Aff-Wild2."""
    times = np.arange(n) / fps
    blocks = -(-n // 45)

    def gaps(p):
        return np.repeat(rng.random(blocks) < p, 45)[:n]

    valence = rng.uniform(-1, 1, n)
    arousal = rng.uniform(-1, 1, n)
    va_gap = gaps(0.3)
    valence[va_gap] = np.nan  # Aff-Wild2's -5 frames, read as NaN
    arousal[va_gap | gaps(0.1) | (rng.random(n) < 0.01)] = np.nan
    names = np.array([*CLASSES[:4], "contempt", "other"], dtype=object)
    expr = np.repeat(names[rng.integers(0, len(names), -(-n // 7))], 7)[:n]  # runs of 7
    expr[gaps(0.3)] = None  # -1 frames
    return _track(times, valence, arousal, expr)


@pytest.mark.parametrize("min_annotated", [0.0, 0.5, 0.9, 1.0])
def test_window_targets_match_brute_force(min_annotated):
    rng = np.random.default_rng(int(min_annotated * 10))
    track = _random_track(rng, 900)
    starts = np.arange(0, 31.5, 1.5)  # the last windows run past the track's end
    y, va = window_targets(track, starts, 3.0, CLASSES, min_annotated)
    by, bva = _brute_targets(track, starts, 3.0, list(CLASSES), min_annotated)
    assert y.dtype == np.int64 and va.dtype == np.float32
    assert y.shape == (len(starts),) and va.shape == (len(starts), 2)
    np.testing.assert_array_equal(y, by)
    np.testing.assert_allclose(va, bva, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert (y >= 0).any() and np.isfinite(va).any()


def test_window_membership_threshold_and_ties():
    # rows at 0, 1, 2, 3 s; window [0, 3) holds rows 0-2, never the row at exactly 3 s
    track = _track([0, 1, 2, 3], [0.1, np.nan, 0.3, 0.9], [0.2, np.nan, np.nan, 0.9],
                   ["anger", "fear", None, "fear"])  # fmt: skip
    y, va = window_targets(track, np.array([0.0, 3.0, 4.0]), 3.0, CLASSES, 0.5)
    assert va[0, 0] == pytest.approx(0.2)  # 2 of 3 rows annotated: mean of 0.1, 0.3
    assert np.isnan(va[0, 1])  # 1 of 3 < 0.5
    assert y[0] == CLASSES.index("anger")  # anger 1 : fear 1 tie -> lower class index
    assert y[1] == CLASSES.index("fear") and va[1, 0] == pytest.approx(0.9)
    assert y[2] == -1 and np.isnan(va[2]).all()  # no label rows at all
    y, va = window_targets(track, np.array([0.0]), 3.0, CLASSES, 0.7)
    assert y[0] == -1 and np.isnan(va[0, 0])  # 2 of 3 < 0.7


def test_window_targets_out_of_class_names():
    track = _track(np.arange(7), np.zeros(7), np.zeros(7),
                   ["contempt", "contempt", "zzz", "anger", "zzz", "zzz", "happiness"])  # fmt: skip
    y, _ = window_targets(track, np.array([0.0, 1.0, 2.0, 4.0]), 3.0, CLASSES)
    assert y[0] == -1  # contempt 2 : zzz 1, and 'contempt' is not a class
    assert y[1] == CLASSES.index("anger")  # contempt 1 : zzz 1 : anger 1: the class wins
    assert y[2] == -1  # zzz 2 : anger 1
    assert y[3] == -1  # zzz 2 : happiness 1
    y, _ = window_targets(track, np.array([0.0]), 3.0, ["anger", "contempt"])
    assert y[0] == 1


def test_all_unannotated_empty_and_unsorted_tracks():
    n = 300
    blank = _track(np.arange(n) / 30, np.full(n, np.nan), np.full(n, np.nan), [None] * n)
    y, va = window_targets(blank, np.arange(0, 9, 1.5), 3.0, CLASSES)
    assert (y == -1).all() and np.isnan(va).all()
    empty = _track([], [], [], [])
    y, va = window_targets(empty, np.array([0.0, 1.5]), 3.0, CLASSES)
    assert (y == -1).all() and np.isnan(va).all() and va.shape == (2, 2)
    y, va = window_targets(blank, np.zeros(0), 3.0, CLASSES)
    assert y.shape == (0,) and va.shape == (0, 2)
    track = _random_track(np.random.default_rng(5), 400)
    starts = np.arange(0, 12, 1.5)
    shuffled = track.sample(frac=1.0, random_state=0)
    for a, b in zip(window_targets(track, starts, 3.0, CLASSES),
                    window_targets(shuffled, starts, 3.0, CLASSES), strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    only_arousal = track.assign(valence=np.float32(np.nan))
    _, va = window_targets(only_arousal, starts, 3.0, CLASSES)
    assert np.isnan(va[:, 0]).all() and np.isfinite(va[:, 1]).any()


def test_window_targets_reject_bad_arguments():
    track = _track([0.0], [0.1], [0.1], ["anger"])
    with pytest.raises(ValueError, match="min_annotated"):
        window_targets(track, np.array([0.0]), 3.0, CLASSES, 1.5)
    with pytest.raises(ValueError, match="repeat"):
        window_targets(track, np.array([0.0]), 3.0, ["anger", "anger"])
    with pytest.raises(ValueError, match="lacks"):
        window_targets(track.drop(columns="arousal"), np.array([0.0]), 3.0, CLASSES)


def test_long_track_is_fast():
    rng = np.random.default_rng(7)
    n = 27_000  # 15 minutes at 30 fps
    track = _random_track(rng, n)
    starts = np.arange(0, 900 - 3 + 1e-9, 1.5)  # 599 windows
    t0 = time.perf_counter()
    y, va = window_targets(track, starts, 3.0, CLASSES)
    elapsed = time.perf_counter() - t0
    print(f"window_targets: {n} rows, {len(starts)} windows: {elapsed * 1000:.1f} ms")
    assert elapsed < 1.0
    pick = np.arange(0, len(starts), 37)
    by, bva = _brute_targets(track, starts[pick], 3.0, list(CLASSES), 0.5)
    np.testing.assert_array_equal(y[pick], by)
    np.testing.assert_allclose(va[pick], bva, rtol=1e-6, atol=1e-6, equal_nan=True)
    times = np.arange(n) / 30.0
    t0 = time.perf_counter()
    out = frame_values(starts + 1.5, va, times, "linear")
    frame_classes(starts + 1.5, rng.random((len(starts), 8)), times, "hold")
    assert time.perf_counter() - t0 < 1.0
    assert out.shape == (n, 2)


# --------------------------------------------------------------------------- window -> frames


def test_hold_nearest_centre_ties_to_earlier():
    c = np.array([1.5, 3.0, 4.5])
    v = np.array([10.0, 20.0, 30.0])
    times = np.array([0.0, 1.5, 2.2, 2.25, 2.3, 3.0, 3.75, 3.76, 9.0])
    out = frame_values(c, v, times, "hold")
    np.testing.assert_array_equal(out, [10, 10, 10, 10, 20, 20, 20, 30, 30])
    np.testing.assert_array_equal(hold_index(c, times), [0, 0, 0, 0, 1, 1, 1, 2, 2])


def test_linear_interpolates_and_holds_at_ends():
    c = np.array([1.5, 3.0, 4.5])
    v = np.array([[0.0, 1.0], [1.5, -1.0], [3.0, 0.0]])
    out = frame_values(c, v, np.array([0.0, 1.5, 2.25, 3.0, 4.0, 6.0]), "linear")
    np.testing.assert_allclose(out[:, 0], [0.0, 0.0, 0.75, 1.5, 2.5, 3.0])
    np.testing.assert_allclose(out[:, 1], [1.0, 1.0, 0.0, -1.0, -1 / 3, 0.0])


def test_nan_windows_are_skipped():
    c = np.array([1.5, 3.0, 4.5, 6.0])
    v = np.array([1.0, np.nan, 3.0, np.nan])
    times = np.array([1.5, 2.9, 3.0, 3.1, 4.5, 7.0, np.nan])
    hold = frame_values(c, v, times, "hold")
    np.testing.assert_array_equal(hold[:-1], [1, 1, 1, 3, 3, 3])  # 3.0 is midway: earlier
    assert np.isnan(hold[-1])
    lin = frame_values(c, v, times, "linear")
    np.testing.assert_allclose(lin[:-1], [1.0, 1.0 + 1.4 / 1.5, 2.0, 2.0 + 0.1 / 1.5, 3, 3])
    for method in ("hold", "linear"):
        assert np.isnan(frame_values(c, np.full(4, np.nan), times, method)).all()
        assert np.isnan(frame_values(np.zeros(0), np.zeros(0), times, method)).all()
        per_col = frame_values(c, np.stack([v, np.arange(4.0)], axis=1), times[:1], method)
        np.testing.assert_array_equal(per_col, [[1.0, 0.0]])


def test_one_window_and_one_frame():
    for method in ("hold", "linear"):
        out = frame_values(np.array([1.5]), np.array([[0.2, -0.4]]), np.arange(5.0), method)
        np.testing.assert_allclose(out, np.tile([0.2, -0.4], (5, 1)))
        one = frame_values(np.array([1.5, 3.0]), np.array([0.0, 1.0]), np.array([2.0]), method)
        assert one.shape == (1,)
        assert one[0] == pytest.approx(0.0 if method == "hold" else 1 / 3)


def test_hold_matches_brute_force():
    rng = np.random.default_rng(11)
    c = np.cumsum(rng.uniform(0.1, 2.0, 50))
    v = rng.normal(size=50)
    v[rng.random(50) < 0.3] = np.nan
    times = np.r_[rng.uniform(-1, c[-1] + 1, 500), (c[:-1] + c[1:]) / 2]
    out = frame_values(c, v, times, "hold")
    cu, vu = c[np.isfinite(v)], v[np.isfinite(v)]
    for t, got in zip(times, out, strict=True):
        d = np.abs(cu - t)
        assert got == vu[np.flatnonzero(d == d.min())[0]]


def test_frame_classes():
    c = np.array([1.5, 3.0, 4.5])
    probs = np.array([[0.9, 0.1, 0.0], [np.nan, 0.5, 0.5], [0.2, 0.0, 0.8]])
    times = np.array([1.0, 2.9, 3.0, 3.1, 3.5, 5.0])
    # the NaN window is skipped: 3.0 is midway between 1.5 and 4.5 and goes to the earlier
    np.testing.assert_array_equal(frame_classes(c, probs, times, "hold"), [0, 0, 0, 2, 2, 2])
    # linear between 1.5 and 4.5: class 2 overtakes class 0 where 0.9 - 0.7 a = 0.8 a,
    # i.e. a = 0.6, t = 3.3
    np.testing.assert_array_equal(frame_classes(c, probs, times, "linear"), [0, 0, 0, 0, 2, 2])
    assert (frame_classes(c, np.full((3, 3), np.nan), times, "hold") == -1).all()
    tie = frame_classes(np.array([1.0]), np.array([[0.5, 0.5]]), np.array([0.0]), "hold")
    assert tie.tolist() == [0]


def test_frames_reject_bad_arguments():
    with pytest.raises(ValueError, match="ascending"):
        frame_values(np.array([3.0, 1.5]), np.zeros(2), np.zeros(1), "hold")
    with pytest.raises(ValueError, match="method"):
        frame_values(np.array([1.5]), np.zeros(1), np.zeros(1), "cubic")
    with pytest.raises(ValueError, match="centres"):
        frame_values(np.array([1.5, 3.0]), np.zeros(3), np.zeros(1), "hold")


@pytest.mark.parametrize("dtype", [object, "str", "string"])
def test_expression_column_dtypes(dtype):
    """Tracks read back from parquet carry pandas string columns (missing = NaN / NA)."""
    track = pd.DataFrame(
        {
            "time_s": np.arange(6) / 2.0,
            "valence": np.float32([0, 1, np.nan, 1, 1, 1]),
            "arousal": np.zeros(6, dtype=np.float32),
            "expression": pd.Series(["anger", None, "anger", "fear", None, "fear"], dtype=dtype),
        }
    )
    y, va = window_targets(track, np.array([0.0, 1.5]), 1.5, ["fear", "anger"])
    assert y.tolist() == [1, 0]
    np.testing.assert_allclose(va, [[0.5, 0.0], [1.0, 0.0]])
