"""evaluate: test-set metrics before calibration, after it, and after prior correction, and
the accuracy-coverage curve the report draws."""

from __future__ import annotations

import numpy as np
import pandas as pd

from barloc import extra_heads, metrics, soft
from barloc.artifacts import SPLIT, Calibration, ModelMeta, Priors, write_json
from barloc.calibrate import apply, multiclass_ece_floor
from barloc.calling import Caller, split_arrays


def run(inputs, outputs, params, threads: int = 1) -> None:
    meta, calib = ModelMeta.load(inputs.meta), Calibration.load(inputs.calibration)
    priors = Priors.load(inputs.priors)
    kind, classes = meta.kind, meta.classes
    bins = int(params.cfg["calibration"]["ece_bins"])
    # The cut-off only matters for calls.tsv, never for these metrics: any value will do.
    caller = Caller(meta, calib, 0.0, inputs.calibration)
    df = pd.read_parquet(inputs.logits)
    zt, yt = split_arrays(df, meta, "test")
    raw, cal = apply(zt, kind), caller.calibrate(zt)
    # Prior correction: to the known target priors, the ones the query's calls use; else to
    # the priors EM or BBSE estimated on the test split as if it were a query.
    est = priors.query_priors if priors.method == "known" else (priors.test or {}).get("estimated_priors")
    shifted = cal if est is None else caller.corrected(cal, np.asarray(est, dtype=np.float64))
    out = {"task": params.task, "kind": kind, "classes": classes, "n_test": int(len(zt))}
    # The row whose probabilities make the query's calls: what the report states first.
    out["calls_row"] = "prior_corrected" if priors.applied and est is not None else "calibrated"
    if calib.choice:  # which calibration method, and why (barloc.posthoc.choose_calibration)
        out["calibration_choice"] = calib.choice
    if soft.SOFT in df:  # test records with a soft target: their class is unknown, so no metric counts them
        out["n_test_soft"] = int(((df[SPLIT] == "test").to_numpy() & ~soft.hard_mask(df)).sum())
    if kind == "multiclass":
        for name, p in (("uncalibrated", raw), ("calibrated", cal), ("prior_corrected", shifted)):
            out[name] = metrics.multiclass_metrics(p, yt, bins)
        out["calibrated"]["ece_floor"] = multiclass_ece_floor(cal, bins)
        out["per_class"] = metrics.per_class_multiclass(cal, yt, classes)
        out["confusion"] = {"classes": classes, "matrix": metrics.confusion(cal, yt)}
        # What setting aside the calls below a cut-off buys: the calibrated top probability.
        out["coverage"] = metrics.accuracy_coverage(cal.max(axis=1), cal.argmax(axis=1) == yt)
    else:
        # Thresholds were tuned on calibrated val probabilities; raw probabilities use 0.5.
        thr, ratio = caller.rule
        out["uncalibrated"] = metrics.multilabel_metrics(raw, yt, np.full(len(classes), 0.5), bins)
        rank = caller.rank_logits(zt, cal, cal)
        out["calibrated"] = metrics.multilabel_metrics(cal, yt, thr, bins, ratio, rank)
        out["prior_corrected"] = metrics.multilabel_metrics(
            shifted, yt, thr, bins, ratio, caller.rank_logits(zt, shifted, cal)
        )
        out["per_class"] = metrics.per_label_mcc(cal, yt, thr, classes, ratio, rank)
    if calib.extra_heads:  # scored on their own, never mixed into the classes' metrics
        out["extra_heads"] = extra_heads.evaluate(df, calib.extra_heads)
    write_json(out, outputs.metrics)
