import numpy as np
import pytest

from barloc import calibrate as cal


def sample_logits(n=4000, k=4, scale=3.0, seed=0):
    """Synthetic: true posteriors from logits z; the model reports scale * z (over-confident)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    p = cal.softmax_probs(z)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z * scale, y


def test_temperature_recovers_overconfidence():
    z, y = sample_logits(scale=3.0)
    T = cal.fit_temperature(z, y)
    assert abs(T - 3.0) < 0.3
    assert cal.softmax_nll(z, y, T) < cal.softmax_nll(z, y)


def test_temperature_robust_to_extremes():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1, (200, 3)) * 1e4
    y = rng.integers(0, 3, 200)
    T = cal.fit_temperature(z, y)
    assert np.isfinite(T) and T > 100
    assert cal.fit_temperature(np.zeros((50, 3)), y[:50]) == pytest.approx(1.0)
    assert np.isfinite(cal.fit_temperature(rng.normal(size=(50, 3)), np.zeros(50, dtype=int)))


def test_label_temperatures_per_label():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, (5000, 2))
    Y = (rng.random((5000, 2)) < cal.sigmoid_probs(z)).astype(float)
    T = cal.fit_label_temperatures(z * np.array([1.0, 4.0]), Y)
    assert abs(T[0] - 1) < 0.2 and abs(T[1] - 4) < 0.6


def test_ece_zero_when_calibrated_and_large_when_not():
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.3, 1, 20000)
    correct = rng.random(20000) < conf
    assert cal.ece_from_bins(cal.reliability(conf, correct)) < 0.02
    assert cal.ece_from_bins(cal.reliability(np.full(1000, 0.99), np.arange(1000) % 2 == 0)) == pytest.approx(0.49)
    bins = cal.reliability(conf, correct, adaptive=True)
    assert max(bins["count"]) - min(bins["count"]) <= 2


def test_brier():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert cal.brier(p, np.array([[1, 0], [1, 0]])) == pytest.approx(0.25)


def test_bcts_removes_a_prior_offset_that_temperature_cannot():
    z, y = sample_logits(scale=1.0, seed=4)
    shifted = z + np.array([2.0, 0.0, -1.0, 0.5])  # e.g. what class weights leave behind
    T, b = cal.fit_bcts(shifted, y)
    assert abs(T - 1) < 0.15
    np.testing.assert_allclose(b - b.mean(), -(np.array([2.0, 0, -1, 0.5]) - 0.375), atol=0.2)
    calib = {"temperature": T, "bias": b}
    nll_bcts = -np.log(cal.apply(shifted, "multiclass", calib)[np.arange(len(y)), y]).mean()
    assert nll_bcts < cal.softmax_nll(shifted, y, cal.fit_temperature(shifted, y)) - 0.02


def test_vector_scaling_recovers_a_temperature_per_class():
    z, y = sample_logits(n=6000, k=3, scale=1.0, seed=7)
    T, b = cal.fit_vector_scaling(z * np.array([1.0, 2.0, 3.0]), y)
    np.testing.assert_allclose(T, [1.0, 2.0, 3.0], rtol=0.15)
    np.testing.assert_allclose(b, 0.0, atol=0.15)


@pytest.mark.parametrize("case", ["huge", "constant", "single_class", "empty"])
def test_vector_scaling_robust(case):
    rng = np.random.default_rng(14)
    z, y = rng.normal(0, 1, (200, 3)), rng.integers(0, 3, 200)
    if case == "huge":
        z = z * 1e4
    elif case == "constant":
        z = np.zeros_like(z)
    elif case == "single_class":
        y = np.zeros(200, dtype=int)
    else:
        z, y = np.zeros((0, 3)), np.zeros(0, dtype=int)
    T, b = cal.fit_vector_scaling(z, y)
    assert T.shape == (3,) and np.isfinite(T).all() and (T > 0).all() and np.isfinite(b).all()
    if case == "empty":
        assert (T == 1).all() and (b == 0).all()
        return
    p = cal.apply(z, "multiclass", {"temperature": T, "bias": b})
    assert _finite_probs(p)
    nll = -np.log(np.clip(p[np.arange(len(y)), y], 1e-300, None)).mean()
    Tb, bb = cal.fit_bcts(z, y)
    p_b = cal.apply(z, "multiclass", {"temperature": Tb, "bias": bb})
    assert nll <= -np.log(np.clip(p_b[np.arange(len(y)), y], 1e-300, None)).mean() + 1e-9  # never worse than BCTS


def test_platt_per_label():
    rng = np.random.default_rng(6)
    z = rng.normal(0, 2, (6000, 2))
    Y = (rng.random((6000, 2)) < cal.sigmoid_probs(z)).astype(float)
    T, b = cal.fit_platt(z * np.array([1.0, 2.0]) + np.array([0.0, 1.5]), Y)
    np.testing.assert_allclose(T, [1.0, 2.0], atol=0.25)
    np.testing.assert_allclose(b, [0.0, -0.75], atol=0.2)


def test_weighting_offset_undoes_class_weights_and_pos_weight():
    from barloc.losses import class_weights, pos_weights

    counts = np.array([80.0, 15.0, 5.0])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    w = class_weights(counts, "inverse")
    weighted_logits = np.log(p * w)  # what weighted CE converges to, up to a constant
    off = cal.weighting_offset("multiclass", {"class_weights": "inverse"}, counts, 100)
    np.testing.assert_allclose(cal.apply(weighted_logits, "multiclass", {"offset": off, "temperature": 1.0}), p)
    q = np.array([[0.3, 0.05, 0.9]])
    pw = pos_weights(counts, 100)
    odds_w = np.log(q / (1 - q)) + np.log(pw)
    off = cal.weighting_offset("multilabel", {"pos_weight": True}, counts, 100)
    np.testing.assert_allclose(cal.apply(odds_w, "multilabel", {"offset": off, "temperature": np.ones(3)}), q)


# --- robustness: huge logits, constant logits, a single class in validation -----------------


def _finite_probs(p):
    return np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1) if p.ndim == 2 else np.isfinite(p).all()


def test_temperature_tames_huge_logits_on_random_labels():
    """Labels the model cannot predict: the best T flattens 1e4-sized logits, not stops at 403."""
    rng = np.random.default_rng(11)
    z = rng.normal(0, 1, (300, 3)) * 1e4
    y = rng.integers(0, 3, 300)
    T = cal.fit_temperature(z, y)
    assert np.isfinite(T) and T > 1e4
    assert cal.softmax_nll(z, y, T) < 1.2  # ~log 3: near-flat, instead of thousands of nats


@pytest.mark.parametrize("case", ["huge", "constant", "single_class"])
def test_bcts_robust(case):
    rng = np.random.default_rng(12)
    z = rng.normal(0, 1, (200, 3))
    y = rng.integers(0, 3, 200)
    if case == "huge":
        z = z * 1e4
    elif case == "constant":
        z = np.zeros_like(z)
    else:
        y = np.zeros(200, dtype=int)
    T, b = cal.fit_bcts(z, y)
    assert np.isfinite(T) and T > 0 and np.isfinite(b).all() and abs(b.sum()) < 1e-9
    p = cal.apply(z, "multiclass", {"temperature": T, "bias": b})
    assert _finite_probs(p)
    nll = -np.log(np.clip(p[np.arange(len(y)), y], 1e-300, None)).mean()
    assert nll <= cal.softmax_nll(z, y) + 1e-9  # never worse than leaving the logits alone
    if case == "constant":  # only the biases can help: they learn the class frequencies
        np.testing.assert_allclose(p[0], np.bincount(y, minlength=3) / len(y), atol=1e-3)
    if case == "single_class":
        assert (p.argmax(axis=1) == 0).all()


@pytest.mark.parametrize("case", ["huge", "constant", "single_class"])
def test_platt_and_label_temperatures_robust(case):
    rng = np.random.default_rng(13)
    z = rng.normal(0, 1, (200, 2))
    Y = (rng.random((200, 2)) < 0.3).astype(float)
    if case == "huge":
        z = z * 1e4
    elif case == "constant":
        z = np.zeros_like(z)
    else:
        Y = np.column_stack([np.ones(200), np.zeros(200)])  # one label always on, one always off
    T, b = cal.fit_platt(z, Y)
    Tl = cal.fit_label_temperatures(z, Y)
    assert np.isfinite(T).all() and (T > 0).all() and np.isfinite(b).all()
    assert np.isfinite(Tl).all() and (Tl > 0).all()
    p = cal.apply(z, "multilabel", {"temperature": T, "bias": b})
    assert np.isfinite(p).all()
    assert cal.binary_nll(z / T + b, Y) <= cal.binary_nll(z, Y) + 1e-9
    assert cal.binary_nll(z, Y, Tl) <= cal.binary_nll(z, Y) + 1e-9
    if case == "constant":
        np.testing.assert_allclose(p[0], Y.mean(axis=0), atol=1e-3)
    if case == "single_class":
        assert (p[:, 0] > 0.99).all() and (p[:, 1] < 0.01).all()


def test_empty_validation_leaves_logits_alone():
    z = np.zeros((0, 3))
    assert cal.fit_temperature(z, np.zeros(0, dtype=int)) == 1.0
    T, b = cal.fit_bcts(z, np.zeros(0, dtype=int))
    assert T == 1.0 and (b == 0).all()
    T, b = cal.fit_platt(np.zeros((0, 2)), np.zeros((0, 2)))
    assert (T == 1).all() and (b == 0).all()


# --- properties ------------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6), st.integers(1, 80), st.floats(0.01, 1e4), st.integers(0, 10_000))
def test_temperature_never_changes_the_argmax(k, n, scale, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, (n, k)) * scale
    y = rng.integers(0, k, n)
    T = cal.fit_temperature(z, y)
    assert np.isfinite(T) and T > 0
    p = cal.apply(z, "multiclass", {"temperature": T})
    assert np.isfinite(p).all()
    # compare where the top logit is unique; ties can fall either way after division
    top2 = np.sort(z, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-9 * np.maximum(np.abs(top2[:, 1]), 1)
    assert (p.argmax(axis=1)[clear] == z.argmax(axis=1)[clear]).all()
    assert cal.softmax_nll(z, y, T) <= cal.softmax_nll(z, y) + 1e-12


def test_ece_floor_is_the_small_sample_bias_of_perfect_calibration():
    """Synthetic probabilities. Labels drawn from them are calibrated by construction, yet
    their binned ECE is positive and shrinks with the number of records; certain calls have none."""
    from barloc.calibrate import multiclass_ece_floor

    rng = np.random.default_rng(3)

    def probs(n):
        z = rng.normal(size=(n, 4)) * 1.5
        return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)

    small, large = multiclass_ece_floor(probs(300)), multiclass_ece_floor(probs(30000), draws=5)
    assert 0.03 < small < 0.12 and large < 0.015
    assert multiclass_ece_floor(np.eye(4)[rng.integers(0, 4, 100)]) == 0.0
    # Labels from other probabilities (over-confident ones) sit well above the floor.
    p = probs(3000)
    y = np.array([rng.choice(4, p=row) for row in p])
    sharp = p**3 / (p**3).sum(axis=1, keepdims=True)
    assert cal.ece_from_bins(cal.multiclass_reliability(sharp, y)) > 3 * multiclass_ece_floor(sharp)


def test_temperature_tempers_the_evidence_not_the_training_prior():
    """A class-weighted network's logits are its evidence (log p(x|y) up to a constant) and the
    weighting offset is the training prior taken out. Synthetic Gaussian classes, evidence 3x
    over-confident: z / T + offset recovers the exact posteriors, (z + offset) / T cannot, and
    after a correction to equal priors the calls are the network's own (argmax z)."""
    rng = np.random.default_rng(7)
    prior = np.array([0.7, 0.2, 0.1])
    y = rng.choice(3, 4000, p=prior)
    x = np.eye(3)[y] * 2.0 + rng.normal(size=(4000, 3))
    loglik = -0.5 * ((x[:, None, :] - 2.0 * np.eye(3)[None]) ** 2).sum(-1)
    z, offset = 3.0 * loglik, np.log(prior)  # inverse weights: the offset is log prior (+ const)
    exact = cal.softmax_nll(loglik + offset, y)
    new = cal.fit_calibration("multiclass", "temperature", z, y, offset, prior)
    assert new["temperature"] == pytest.approx(3.0, rel=0.05)
    assert cal.nll_of("multiclass", cal.apply(z, "multiclass", new), y) == pytest.approx(exact, abs=0.005)
    t_old = cal.fit_temperature(z + offset, y)
    old = cal.apply(z, "multiclass", {"temperature": t_old, "offset": offset})
    assert cal.nll_of("multiclass", old, y) > exact + 0.005
    even = cal.apply(z, "multiclass", new) / prior
    assert (even.argmax(axis=1) == z.argmax(axis=1)).all()
    assert (((old / prior).argmax(axis=1)) != z.argmax(axis=1)).any()  # the old form over-corrects


@pytest.mark.parametrize("kind, shape", [("multiclass", ()), ("multilabel", (3,))])
def test_method_none_undoes_the_weighting_only(kind, shape):
    rng = np.random.default_rng(8)
    z, offset = rng.normal(size=(20, 3)), np.array([0.1, -0.2, 0.3])
    y = rng.integers(0, 3, 20) if kind == "multiclass" else (rng.random((20, 3)) < 0.4).astype(int)
    out = cal.fit_calibration(kind, "none", z, y, offset, np.full(3, 1 / 3))
    assert np.shape(out["temperature"]) == shape and "bias" not in out  # per label for sigmoid heads, as the file says
    np.testing.assert_allclose(cal.apply(z, kind, out), cal.apply(z + offset, kind))
    with pytest.raises(ValueError, match="auto chooses"):
        cal.fit_calibration(kind, "auto", z, y, offset, np.full(3, 1 / 3))
