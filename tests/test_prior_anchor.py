"""Fitted calibration biases must not carry val's class mix (barloc.calibrate.prior_anchor).

Synthetic data: Gaussian classes whose exact posteriors are known, so a model that is perfectly
calibrated under the training priors can be written down, and val drawn under another mix.
"""

import numpy as np
import pytest

from barloc import calibrate as cal
from barloc.artifacts import ModelMeta
from barloc.calibrate import fit_calibration as fit

MEANS = np.array([[0.0, 0.0], [1.5, 0.0], [0.0, 1.5]])


def draw(priors, n, rng):
    """Records of three 2-D unit Gaussians; the exact log-likelihoods log p(x|y) per class."""
    y = rng.choice(len(priors), size=n, p=priors)
    x = MEANS[y] + rng.normal(size=(n, 2))
    loglik = -0.5 * ((x[:, None, :] - MEANS[None]) ** 2).sum(axis=2)
    return loglik, y


TRAIN = np.array([0.6, 0.3, 0.1])
VAL = np.array([0.1, 0.3, 0.6])  # a grouped val split can hold a very different mix


@pytest.mark.parametrize("method", ["bcts", "vector"])
def test_bcts_on_a_val_mix_is_anchored_back_to_the_training_priors(method):
    rng = np.random.default_rng(0)
    loglik, yv = draw(VAL, 6000, rng)
    zv = loglik + np.log(TRAIN)  # the ideal model: exact posteriors under the training priors
    _, b_raw = cal.fit_bcts(zv, yv)
    mix = np.log(VAL / TRAIN)
    np.testing.assert_allclose(b_raw, mix - mix.mean(), atol=0.15)  # unanchored: biases learn val's mix
    calib = fit("multiclass", method, zv, yv, np.zeros(3), TRAIN)
    np.testing.assert_allclose(calib["temperature"], 1.0, atol=0.1)
    np.testing.assert_allclose(calib["bias"], 0.0, atol=0.15)  # anchored: nothing left to correct
    # On records under the training mix the anchored probabilities are the exact posteriors.
    lt, yt = draw(TRAIN, 6000, rng)
    zt = lt + np.log(TRAIN)
    exact = cal.softmax_nll(zt, yt)
    nll = lambda c: float(-np.log(cal.apply(zt, "multiclass", c)[np.arange(len(yt)), yt]).mean())  # noqa: E731
    assert nll(calib) < exact + 0.01
    assert nll({**calib, "bias": b_raw}) > exact + 0.1


def test_platt_on_val_label_rates_is_anchored_back_to_the_training_rates():
    rng = np.random.default_rng(1)
    r_train, r_val = np.array([0.2, 0.5]), np.array([0.6, 0.1])
    n = 8000
    Y = (rng.random((n, 2)) < r_val).astype(float)
    x = Y * 1.5 + rng.normal(size=(n, 2))  # per label: N(1.5, 1) if on, N(0, 1) if off
    llr = 1.5 * x - 1.125  # exact log p(x|on) - log p(x|off)
    z = llr + np.log(r_train / (1 - r_train))  # exact logits under the training rates
    _, b_raw = cal.fit_platt(z, Y)
    shift = np.log(r_val / (1 - r_val)) - np.log(r_train / (1 - r_train))
    np.testing.assert_allclose(b_raw, shift, atol=0.15)
    calib = fit("multilabel", "bcts", z, Y, np.zeros(2), r_train)
    np.testing.assert_allclose(calib["temperature"], 1.0, atol=0.1)
    np.testing.assert_allclose(calib["bias"], 0.0, atol=0.15)


def test_a_class_absent_from_val_keeps_its_training_prior():
    rng = np.random.default_rng(2)
    loglik, yv = draw(np.array([0.5, 0.5, 0.0]), 3000, rng)
    zv = loglik + np.log(TRAIN)
    calib = fit("multiclass", "bcts", zv, yv, np.zeros(3), TRAIN)
    assert np.isfinite(calib["bias"]).all()
    # Val says nothing about class 2: its prior must not be driven to zero by the fit.
    point = np.array([[0.0, 3.0]])  # deep in class 2's region
    ll = -0.5 * ((point[:, None, :] - MEANS[None]) ** 2).sum(axis=2)
    p = cal.apply(ll + np.log(TRAIN), "multiclass", calib)
    assert p[0, 2] > 0.5
    assert (
        cal.apply(ll + np.log(TRAIN), "multiclass", {"temperature": 1.0, "bias": cal.fit_bcts(zv, yv)[1]})[0, 2] < 0.01
    )


@pytest.mark.parametrize("kind", ["multiclass", "multilabel"])
def test_empty_validation_gets_no_anchor(kind):
    calib = fit(
        kind,
        "bcts",
        np.zeros((0, 3)),
        np.zeros(0, dtype=int) if kind == "multiclass" else np.zeros((0, 3)),
        np.zeros(3),
        TRAIN,
    )
    np.testing.assert_array_equal(calib["bias"], 0.0)


def test_temperature_needs_no_anchor():
    rng = np.random.default_rng(3)
    loglik, yv = draw(VAL, 500, rng)
    calib = fit("multiclass", "temperature", loglik, yv, np.zeros(3), TRAIN)
    assert "bias" not in calib


def test_vector_scaling_through_the_steps(_small_pipeline_pairs, tmp_path):
    """The small fish pipeline's trained model, calibrated with ``method: vector`` by the steps
    themselves: per-class temperatures, anchored biases, then prior_shift and evaluate on them."""
    import json
    import shutil

    import pandas as pd
    from conftest import run_post_hoc

    from barloc.calling import split_arrays

    run, _, cfg = _small_pipeline_pairs["fish_origin"]
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    f = {
        name: str(tmp_path / name)
        for name in ("model.json", "logits.parquet", "calibration.json", "priors.json", "calls.tsv", "metrics.json")
    }
    run_post_hoc(tmp_path, {**cfg, "calibration": {"method": "vector"}}, "fish_origin", 1)
    calib, meta = (
        json.loads((tmp_path / "calibration.json").read_text()),
        json.loads((tmp_path / "model.json").read_text()),
    )
    k = len(meta["classes"])
    assert calib["method"] == "vector" and len(calib["temperature"]) == k and len(calib["bias"]) == k
    # The step's biases are vector scaling's on the out-of-fold logits, less the weighting offset
    # (applied after the temperature), plus the anchor to the training mix.
    zv, yv = split_arrays(pd.read_parquet(f["logits.parquet"]), ModelMeta.load(f["model.json"]), "val")
    offset = np.asarray(calib["offset"])
    T, b = cal.fit_vector_scaling(zv, yv)
    b = b - offset - (b - offset).mean()
    form = {"temperature": T, "bias": b, "offset": offset, "offset_after_temperature": True}
    anchor = cal.prior_anchor("multiclass", cal.apply(zv, "multiclass", form), meta["train_priors"])
    np.testing.assert_allclose(calib["temperature"], T)
    np.testing.assert_allclose(calib["bias"], b + anchor)
    # The out-of-fold rows are the calling model's training records: the mix the fitted biases
    # learn is the training mix already, and the anchor has nothing to take off.
    assert np.abs(anchor).max() < 1e-3
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert np.isfinite(metrics["calibrated"]["nll"]) and 0 <= metrics["calibrated"]["ece"] <= 1
    assert json.loads((tmp_path / "priors.json").read_text())["classes"] == meta["classes"]
