"""The prior_shift step end to end on small synthetic files written in tmp_path.

Synthetic data: Gaussian classes whose exact log-likelihoods plus log training priors are the
logits, so calibrated probabilities are true posteriors and the label-shift assumption holds.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from barloc.calling import target_vector
from barloc.config import rule_config, with_defaults
from barloc.errors import InputError
from barloc.shift import reweight
from barloc.steps import prior_shift

CLASSES = ["Atlantic", "Indian", "Pacific"]
TRAIN = np.array([0.6, 0.25, 0.15])
QUERY = np.array([0.15, 0.25, 0.6])


def gaussian_logits(n: int, priors: np.ndarray, rng, sep: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    k = len(priors)
    means = np.eye(k) * sep
    y = rng.choice(k, n, p=priors)
    x = means[y] + rng.normal(size=(n, k))
    return -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1) + np.log(TRAIN), y


def write_multiclass(tmp_path, n_val=3000, n_test=3000, n_query=3000, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for split, n, pri in (("val", n_val, TRAIN), ("test", n_test, QUERY), ("query", n_query, QUERY)):
        z, y = gaussian_logits(n, pri, rng)
        df = pd.DataFrame(
            {
                "id": [f"{split}{i}" for i in range(n)],
                "split": split,
                "label": [CLASSES[j] if split != "query" else None for j in y],
            }
        )
        df[[f"logit::{c}" for c in CLASSES]] = z
        df["fold"] = np.arange(n) % 3  # the val rows' cross-fitting folds (read for val rows only)
        frames.append((df, y))
    logits = pd.concat([f for f, _ in frames], ignore_index=True)
    logits.to_parquet(tmp_path / "logits.parquet", index=False)
    meta = {"kind": "multiclass", "classes": CLASSES, "train_priors": TRAIN.tolist()}
    (tmp_path / "model.json").write_text(json.dumps(meta))
    (tmp_path / "calibration.json").write_text(
        json.dumps({"kind": "multiclass", "classes": CLASSES, "temperature": 1.0, "offset": [0.0] * 3})
    )
    return frames[2][1]  # the query's true classes


def run_step(tmp_path, pcfg: dict, uncertain_below: float = 0.6):
    inputs = SimpleNamespace(
        logits=str(tmp_path / "logits.parquet"),
        meta=str(tmp_path / "model.json"),
        calibration=str(tmp_path / "calibration.json"),
    )
    outputs = SimpleNamespace(priors=str(tmp_path / "priors.json"), calls=str(tmp_path / "calls.tsv"))
    task = with_defaults({"prior_shift": pcfg, "uncertain_below": uncertain_below})
    params = SimpleNamespace(cfg=rule_config(task, "prior_shift"), seed=7)
    prior_shift.run(inputs, outputs, params)
    return json.loads((tmp_path / "priors.json").read_text()), pd.read_csv(tmp_path / "calls.tsv", sep="\t")


DOC_KEYS = {"method", "kind", "classes", "train_priors", "query_priors", "n_query", "test"}


def test_bbse_multiclass(tmp_path):
    yq = write_multiclass(tmp_path)
    pri, calls = run_step(tmp_path, {"method": "bbse", "bootstrap": 50})
    assert DOC_KEYS | {"ci_low", "ci_high", "converged", "iterations"} <= set(pri)
    assert pri["method"] == "bbse" and pri["converged"] is True and pri["iterations"] == 0
    est = np.array(pri["query_priors"])
    realised = np.bincount(yq, minlength=3) / len(yq)
    np.testing.assert_allclose(est, realised, atol=0.03)
    assert (np.array(pri["ci_low"]) <= est + 1e-9).all() and (est <= np.array(pri["ci_high"]) + 1e-9).all()
    assert pri["bbse"]["rank"] == [3] and pri["n_val"] == 3000
    np.testing.assert_allclose(pri["test"]["estimated_priors"], pri["test"]["true_priors"], atol=0.03)
    assert pri["applied"] and pri["test"]["nll_corrected"] < pri["test"]["nll_calibrated"]
    # calls carry the corrected probabilities: their class mix follows the query's, not training's
    assert len(calls) == len(yq)
    assert list(calls.columns[:5]) == ["id", "call", "probability", "alternatives", "uncertain"]
    p = calls[[f"p::{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(p.mean(axis=0), realised, atol=0.03)
    assert (calls["call"].map(CLASSES.index).to_numpy() == yq).mean() > 0.9


def test_known_priors_multiclass(tmp_path):
    write_multiclass(tmp_path, n_val=200, n_test=200, n_query=300)
    target = dict(zip(CLASSES, [0.2, 0.3, 0.5]))
    pri, calls = run_step(tmp_path, {"method": "known", "target_priors": target})
    assert pri["method"] == "known" and pri["applied"]
    np.testing.assert_allclose(pri["query_priors"], [0.2, 0.3, 0.5])
    df = pd.read_parquet(tmp_path / "logits.parquet")
    z = df.loc[df["split"] == "query", [f"logit::{c}" for c in CLASSES]].to_numpy()
    raw = np.exp(z - z.max(axis=1, keepdims=True))
    expected = reweight(raw / raw.sum(axis=1, keepdims=True), TRAIN, np.array([0.2, 0.3, 0.5]))
    np.testing.assert_allclose(calls[[f"p::{c}" for c in CLASSES]].to_numpy(), expected, atol=1e-6)


def test_equal_target_priors_divide_by_the_training_mix(tmp_path):
    write_multiclass(tmp_path, n_val=200, n_test=200, n_query=300)
    pri, calls = run_step(tmp_path, {"method": "known", "target_priors": "equal"})
    np.testing.assert_allclose(pri["query_priors"], [1 / 3] * 3)
    df = pd.read_parquet(tmp_path / "logits.parquet")
    z = df.loc[df["split"] == "query", [f"logit::{c}" for c in CLASSES]].to_numpy()
    # The logits are log-likelihoods + log training priors: equal priors leave the likelihoods.
    lik = np.exp(z - np.log(TRAIN))
    np.testing.assert_allclose(
        calls[[f"p::{c}" for c in CLASSES]].to_numpy(), lik / lik.sum(axis=1, keepdims=True), atol=1e-6
    )
    with pytest.raises(InputError, match="equal is for a softmax"):
        target_vector("equal", CLASSES, "multilabel")


def test_evaluate_scores_the_test_split_as_the_known_priors_call(tmp_path):
    """With known priors the query's calls are prior-corrected: evaluate corrects the test split
    to the same priors and names that row as the calls' (the report states it first)."""
    from barloc.metrics import multiclass_metrics
    from barloc.steps import evaluate

    write_multiclass(tmp_path, n_val=200, n_test=300, n_query=100)
    run_step(tmp_path, {"method": "known", "target_priors": "equal"})
    out = tmp_path / "metrics.json"
    evaluate.run(
        SimpleNamespace(
            logits=str(tmp_path / "logits.parquet"),
            meta=str(tmp_path / "model.json"),
            calibration=str(tmp_path / "calibration.json"),
            priors=str(tmp_path / "priors.json"),
        ),
        SimpleNamespace(metrics=str(out)),
        SimpleNamespace(task="t", cfg={"calibration": {"ece_bins": 15}}),
    )
    metrics = json.loads(out.read_text())
    assert metrics["calls_row"] == "prior_corrected"
    df = pd.read_parquet(tmp_path / "logits.parquet")
    test = df[df["split"] == "test"]
    lik = np.exp(test[[f"logit::{c}" for c in CLASSES]].to_numpy() - np.log(TRAIN))
    y = test["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    expected = multiclass_metrics(lik / lik.sum(axis=1, keepdims=True), y)["balanced_accuracy"]
    assert metrics["prior_corrected"]["balanced_accuracy"] == pytest.approx(expected)
    assert metrics["prior_corrected"]["balanced_accuracy"] != metrics["calibrated"]["balanced_accuracy"]


def test_known_priors_must_name_every_class(tmp_path):
    write_multiclass(tmp_path, n_val=50, n_test=50, n_query=50)
    with pytest.raises(InputError, match="lacks classes"):
        run_step(tmp_path, {"method": "known", "target_priors": {"Atlantic": 1.0}})


def test_bbse_needs_val_rows(tmp_path):
    write_multiclass(tmp_path, n_val=50, n_test=50, n_query=50)
    df = pd.read_parquet(tmp_path / "logits.parquet")
    df[df["split"] != "val"].to_parquet(tmp_path / "logits.parquet", index=False)
    with pytest.raises(InputError, match="bbse needs labelled val rows"):
        run_step(tmp_path, {"method": "bbse"})


def test_bbse_multilabel(tmp_path):
    rng = np.random.default_rng(3)
    labels, train_rates, query_rates = ["Nucleus", "Cytoplasm"], np.array([0.3, 0.5]), np.array([0.6, 0.2])
    frames, truth = [], None
    for split, n, rates in (("val", 4000, train_rates), ("test", 3000, query_rates), ("query", 3000, query_rates)):
        Y = (rng.random((n, 2)) < rates).astype(int)
        x = 2.5 * Y + rng.normal(size=(n, 2))
        z = 2.5 * x - 2.5**2 / 2 + np.log(train_rates / (1 - train_rates))  # exact log-odds under training rates
        lab = [";".join(labels[j] for j in range(2) if row[j]) for row in Y]  # "" = neither
        df = pd.DataFrame(
            {"id": [f"{split}{i}" for i in range(n)], "split": split, "label": lab if split != "query" else None}
        )
        df[[f"logit::{c}" for c in labels]] = z
        df["fold"] = np.arange(n) % 3
        frames.append(df)
        truth = Y
    pd.concat(frames, ignore_index=True).to_parquet(tmp_path / "logits.parquet", index=False)
    (tmp_path / "model.json").write_text(
        json.dumps({"kind": "multilabel", "classes": labels, "train_priors": train_rates.tolist()})
    )
    (tmp_path / "calibration.json").write_text(
        json.dumps({"kind": "multilabel", "classes": labels, "temperature": [1.0, 1.0], "thresholds": [0.5, 0.5]})
    )
    pri, calls = run_step(tmp_path, {"method": "bbse", "bootstrap": 30}, uncertain_below=0.5)
    assert pri["kind"] == "multilabel" and len(pri["bbse"]["rank"]) == 2
    np.testing.assert_allclose(pri["query_priors"], truth.mean(axis=0), atol=0.04)
    np.testing.assert_allclose(pri["test"]["estimated_priors"], pri["test"]["true_priors"], atol=0.04)
    assert len(calls) == 3000 and {"p::Nucleus", "p::Cytoplasm"} <= set(calls.columns)
