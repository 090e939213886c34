"""prior_shift: correct query probabilities for the query set's class priors; write calls."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from barloc import extra_heads, shift
from barloc.calibrate import apply
from barloc.errors import InputError
from barloc.metrics import call_rule, predict_multilabel
from barloc.runtime import atomic_path, read_json, write_json
from barloc.steps.calibrate import nll_of, split_arrays
from barloc.steps.predict import read_logits

log = logging.getLogger(__name__)


def target_vector(target: dict | str, classes: list[str], kind: str) -> np.ndarray:
    """Configured priors as a vector: multiclass must name every class and sum to 1. ``equal``
    (multiclass): every class as likely, the calls that balanced accuracy scores best."""
    if target == "equal":
        if kind != "multiclass":
            raise InputError(None, "prior_shift.target_priors: equal is for a softmax (multiclass) task; "
                                   "give each label's prevalence instead")
        return np.full(len(classes), 1.0 / len(classes))
    unknown = set(target) - set(classes)
    if unknown:
        raise InputError(None, f"prior_shift.target_priors names unknown classes {sorted(unknown)}")
    if kind == "multiclass":
        missing = set(classes) - set(target)
        if missing:
            raise InputError(None, f"prior_shift.target_priors lacks classes {sorted(missing)}")
        v = np.array([float(target[c]) for c in classes])
        return v / v.sum()
    return np.array([float(target.get(c, np.nan)) for c in classes])


def correct(
    kind: str, probs: np.ndarray, train: np.ndarray, pcfg: dict, classes: list[str], seed: int,
    val: tuple[np.ndarray, np.ndarray] | None = None, thresholds: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Corrected probabilities and the prior estimate for one set of unlabelled samples.

    ``val`` (calibrated probabilities, labels of the val split) is needed by ``bbse``; for
    sigmoid heads BBSE makes hard calls at ``thresholds`` (0.5 when not given).
    """
    method = pcfg.get("method", "em")
    tol, max_iter = float(pcfg.get("tol", 1e-6)), int(pcfg.get("max_iter", 1000))
    strength = float(pcfg.get("prior_strength", 0.0))
    n_boot = int(pcfg.get("bootstrap", 200))
    info: dict = {"method": method, "n_query": int(len(probs))}
    if method == "none" or len(probs) == 0:
        return probs, {**info, "query_priors": None}
    if method == "known":
        target = target_vector(pcfg.get("target_priors", {}), classes, kind)
        if kind == "multilabel":
            target = np.where(np.isnan(target), train, target)
            return shift.reweight_multilabel(probs, train, target), {**info, "query_priors": target}
        return shift.reweight(probs, train, target), {**info, "query_priors": target}
    if method == "bbse":
        if val is None or len(val[0]) == 0:
            raise InputError(None, "prior_shift.method bbse needs labelled val rows in logits.parquet")
        vp, vy = val
        thr = np.full(len(classes), 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        if kind == "multiclass":
            results = [shift.bbse(vp, vy, probs)]
            est = results[0].priors
            corrected = shift.reweight(probs, train, est)
        else:
            results = shift.bbse_multilabel(vp, vy, probs, thr)
            est = np.array([r.priors[1] for r in results])
            corrected = shift.reweight_multilabel(probs, train, est)
        lo, hi = shift.bootstrap_bbse(vp, vy, probs, kind == "multilabel", thr, n_boot, seed)
        deficient = [r.rank < len(r.priors) for r in results]
        clipped = [r.clipped for r in results]
        if any(deficient):
            log.warning("BBSE: the val confusion matrix is singular%s; undetermined priors stay at no shift",
                        "" if kind == "multiclass" else f" for {sum(deficient)} label(s)")
        if any(clipped):
            log.warning("BBSE: negative importance weights clipped to 0 (small samples, or not pure label shift)")
        # BBSE is one linear solve: nothing to converge; the keys stay for the report and readers
        return corrected, {**info, "query_priors": est, "ci_low": lo, "ci_high": hi, "converged": True,
                           "iterations": 0, "n_val": int(len(vp)),
                           "bbse": {"rank": [r.rank for r in results], "clipped": clipped,
                                    "weights": [r.weights for r in results]}}
    if kind == "multiclass":
        res = shift.em_priors(probs, train, tol, max_iter, strength)
        est, corrected, iters, ok = res.priors, res.posteriors, res.iterations, res.converged
    else:
        est, corrected, iters, ok = shift.em_priors_multilabel(probs, train, tol, max_iter, strength)
    lo, hi = shift.bootstrap_priors(
        probs, train, kind == "multilabel", n_boot, seed, tol, max_iter, strength=strength
    )
    if not ok:
        log.warning("EM did not converge in %d iterations; priors are the last estimate", max_iter)
    return corrected, {**info, "query_priors": est, "ci_low": lo, "ci_high": hi, "converged": ok, "iterations": iters}


def calls_table(ids, probs: np.ndarray, classes: list[str], kind: str, threshold: float, label_thresholds=None,
                call_ratio: float = 0.0) -> pd.DataFrame:
    """One row a sample: the call, its probability, the runners-up and the uncertain flag."""
    order = np.argsort(-probs, axis=1)
    rows = []
    for i, sid in enumerate(ids):
        p = probs[i]
        if kind == "multiclass":
            top = order[i, 0]
            called = [top]
            uncertain = bool(p[top] < threshold)
            rest = order[i, 1:3]
        else:
            pred = predict_multilabel(p[None, :], label_thresholds, call_ratio)[0]
            called = [j for j in order[i] if pred[j]]
            uncertain = not bool((p >= label_thresholds).any())
            rest = [j for j in order[i] if not pred[j]][:2]
        rows.append({
            "id": sid,
            "call": ";".join(classes[j] for j in called),
            "probability": round(float(p[order[i, 0]]), 6),
            "alternatives": "; ".join(f"{classes[j]} ({p[j]:.2f})" for j in rest),
            "uncertain": uncertain,
            **{f"p::{c}": round(float(p[j]), 6) for j, c in enumerate(classes)},
        })
    cols = ["id", "call", "probability", "alternatives", "uncertain"] + [f"p::{c}" for c in classes]
    return pd.DataFrame(rows, columns=cols)


def run(inputs, outputs, params, threads: int = 1) -> None:
    meta, calib = read_json(inputs.meta), read_json(inputs.calibration)
    cfg, seed = params.cfg, int(params.seed)
    kind, classes = meta["kind"], meta["classes"]
    pcfg = cfg.get("prior_shift", {})
    method = pcfg.get("method", "em")
    train = np.asarray(meta["train_priors"], dtype=np.float64)
    df, logits = read_logits(inputs.logits, classes)
    thresholds, call_ratio = call_rule(calib, len(classes))
    val = None
    if method == "bbse":  # BBSE's confusion matrix comes from the labelled val split
        zv, yv = split_arrays(df, logits, meta, "val")
        val = (apply(zv, kind, calib), yv)
    q = (df["split"] == "query").to_numpy()
    calibrated = apply(logits[q], kind, calib)
    corrected, info = correct(kind, calibrated, train, pcfg, classes, seed, val, thresholds)

    # Check the estimator where the truth is known: run it on the labelled test split as if
    # it were a query. EM and BBSE assume p(x|y) is the same in training and query; when the
    # test split shows the correction raising NLL, that assumption fails for this model and
    # data, and the calls keep the calibrated probabilities.
    zt, yt = split_arrays(df, logits, meta, "test")
    cal_t = apply(zt, kind, calib)
    true = np.bincount(yt, minlength=len(classes)) / max(len(yt), 1) if kind == "multiclass" else yt.mean(axis=0)
    test = {"true_priors": true, "estimated_priors": None, "nll_calibrated": nll_of(kind, cal_t, yt)}
    applied, reason = method != "none", ""
    if method in ("em", "bbse"):
        corr_t, test_info = correct(kind, cal_t, train, {**pcfg, "bootstrap": 0}, classes, seed, val, thresholds)
        test |= {"estimated_priors": test_info["query_priors"], "nll_corrected": nll_of(kind, corr_t, yt)}
        if pcfg.get("check", True) and test["nll_corrected"] > test["nll_calibrated"]:
            applied = False
            reason = (f"on the labelled test split {method.upper()} raised NLL from {test['nll_calibrated']:.3f} to "
                      f"{test['nll_corrected']:.3f}, so the label-shift assumption does not hold well enough; "
                      "calls use calibrated probabilities without prior correction")
            log.warning("prior correction not applied: %s", reason)
    priors = {"kind": kind, "classes": classes, "train_priors": train, **info,
              "applied": applied, "reason": reason, "test": test}
    probs = corrected if applied else calibrated
    calls = calls_table(df.loc[q, "id"].tolist(), probs, classes, kind, float(cfg.get("uncertain_below", 0.6)), thresholds,
                        call_ratio)
    heads = meta.get("extra_heads", [])
    if heads:  # e.g. membrane_prob and membrane_call, after the class columns
        z = df.loc[q, [extra_heads.EXTRA + n for n in heads]].to_numpy(np.float64)
        calls = extra_heads.add_call_columns(calls, z, calib.get("extra_heads"), heads, inputs.calibration)
    log.info("%d query calls, %d uncertain", len(calls), int(calls["uncertain"].sum()))
    write_json(priors, outputs.priors)
    with atomic_path(outputs.calls) as tmp:
        calls.to_csv(tmp, sep="\t", index=False)
