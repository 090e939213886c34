import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from barloc import shift
from barloc.calibrate import softmax_probs


def label_shift_sample(n, priors_train, priors_test, seed=0, sep=2.0):
    """Synthetic Gaussian classes: exact posteriors under the training priors, drawn with test priors."""
    rng = np.random.default_rng(seed)
    k = len(priors_train)
    means = np.eye(k) * sep
    y = rng.choice(k, n, p=priors_test)
    x = means[y] + rng.normal(size=(n, k))
    loglik = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)
    return softmax_probs(loglik + np.log(priors_train)), y


def test_em_recovers_shifted_priors_and_improves_accuracy():
    train, test = np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.3, 0.6])
    p, y = label_shift_sample(20000, train, test)
    res = shift.em_priors(p, train)
    assert res.converged
    np.testing.assert_allclose(res.priors, test, atol=0.02)
    assert (res.posteriors.argmax(1) == y).mean() > (p.argmax(1) == y).mean() + 0.05


def test_em_reports_non_convergence():
    p, _ = label_shift_sample(2000, np.array([0.5, 0.5]), np.array([0.9, 0.1]))
    res = shift.em_priors(p, np.array([0.5, 0.5]), tol=1e-15, max_iter=2)
    assert not res.converged and res.iterations == 2


def test_adjust_logits_equals_reweighting():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(10, 3))
    a, b = np.array([0.5, 0.3, 0.2]), np.array([0.1, 0.1, 0.8])
    np.testing.assert_allclose(softmax_probs(shift.adjust_logits(z, a, b)), shift.reweight(softmax_probs(z), a, b))


def test_multilabel_em_per_label():
    rng = np.random.default_rng(5)
    p = np.clip(rng.beta(0.5, 2, size=(3000, 2)), 1e-4, 1 - 1e-4)
    rates, corrected, _, ok = shift.em_priors_multilabel(p, p.mean(0))
    assert ok and np.allclose(rates, p.mean(0), atol=1e-4)  # no shift -> unchanged
    np.testing.assert_allclose(corrected, p, atol=1e-3)


def test_bootstrap_interval_covers_estimate():
    train = np.array([0.5, 0.5])
    p, _ = label_shift_sample(800, train, np.array([0.8, 0.2]))
    lo, hi = shift.bootstrap_priors(p, train, n_boot=50, seed=1)
    est = shift.em_priors(p, train).priors
    assert (lo <= est + 1e-9).all() and (est <= hi + 1e-9).all() and (hi - lo < 0.2).all()


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5), st.integers(1, 200), st.integers(0, 10_000))
def test_em_priors_are_a_distribution(k, n, seed):
    rng = np.random.default_rng(seed)
    p = softmax_probs(rng.normal(0, 3, (n, k)))
    train = rng.dirichlet(np.ones(k))
    res = shift.em_priors(p, train, max_iter=200)
    assert np.isclose(res.priors.sum(), 1) and (res.priors >= 0).all()
    np.testing.assert_allclose(res.posteriors.sum(1), 1)


def test_map_em_shrinks_towards_training_priors():
    train = np.array([0.5, 0.5])
    p, _ = label_shift_sample(200, train, np.array([0.9, 0.1]), sep=0.5)  # weak classifier
    plain = shift.em_priors(p, train).priors
    shrunk = shift.em_priors(p, train, strength=200).priors
    assert abs(shrunk[0] - 0.5) < abs(plain[0] - 0.5)
    assert shift.em_priors(p, train, strength=1e9).priors == pytest.approx(train, abs=1e-4)
