"""Metrics against scikit-learn and hand-computed values, and their documented edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from emoflow.evaluation import metrics as m


@pytest.fixture
def labels() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 5, size=200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 4, size=200))
    return y_true, y_pred  # class 4 is never predicted by the noise, rarely at all


def test_categorical_metrics_match_sklearn(labels: tuple[np.ndarray, np.ndarray]) -> None:
    t, p = labels
    assert m.accuracy(t, p) == pytest.approx(skm.accuracy_score(t, p))
    assert m.uar(t, p) == pytest.approx(skm.balanced_accuracy_score(t, p))
    assert m.macro_f1(t, p) == pytest.approx(skm.f1_score(t, p, average="macro"))
    np.testing.assert_array_equal(
        m.confusion_matrix(t, p, 5), skm.confusion_matrix(t, p, labels=range(5))
    )
    prf = m.per_class_prf(t, p, 5)
    sk_p, sk_r, sk_f, sk_s = skm.precision_recall_fscore_support(
        t, p, labels=range(5), zero_division=0
    )
    np.testing.assert_allclose(prf["precision"], sk_p)
    np.testing.assert_allclose(prf["recall"], sk_r)
    np.testing.assert_allclose(prf["f1"], sk_f)
    np.testing.assert_array_equal(prf["support"], sk_s)


def test_hand_computed_categorical() -> None:
    t = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 1, 1, 1, 1])
    assert m.accuracy(t, p) == pytest.approx(4 / 6)
    # recalls 2/3, 1, 0 -> UAR 5/9
    assert m.uar(t, p) == pytest.approx(5 / 9)
    prf = m.per_class_prf(t, p, 4)
    # class 2 and 3 never predicted: precision 0, not NaN
    assert prf["precision"].tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert not np.isnan(prf["precision"]).any()
    assert prf["f1"][0] == pytest.approx(0.8)
    assert m.confusion_matrix(t, p, 3).tolist() == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]


def test_known_classes_drops_unknown() -> None:
    t, p = m.known_classes([0, -1, 2], [0, 1, 1])
    assert t.tolist() == [0, 2] and p.tolist() == [0, 1]


def test_confusion_matrix_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        m.confusion_matrix([0, 3], [0, 1], 3)


def test_ccc_edge_cases_and_hand_value() -> None:
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    assert m.ccc(x, x) == pytest.approx(1.0)
    assert m.ccc(x, -x) == pytest.approx(-1.0)
    assert m.ccc(np.full(4, 0.3), np.full(4, 0.3)) == 1.0  # both constant and equal
    assert m.ccc(x, np.zeros(5)) == 0.0  # constant prediction of a varying target
    t = np.array([1.0, 2.0, 3.0])
    p = np.array([2.0, 2.0, 4.0])
    # means 2, 8/3; var_t 2/3, var_p 8/9; cov 2/3 (population moments)
    expected = 2 * (2 / 3) / (2 / 3 + 8 / 9 + (2 - 8 / 3) ** 2)
    assert expected == pytest.approx(2 / 3)
    assert m.ccc(t, p) == pytest.approx(expected)
    assert math.isnan(m.ccc([], []))


def test_pearson_and_mae() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert m.pearson_r(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert m.pearson_r(a, np.full(50, 2.0)) == 0.0
    assert m.mae([1.0, 2.0], [2.0, 4.0]) == pytest.approx(1.5)
    assert m.mae(a, b) == pytest.approx(skm.mean_absolute_error(a, b))


def test_bootstrap_ci_deterministic_and_contains_estimate(
    labels: tuple[np.ndarray, np.ndarray],
) -> None:
    t, p = labels
    ci1 = m.bootstrap_ci(m.accuracy, t, p, n=500, seed=7)
    ci2 = m.bootstrap_ci(m.accuracy, t, p, n=500, seed=7)
    ci3 = m.bootstrap_ci(m.accuracy, t, p, n=500, seed=8)
    assert ci1 == ci2
    assert ci1 != ci3
    assert ci1[0] < m.accuracy(t, p) < ci1[1]
    assert 0.0 < ci1[1] - ci1[0] < 0.3
    assert all(math.isnan(v) for v in m.bootstrap_ci(m.accuracy, [], [], n=10))
    assert all(math.isnan(v) for v in m.bootstrap_ci(m.accuracy, t, p, n=0))


def test_bootstrap_ci_regression_metric() -> None:
    rng = np.random.default_rng(1)
    t = rng.normal(size=100)
    p = t + rng.normal(scale=0.5, size=100)
    lo, hi = m.bootstrap_ci(m.ccc, t, p, n=300, seed=0)
    assert lo < m.ccc(t, p) < hi


def test_mean_std_and_format() -> None:
    assert m.mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert m.mean_std([0.5]) == (0.5, 0.0)
    assert m.mean_std([0.5, float("nan")]) == (0.5, 0.0)
    assert m.format_mean_std([0.5, 0.7]) == "0.600 ± 0.141"
    assert m.format_number(-0.0001) == "0.000"
    assert m.format_number(float("nan")) == "-"
    assert m.format_mean_std([]) == "-"
