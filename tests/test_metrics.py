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


def test_call_ratio_drops_calls_far_below_the_top_label():
    probs = np.array([[0.9, 0.5, 0.2], [0.4, 0.35, 0.1], [0.05, 0.04, 0.01]])
    thr = np.array([0.1, 0.1, 0.1])
    np.testing.assert_array_equal(metrics.predict_multilabel(probs, thr), [[1, 1, 1], [1, 1, 1], [1, 0, 0]])
    # 0.5 >= 0.5 * 0.9 stays, 0.2 does not; 0.35 >= 0.5 * 0.4 stays; the top label is always called
    np.testing.assert_array_equal(metrics.predict_multilabel(probs, thr, 0.5), [[1, 1, 0], [1, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(metrics.predict_multilabel(probs, thr, 1.0), np.eye(3)[[0, 0, 0]])


def test_a_call_ratio_on_logits_ranks_by_their_softmax():
    """With logits the top label and the ratio are those of exp(z - z_max); the calibrated
    probabilities still face the thresholds (synthetic numbers)."""
    probs = np.array([[0.60, 0.20, 0.05]])  # label 2 is rare: calibration puts it far down
    z = np.array([[1.0, 0.0, 1.2]])  # but its logit leads: shares 0.82, 0.30, 1
    thr = np.array([0.5, 0.5, 0.04])
    np.testing.assert_array_equal(metrics.predict_multilabel(probs, thr, 0.5), [[1, 0, 0]])
    np.testing.assert_array_equal(metrics.predict_multilabel(probs, thr, 0.5, z), [[1, 0, 1]])
    np.testing.assert_array_equal(metrics.predict_multilabel(probs, thr, 0.9, z), [[0, 0, 1]])
    # a label below its threshold is not called for its share, unless it is the top label
    np.testing.assert_array_equal(metrics.predict_multilabel(probs, thr, 0.0, np.array([[1.0, 0.9, 0.0]])), [[1, 0, 1]])
    np.testing.assert_array_equal(metrics.predict_multilabel(probs, thr, 0.0, np.array([[0.0, 0.9, 0.0]])), [[1, 1, 1]])


def test_moved_logits_follow_a_per_label_logit_shift():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 3))
    before = rng.uniform(0.05, 0.95, (5, 3))
    shift = np.array([0.5, -1.0, 2.0])
    after = 1 / (1 + np.exp(-(np.log(before / (1 - before)) + shift)))
    np.testing.assert_allclose(metrics.moved_logits(z, before, after), z + shift)
    np.testing.assert_allclose(metrics.moved_logits(z, before, before), z)


def _squashed_rare_label(seed: int, n: int = 800):
    """Synthetic: 4 labels, one true a sample, label 3 rare (8%); the true label's logit leads
    by about 1.5. Calibration gives label 3 a bias of -3: each label's probabilities keep their
    order, but a rare label that leads its sample's logits sits far below the others' probabilities."""
    rng = np.random.default_rng(seed)
    Y = np.eye(4, dtype=bool)[rng.choice(4, n, p=[0.4, 0.3, 0.22, 0.08])]
    z = rng.normal(0, 0.7, (n, 4)) + 1.5 * Y
    return 1 / (1 + np.exp(-(z + np.array([0.0, 0.0, 0.0, -3.0])))), z, Y


def test_a_call_ratio_fitted_on_logits_beats_one_on_squashed_probabilities():
    pv, zv, Yv = _squashed_rare_label(0)
    pt, zt, Yt = _squashed_rare_label(1)
    on_z, on_p = metrics.fit_calls(pv, Yv, "auto", zv), metrics.fit_calls(pv, Yv)
    np.testing.assert_array_equal(on_z["thresholds"], on_p["thresholds"])  # the thresholds read the probabilities
    got = metrics.multilabel_metrics(pt, Yt, on_z["thresholds"], ratio=on_z["call_ratio"], logits=zt)
    old = metrics.multilabel_metrics(pt, Yt, on_p["thresholds"], ratio=on_p["call_ratio"])
    assert got["micro_f1"] > old["micro_f1"] + 0.02 and got["macro_f1"] > old["macro_f1"] + 0.03
    rare = [
        metrics.per_label_mcc(pt, Yt, r["thresholds"], list("abcd"), r["call_ratio"], z)["d"]["mcc"]
        for r, z in ((on_z, zt), (on_p, None))
    ]
    assert rare[0] > rare[1]


def _overcalling_model(seed: int, n: int = 600):
    """Synthetic: 6 labels, mostly one true label a sample. Each sample has its own confidence
    scale shared by all its labels, and its true labels score about three times its others: no
    fixed per-label threshold separates them across samples, a ratio to the top label does."""
    rng = np.random.default_rng(seed)
    Y = np.zeros((n, 6), bool)
    Y[np.arange(n), rng.integers(0, 6, n)] = True
    second = rng.random(n) < 0.15
    Y[np.flatnonzero(second), rng.integers(0, 6, second.sum())] = True
    scale = rng.uniform(0.1, 1.0, (n, 1))
    probs = scale * np.where(Y, 0.9, 0.3) * np.exp(0.25 * rng.standard_normal((n, 6)))
    return np.clip(probs, 0.001, 0.999), Y


def test_fit_call_ratio_beats_thresholds_alone_on_held_out_data():
    pv, Yv = _overcalling_model(0)
    pt, Yt = _overcalling_model(1)
    rule = metrics.fit_calls(pv, Yv)
    assert 0 < rule["call_ratio"] < 1
    fitted = metrics.multilabel_metrics(pt, Yt, rule["thresholds"], ratio=rule["call_ratio"])
    plain = metrics.multilabel_metrics(pt, Yt, rule["thresholds"])
    assert fitted["micro_f1"] + fitted["macro_f1"] > plain["micro_f1"] + plain["macro_f1"] + 0.02
    assert (
        metrics.predict_multilabel(pt, rule["thresholds"], rule["call_ratio"]).sum(1).mean()
        < metrics.predict_multilabel(pt, rule["thresholds"]).sum(1).mean()
    )


def test_fit_calls_fixed_ratio_and_ties():
    pv, Yv = _overcalling_model(2)
    assert metrics.fit_calls(pv, Yv, 0)["call_ratio"] == 0.0
    assert metrics.fit_calls(pv, Yv, 0.4)["call_ratio"] == 0.4
    # one label a sample and the truth on top: every ratio calls the same, so the smallest wins
    Y = np.eye(3, dtype=bool)[[0, 1, 2, 0]]
    probs = np.where(Y, 0.9, 0.05)
    assert metrics.fit_call_ratio(probs, Y, np.full(3, 0.5)) == 0.0
    assert metrics.fit_call_ratio(probs[:0], Y[:0], np.full(3, 0.5)) == 0.0


def test_call_rule_reads_calibrations_from_before_the_ratio():
    from barloc.artifacts import Calibration

    thr, ratio = Calibration(temperature=1.0, thresholds=[0.2, 0.3]).call_rule(2)
    assert thr.tolist() == [0.2, 0.3] and ratio == 0.0
    assert Calibration(temperature=1.0).call_rule(3)[0].tolist() == [0.5] * 3
    assert Calibration(temperature=1.0, thresholds=[0.2], call_ratio=0.35).call_rule(1)[1] == 0.35
