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


# --- BBSE -------------------------------------------------------------------------------------


def test_bbse_recovers_shifted_priors():
    train, test = np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.3, 0.6])
    pv, yv = label_shift_sample(20000, train, train, seed=1)
    pq, _ = label_shift_sample(20000, train, test, seed=2)
    res = shift.bbse(pv, yv, pq)
    np.testing.assert_allclose(res.priors, test, atol=0.03)
    assert res.rank == 3 and not res.clipped
    np.testing.assert_allclose(shift.bbse_priors(pv, yv, pq), res.priors)


def test_bbse_without_shift_returns_the_validation_priors():
    train = np.array([0.5, 0.3, 0.2])
    pv, yv = label_shift_sample(3000, train, train, seed=3)
    np.testing.assert_allclose(shift.bbse_priors(pv, yv, pv), np.bincount(yv) / len(yv), atol=1e-9)


def test_bbse_singular_confusion_stays_at_source_priors():
    """A classifier that always says class 0 carries no information: no shift is estimated."""
    val = np.tile([[0.9, 0.05, 0.05]], (30, 1))
    yv = np.arange(30) % 3
    query = np.tile([[0.8, 0.1, 0.1]], (50, 1))
    res = shift.bbse(val, yv, query)
    assert res.rank == 1
    np.testing.assert_allclose(res.priors, [1 / 3] * 3, atol=1e-9)


def test_bbse_class_absent_from_validation_keeps_query_mean():
    train = np.array([0.5, 0.3, 0.2])
    pv, yv = label_shift_sample(3000, train, train, seed=4)
    pq, _ = label_shift_sample(2000, train, np.array([0.2, 0.3, 0.5]), seed=5)
    keep = yv < 2
    est = shift.bbse_priors(pv[keep], yv[keep], pq)
    assert np.isclose(est.sum(), 1) and (est >= 0).all()
    assert est[2] == pytest.approx(pq[:, 2].mean())


def test_bbse_clips_negative_weights():
    train = np.array([0.5, 0.5])
    pv, yv = label_shift_sample(2000, train, train, seed=6)
    pq = np.tile([[0.99, 0.01]], (100, 1))  # every query call is class 0: more than C can explain
    res = shift.bbse(pv, yv, pq)
    assert res.clipped and (res.weights >= 0).all()
    np.testing.assert_allclose(res.priors, [1.0, 0.0], atol=1e-9)


def test_bbse_empty_inputs():
    pv, yv = label_shift_sample(100, np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    np.testing.assert_allclose(shift.bbse_priors(pv, yv, np.zeros((0, 2))), np.bincount(yv) / len(yv))
    lo, hi = shift.bootstrap_bbse(pv, yv, np.zeros((0, 2)))
    assert np.isnan(lo).all() and np.isnan(hi).all()


def test_bbse_multilabel_per_label():
    rng = np.random.default_rng(7)
    n = 20000

    # two independent labels; each is a 1-D Gaussian problem, shifted rate in the query
    def draw(rate, seed):
        r = np.random.default_rng(seed)
        Y = (r.random((n, 2)) < rate).astype(float)
        x = Y * 2.0 + r.normal(size=(n, 2))
        logit = 2.0 * x - 2.0 + np.log(np.array([0.3, 0.6]) / (1 - np.array([0.3, 0.6])))
        return 1 / (1 + np.exp(-logit)), Y

    pv, Yv = draw(np.array([0.3, 0.6]), 8)
    pq, Yq = draw(np.array([0.7, 0.2]), 9)
    rates = shift.bbse_priors_multilabel(pv, Yv, pq, thresholds=np.array([0.5, 0.5]))
    np.testing.assert_allclose(rates, Yq.mean(axis=0), atol=0.03)
    lo, hi = shift.bootstrap_bbse(
        pv[:2000], Yv[:2000], pq[:2000], multilabel=True, thresholds=0.5, n_boot=40, seed=rng.integers(1e6)
    )
    assert (lo <= rates + 0.05).all() and (rates - 0.05 <= hi).all() and (hi - lo < 0.2).all()


def test_bbse_bootstrap_interval_covers_estimate():
    train = np.array([0.6, 0.4])
    pv, yv = label_shift_sample(1500, train, train, seed=10)
    pq, _ = label_shift_sample(800, train, np.array([0.2, 0.8]), seed=11)
    est = shift.bbse_priors(pv, yv, pq)
    lo, hi = shift.bootstrap_bbse(pv, yv, pq, n_boot=100, seed=2)
    assert (lo <= est + 1e-9).all() and (est <= hi + 1e-9).all() and (hi - lo < 0.25).all()


# --- properties -------------------------------------------------------------------------------

priors_st = st.integers(2, 5).flatmap(
    lambda k: st.lists(st.floats(0.05, 1.0), min_size=k, max_size=k).map(lambda v: np.array(v) / np.sum(v))
)


@settings(max_examples=60, deadline=None)
@given(priors_st, st.integers(1, 100), st.integers(0, 10_000))
def test_correction_with_training_priors_changes_nothing(train, n, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, len(train)))
    p = softmax_probs(z)
    np.testing.assert_allclose(shift.reweight(p, train, train), p, atol=1e-12)
    np.testing.assert_allclose(shift.adjust_logits(z, train, train), z, atol=1e-12)
    rates = train[:2] / train[:2].sum() * 0.9
    q = 1 / (1 + np.exp(-z[:, :2]))
    np.testing.assert_allclose(shift.reweight_multilabel(q, rates, rates), q, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(priors_st, priors_st, st.integers(0, 10_000))
def test_em_recovers_known_priors_within_sampling_error(train, target, seed):
    """Exact posteriors of well-separated classes, n = 4000 drawn with ``target`` priors:
    EM lands within 5 binomial standard errors of each true prior (plus slack for overlap)."""
    k = min(len(train), len(target))
    train, target = train[:k] / train[:k].sum(), target[:k] / target[:k].sum()
    n = 4000
    p, y = label_shift_sample(n, train, target, seed=seed, sep=4.0)
    est = shift.em_priors(p, train).priors
    realised = np.bincount(y, minlength=k) / n
    se = np.sqrt(np.clip(realised * (1 - realised), 1e-4, None) / n)
    assert (np.abs(est - realised) < 5 * se + 0.01).all()


@settings(max_examples=25, deadline=None)
@given(priors_st, priors_st, st.integers(0, 10_000))
def test_bbse_recovers_known_priors_on_label_shift(train, target, seed):
    """Synthetic label shift: BBSE's estimate is within sampling error of the query's priors."""
    k = min(len(train), len(target))
    train, target = train[:k] / train[:k].sum(), target[:k] / target[:k].sum()
    pv, yv = label_shift_sample(6000, train, train, seed=seed, sep=4.0)
    pq, yq = label_shift_sample(6000, train, target, seed=seed + 1, sep=4.0)
    est = shift.bbse_priors(pv, yv, pq)
    realised = np.bincount(yq, minlength=k) / len(yq)
    assert np.isclose(est.sum(), 1) and (est >= 0).all()
    assert np.abs(est - realised).max() < 0.04


def test_bbse_nnls_fits_better_than_clipping():
    """A class the model rarely predicts makes C ill-conditioned; on a small query the plain
    solution goes negative. Refitting under w >= 0 leaves a smaller residual than zeroing."""
    train = np.array([0.45, 0.1, 0.45])
    pv, yv = label_shift_sample(600, train, train, seed=12, sep=0.8)
    hits = 0
    for seed in range(20):
        pq, _ = label_shift_sample(80, train, np.array([0.1, 0.1, 0.8]), seed=100 + seed, sep=0.8)
        a, b = shift.bbse(pv, yv, pq), shift.bbse(pv, yv, pq, nonnegative="clip")
        assert a.clipped == b.clipped
        if not a.clipped:
            np.testing.assert_allclose(a.priors, b.priors)
            continue
        hits += 1
        C = shift.confusion_joint(pv, yv, 3)
        mu = np.bincount(pq.argmax(1), minlength=3) / len(pq)
        assert np.linalg.norm(C @ a.weights - mu) <= np.linalg.norm(C @ b.weights - mu) + 1e-12
    assert hits > 0
