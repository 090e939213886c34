"""calibrate: undo the loss's class weighting, fit temperature(s) on val, and for sigmoid
heads pick each label's MCC-optimal threshold and the call ratio."""

from __future__ import annotations

import pandas as pd

from barloc import calibrate as cal
from barloc import extra_heads
from barloc.artifacts import Calibration, ModelMeta, write_json
from barloc.calling import split_arrays
from barloc.metrics import fit_calls


def run(inputs, outputs, params, threads: int = 1) -> None:
    meta = ModelMeta.load(inputs.meta)
    ccfg = params.cfg["calibration"]
    kind, bins = meta.kind, int(ccfg["ece_bins"])
    df = pd.read_parquet(inputs.logits)
    zv, yv = split_arrays(df, meta, "val")
    zt, yt = split_arrays(df, meta, "test")
    fitted = cal.fit_for_model(meta, ccfg["method"], zv, yv)
    # The val logits are the early-stopped model's: judge the fit on them with its own offset.
    raw_v, cal_v = cal.apply(zv, kind), cal.apply(zv, kind, {**fitted, "offset": cal.offsets(meta)[0]})
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
    if kind == "multilabel":
        rule = fit_calls(cal_v, yv, ccfg["call_ratio"])
        out.thresholds, out.call_ratio = rule["thresholds"], rule["call_ratio"]
    if meta.heads:  # e.g. the membrane flag: its own Platt scaling and threshold
        out.extra_heads = extra_heads.fit_calibration(df, meta.heads)
    write_json(out, outputs.calibration)
