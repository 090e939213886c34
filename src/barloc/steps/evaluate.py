"""evaluate: test-set metrics before calibration, after it, and after prior correction."""

from __future__ import annotations

import numpy as np

from barloc import extra_heads, metrics, soft
from barloc.calibrate import apply, multiclass_ece_floor
from barloc.runtime import read_json, write_json
from barloc.shift import reweight, reweight_multilabel
from barloc.steps.calibrate import split_arrays
from barloc.steps.predict import read_logits


def run(inputs, outputs, params, threads: int = 1) -> None:
    meta, calib = read_json(inputs.meta), read_json(inputs.calibration)
    cfg = params.cfg
    kind, classes = meta["kind"], meta["classes"]
    bins = int(cfg.get("calibration", {}).get("ece_bins", 15))
    df, logits = read_logits(inputs.logits, classes)
    zt, yt = split_arrays(df, logits, meta, "test")
    raw, cal = apply(zt, kind), apply(zt, kind, calib)
    # Prior correction with the priors EM estimated on the test split as if it were a query.
    priors = read_json(inputs.priors)
    est = priors["test"].get("estimated_priors")
    train = np.asarray(meta["train_priors"])
    if est is None:
        shifted = cal
    elif kind == "multiclass":
        shifted = reweight(cal, train, np.asarray(est))
    else:
        shifted = reweight_multilabel(cal, train, np.asarray(est))
    out = {"task": params.task, "kind": kind, "classes": classes, "n_test": int(len(zt))}
    if soft.SOFT in df:  # test records with a soft target: their class is unknown, so no metric counts them
        out["n_test_soft"] = int(((df["split"] == "test").to_numpy() & ~soft.hard_mask(df)).sum())
    if kind == "multiclass":
        for name, p in (("uncalibrated", raw), ("calibrated", cal), ("prior_corrected", shifted)):
            out[name] = metrics.multiclass_metrics(p, yt, bins)
        out["calibrated"]["ece_floor"] = multiclass_ece_floor(cal, bins)
        out["per_class"] = metrics.per_class_multiclass(cal, yt, classes)
        out["confusion"] = {"classes": classes, "matrix": metrics.confusion(cal, yt)}
    else:
        # Thresholds were tuned on calibrated val probabilities; raw probabilities use 0.5.
        thr, ratio = metrics.call_rule(calib, len(classes))
        out["uncalibrated"] = metrics.multilabel_metrics(raw, yt, np.full(len(classes), 0.5), bins)
        out["calibrated"] = metrics.multilabel_metrics(cal, yt, thr, bins, ratio)
        out["prior_corrected"] = metrics.multilabel_metrics(shifted, yt, thr, bins, ratio)
        out["per_class"] = metrics.per_label_mcc(cal, yt, thr, classes, ratio)
    if calib.get("extra_heads"):  # scored on their own, never mixed into the classes' metrics
        out["extra_heads"] = extra_heads.evaluate(df, calib["extra_heads"])
    write_json(out, outputs.metrics)
