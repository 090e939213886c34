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
