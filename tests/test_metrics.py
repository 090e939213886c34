import numpy as np
import pytest

from barloc import metrics


def test_multiclass_metrics_known_values():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 1, 1])
    m = metrics.multiclass_metrics(probs, y)
    assert m["accuracy"] == 0.75
    assert m["balanced_accuracy"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.7])))
    assert metrics.confusion(probs, y) == [[1, 0], [1, 2]]


def test_multilabel_deeploc_definitions():
    Y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    probs = np.array([[0.9, 0.2, 0.1], [0.8, 0.3, 0.1], [0.1, 0.2, 0.4]])
    thr = np.array([0.5, 0.5, 0.5])
    pred = metrics.predict_multilabel(probs, thr)
    # third protein: nothing clears 0.5, so its top label is kept
    assert pred.tolist() == [[True, False, False], [True, False, False], [False, False, True]]
    m = metrics.multilabel_metrics(probs, Y, thr)
    assert m["exact_match"] == pytest.approx(2 / 3)
    assert m["jaccard"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 1))


def test_mcc_thresholds_find_separating_cut():
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.2
    p = np.where(y, rng.uniform(0.3, 0.5, 500), rng.uniform(0.0, 0.25, 500))
    thr = metrics.mcc_thresholds(p[:, None], y[:, None].astype(int))
    assert 0.25 <= thr[0] <= 0.3
