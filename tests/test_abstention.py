"""Cross-checks against the reference implementation of Alexandari et al. (2020), the
``abstention`` package (kundajelab): temperature scaling, BCTS, EM and BBSE must agree with
it on the same fixed inputs.

All inputs here are synthetic (seeded Gaussian classes); no real data.
"""

from __future__ import annotations

import numpy as np
import pytest

from barloc import calibrate as cal
from barloc import shift

abstention = pytest.importorskip(
    "abstention", reason="the abstention package is not installed (pip install -e '.[test]' brings it)"
)
from abstention.calibration import TempScaling, VectorScaling  # noqa: E402
from abstention.label_shift import BBSEImbalanceAdapter, EMImbalanceAdapter  # noqa: E402


def synthetic_logits(n: int, priors: np.ndarray, seed: int, scale: float = 2.5, sep: float = 2.0):
    """Synthetic Gaussian classes; the 'network' reports scale x the exact logits (over-confident)
    with a per-class offset, as class weighting would leave behind."""
    rng = np.random.default_rng(seed)
    k = len(priors)
    means = np.eye(k) * sep
    y = rng.choice(k, n, p=priors)
    x = means[y] + rng.normal(size=(n, k))
    exact = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1) + np.log(np.array([0.5, 0.3, 0.2]))
    return scale * exact + np.array([0.4, -0.2, 0.1]), y


def onehot(y, k=3):
    return np.eye(k)[y]


SOURCE = np.array([0.5, 0.3, 0.2])
TARGET = np.array([0.15, 0.25, 0.6])


@pytest.fixture(scope="module")
def data():
    zv, yv = synthetic_logits(4000, SOURCE, seed=1)
    zq, yq = synthetic_logits(3000, TARGET, seed=2)
    return zv, yv, zq, yq


def test_temperature_matches_abstention(data):
    zv, yv, _, _ = data
    ours = cal.fit_temperature(zv, yv)
    theirs, biases = TempScaling()._get_optimal_t_and_biases(valid_preacts=zv, valid_labels=onehot(yv))
    assert np.allclose(biases, 0)
    assert ours == pytest.approx(float(np.squeeze(theirs)), abs=1e-3)
    calibrator = TempScaling()(valid_preacts=zv, valid_labels=onehot(yv))
    np.testing.assert_allclose(cal.softmax_probs(zv, ours), calibrator(zv), atol=1e-3)


def test_bcts_matches_abstention(data):
    zv, yv, _, _ = data
    T, b = cal.fit_bcts(zv, yv)
    t_ref, b_ref = TempScaling(bias_positions="all")._get_optimal_t_and_biases(
        valid_preacts=zv, valid_labels=onehot(yv)
    )
    assert T == pytest.approx(float(t_ref), abs=1e-3)
    np.testing.assert_allclose(b, b_ref - b_ref.mean(), atol=1e-3)  # softmax ignores a common shift
    calibrator = TempScaling(bias_positions="all")(valid_preacts=zv, valid_labels=onehot(yv))
    np.testing.assert_allclose(cal.apply(zv, "multiclass", {"temperature": T, "bias": b}), calibrator(zv), atol=1e-3)


def test_vector_scaling_matches_abstention(data):
    zv, yv, _, _ = data
    zs = zv * np.array([0.6, 1.0, 1.8])  # a model over-confident about one class, under- about another
    T, b = cal.fit_vector_scaling(zs, yv)
    calibrator = VectorScaling(verbose=False)(valid_preacts=zs, valid_labels=onehot(yv))
    ours, theirs = cal.apply(zs, "multiclass", {"temperature": T, "bias": b}), calibrator(zs)
    # The NLL is flat near its optimum: both land on it (ours no worse), probabilities within 0.01.
    nll = lambda p: float(-np.log(p[np.arange(len(yv)), yv]).mean())  # noqa: E731
    assert nll(ours) <= nll(theirs) + 1e-6
    np.testing.assert_allclose(ours, theirs, atol=1e-2)
    Tb, bb = cal.fit_bcts(zs, yv)
    assert cal.softmax_nll(zs / T + b, yv) < cal.softmax_nll(zs / Tb + bb, yv) - 0.005  # one T cannot fix that


def test_em_priors_match_abstention_without_calibration(data):
    zv, _, zq, _ = data
    pv, pq = cal.softmax_probs(zv), cal.softmax_probs(zq)
    source = pv.mean(axis=0)  # abstention takes the source priors as the mean val posterior
    ours = shift.em_priors(pq, source, tol=1e-8, max_iter=5000)
    adapter = EMImbalanceAdapter(tolerance=1e-8, max_iterations=5000)(
        tofit_initial_posterior_probs=pq, valid_posterior_probs=pv
    )
    theirs = adapter.multipliers * source
    assert ours.converged
    np.testing.assert_allclose(ours.priors, theirs, atol=1e-3)
    np.testing.assert_allclose(ours.posteriors, adapter(pq), atol=1e-3)


def test_em_on_bcts_matches_abstention(data):
    """The pairing Alexandari et al. recommend: BCTS on val, then EM on the query.

    As in the authors' experiment code (kundajelab/labelshiftexperiments), abstention's
    calibrator is applied first and the calibrated probabilities go to EMImbalanceAdapter.
    (Handing it ``calibrator_factory`` instead is not equivalent in abstention 0.1.3.1: the
    source priors then come from calibrated val probabilities but EM iterates on the
    uncalibrated query probabilities.)
    """
    zv, yv, zq, yq = data
    T, b = cal.fit_bcts(zv, yv)
    calib = {"temperature": T, "bias": b}
    pv, pq = cal.apply(zv, "multiclass", calib), cal.apply(zq, "multiclass", calib)
    ours = shift.em_priors(pq, pv.mean(axis=0), tol=1e-8, max_iter=5000)
    calibrator = TempScaling(bias_positions="all")(valid_preacts=zv, valid_labels=onehot(yv))
    ref_v, ref_q = calibrator(zv), calibrator(zq)
    adapter = EMImbalanceAdapter(tolerance=1e-8, max_iterations=5000)(
        tofit_initial_posterior_probs=ref_q, valid_posterior_probs=ref_v
    )
    theirs = adapter.multipliers * ref_v.mean(axis=0)
    np.testing.assert_allclose(ours.priors, theirs, atol=1e-3)
    np.testing.assert_allclose(ours.posteriors, adapter(ref_q), atol=1e-3)
    np.testing.assert_allclose(ours.priors, np.bincount(yq) / len(yq), atol=0.03)  # and it is right


def test_bbse_matches_abstention(data):
    zv, yv, zq, _ = data
    pv, pq = cal.softmax_probs(zv), cal.softmax_probs(zq)
    res = shift.bbse(pv, yv, pq)
    adapter = BBSEImbalanceAdapter()(
        valid_labels=onehot(yv), tofit_initial_posterior_probs=pq, valid_posterior_probs=pv
    )
    assert not res.clipped
    np.testing.assert_allclose(res.weights, adapter.multipliers, atol=1e-9)
    theirs = adapter.multipliers * np.bincount(yv) / len(yv)
    np.testing.assert_allclose(res.priors, theirs / theirs.sum(), atol=1e-9)


def test_bbse_clip_matches_abstention_when_weights_go_negative():
    """abstention zeroes negative weights; our ``nonnegative='clip'`` does the same."""
    zv, yv = synthetic_logits(400, SOURCE, seed=3, sep=0.7)
    seen = 0
    for seed in range(30):
        zq, _ = synthetic_logits(60, np.array([0.05, 0.05, 0.9]), seed=50 + seed, sep=0.7)
        pv, pq = cal.softmax_probs(zv), cal.softmax_probs(zq)
        res = shift.bbse(pv, yv, pq, nonnegative="clip")
        if not res.clipped:
            continue
        seen += 1
        w = BBSEImbalanceAdapter()(
            valid_labels=onehot(yv), tofit_initial_posterior_probs=pq, valid_posterior_probs=pv
        ).multipliers
        np.testing.assert_allclose(res.weights, w, atol=1e-9)
        q = w * np.bincount(yv, minlength=3) / len(yv)
        np.testing.assert_allclose(res.priors, q / q.sum(), atol=1e-9)
    assert seen > 0
