"""prior_shift: correct query probabilities for the query set's class priors; write calls."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from barloc.artifacts import ID, QUERY, SPLIT, Calibration, ModelMeta, Priors, write_json, write_tsv
from barloc.calibrate import nll_of
from barloc.calling import Caller, class_logits, correct, extra_logits, split_arrays

log = logging.getLogger(__name__)


def decide(method: str, check: bool, n_query: int, test: dict) -> tuple[bool, dict, str]:
    """(applied, decision, reason): whether the calls use the corrected probabilities, the
    machine-readable decision (priors.json ``decision``; codes in artifacts.DECISION_CODES) and
    the same as a sentence for the log. EM and BBSE assume p(x|y) is the same in training and
    query; when the labelled test split shows the correction raising NLL, that assumption fails
    for this model and data, and the calls keep the calibrated probabilities."""
    if method == "none":
        return False, {"code": "not_requested"}, "prior_shift.method is none"
    if n_query == 0:
        return False, {"code": "no_query"}, "there are no query samples to correct"
    if method in ("em", "bbse") and check and test["nll_corrected"] > test["nll_calibrated"]:
        before, after = test["nll_calibrated"], test["nll_corrected"]
        reason = (
            f"on the labelled test split {method.upper()} raised NLL from {before:.3f} to {after:.3f}, so the "
            "label-shift assumption does not hold well enough; calls use calibrated probabilities"
        )
        return (
            False,
            {"code": "check_failed", "metric": "nll", "split": "test", "before": before, "after": after},
            reason,
        )
    return True, {"code": "applied"}, ""


def run(inputs, outputs, params, threads: int = 1) -> None:
    meta, calib = ModelMeta.load(inputs.meta), Calibration.load(inputs.calibration)
    pcfg, seed = params.cfg["prior_shift"], int(params.seed)
    caller = Caller(meta, calib, float(params.cfg["uncertain_below"]), inputs.calibration)
    kind, classes, train = meta.kind, meta.classes, meta.priors
    df = pd.read_parquet(inputs.logits)
    thresholds, _ = caller.rule
    method = pcfg["method"]
    val = None
    if method == "bbse":  # BBSE's confusion matrix comes from the labelled val split
        zv, yv = split_arrays(df, meta, "val")
        val = (caller.calibrate(zv), yv)
    q = (df[SPLIT] == QUERY).to_numpy()
    calibrated = caller.calibrate(class_logits(df.loc[q], classes))
    corrected, info = correct(kind, calibrated, train, pcfg, classes, seed, val, thresholds)

    # Check the estimator where the truth is known: run it on the labelled test split as if
    # it were a query.
    zt, yt = split_arrays(df, meta, "test")
    cal_t = caller.calibrate(zt)
    true = np.bincount(yt, minlength=len(classes)) / max(len(yt), 1) if kind == "multiclass" else yt.mean(axis=0)
    test = {"true_priors": true, "estimated_priors": None, "nll_calibrated": nll_of(kind, cal_t, yt)}
    if method in ("em", "bbse"):
        corr_t, test_info = correct(kind, cal_t, train, {**pcfg, "bootstrap": 0}, classes, seed, val, thresholds)
        test |= {"estimated_priors": test_info["query_priors"], "nll_corrected": nll_of(kind, corr_t, yt)}
    applied, decision, reason = decide(method, bool(pcfg["check"]), int(q.sum()), test)
    if decision["code"] == "check_failed":
        log.warning("prior correction not applied: %s", reason)
    priors = Priors(
        kind=kind,
        classes=classes,
        train_priors=train,
        applied=applied,
        decision=decision,
        reason=reason,
        test=test,
        **info,
    )
    calls = caller.calls(df.loc[q, ID], corrected if applied else calibrated, extra_logits(df.loc[q], meta))
    log.info("%d query calls, %d uncertain", len(calls), int(calls["uncertain"].sum()))
    write_json(priors, outputs.priors)
    write_tsv(calls, outputs.calls)
