"""prior_shift: correct query probabilities for the query set's class priors; write calls."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from barloc.artifacts import ID, QUERY, SPLIT, Calibration, ModelMeta, Priors, write_json, write_tsv
from barloc.calibrate import nll_of
from barloc.calling import Caller, class_logits, correct, extra_logits, split_arrays
from barloc.posthoc import decide, oof_arrays, shift_check

log = logging.getLogger(__name__)


def run(inputs, outputs, params, threads: int = 1) -> None:
    meta, calib = ModelMeta.load(inputs.meta), Calibration.load(inputs.calibration)
    pcfg, seed = params.cfg["prior_shift"], int(params.seed)
    caller = Caller(meta, calib, float(params.cfg["uncertain_below"]), inputs.calibration)
    kind, classes, train = meta.kind, meta.classes, meta.priors
    df = pd.read_parquet(inputs.logits)
    thresholds, _ = caller.rule
    method = pcfg["method"]
    zv, yv, folds = oof_arrays(df, meta)
    # BBSE's confusion matrix comes from the out-of-fold rows
    val = (caller.calibrate(zv), yv) if method == "bbse" else None
    q = (df[SPLIT] == QUERY).to_numpy()
    zq = class_logits(df.loc[q], classes)
    calibrated = caller.calibrate(zq)
    corrected, info = correct(kind, calibrated, train, pcfg, classes, seed, val, thresholds)

    # What the correction does to the calls on held-out data decides; the test split is only
    # scored: the estimator run on it as if it were a query (evaluate's prior_corrected figures).
    heldout = shift_check(meta, calib, zv, yv, folds, pcfg, seed)
    zt, yt = split_arrays(df, meta, "test")
    cal_t = caller.calibrate(zt)
    true = np.bincount(yt, minlength=len(classes)) / max(len(yt), 1) if kind == "multiclass" else yt.mean(axis=0)
    test = {"true_priors": true, "estimated_priors": None, "nll_calibrated": nll_of(kind, cal_t, yt)}
    if method in ("em", "bbse"):
        corr_t, test_info = correct(kind, cal_t, train, {**pcfg, "bootstrap": 0}, classes, seed, val, thresholds)
        test |= {"estimated_priors": test_info["query_priors"], "nll_corrected": nll_of(kind, corr_t, yt)}
    applied, decision, reason = decide(method, bool(pcfg["check"]), int(q.sum()), heldout)
    if decision["code"] == "check_failed":
        log.warning("prior correction not applied: %s", reason)
    priors = Priors(
        kind=kind,
        classes=classes,
        train_priors=train,
        applied=applied,
        decision=decision,
        reason=reason,
        heldout=heldout,
        test=test,
        **info,
    )
    calls = caller.calls(
        df.loc[q, ID], corrected if applied else calibrated, extra_logits(df.loc[q], meta), zq, calibrated
    )
    log.info("%d query calls, %d uncertain", len(calls), int(calls["uncertain"].sum()))
    write_json(priors, outputs.priors)
    write_tsv(calls, outputs.calls)
