"""calibrate: on the pooled out-of-fold logits, undo the loss's class weighting and choose and
fit the calibration (barloc.posthoc); for sigmoid heads, each label's MCC-optimal threshold
and the call ratio."""

from __future__ import annotations

import pandas as pd

from barloc import calibrate as cal
from barloc import extra_heads
from barloc.artifacts import Calibration, ModelMeta, write_json
from barloc.calling import split_arrays
from barloc.posthoc import calibration_fit, oof_arrays


def run(inputs, outputs, params, threads: int = 1) -> None:
    meta = ModelMeta.load(inputs.meta)
    ccfg = params.cfg["calibration"]
    kind, bins = meta.kind, int(ccfg["ece_bins"])
    df = pd.read_parquet(inputs.logits)
    zv, yv, folds = oof_arrays(df, meta)
    zt, yt = split_arrays(df, meta, "test")
    # a task that calls under known priors has its calibration judged by those calls
    # cal_v: judged out of fold, each fold calibrated by the chosen method fitted on the others
    fitted, cal_v = calibration_fit(meta, zv, yv, folds, ccfg, params.cfg.get("prior_shift"))
    raw_v = cal.apply(zv, kind)
    out = Calibration(
        kind=kind,
        classes=meta.classes,
        **fitted,
        val={
            "nll_before": cal.nll_of(kind, raw_v, yv),
            "nll_after": cal.nll_of(kind, cal_v, yv),
            "ece_before": cal.ece_from_bins(cal.reliability_of(kind, raw_v, yv, bins)),
            "ece_after": cal.ece_from_bins(cal.reliability_of(kind, cal_v, yv, bins)),
        },
        reliability={
            "before": cal.reliability_of(kind, cal.apply(zt, kind), yt, bins),
            "after": cal.reliability_of(kind, cal.apply(zt, kind, fitted), yt, bins),
        },
    )
    if meta.heads:  # e.g. the membrane flag: its own Platt scaling and threshold
        out.extra_heads = extra_heads.fit_calibration(df, meta.heads)
    write_json(out, outputs.calibration)
