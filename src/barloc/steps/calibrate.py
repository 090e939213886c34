"""calibrate: undo the loss's class weighting, fit temperature(s) on val, and for sigmoid
heads pick each label's MCC-optimal threshold."""

from __future__ import annotations

import numpy as np

from barloc import calibrate as cal
from barloc import extra_heads, soft
from barloc.data import targets_for
from barloc.metrics import fit_calls
from barloc.runtime import read_json, write_json
from barloc.steps.predict import read_logits


def split_arrays(df, logits: np.ndarray, meta: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Logits and targets of one split's records with a known class: records with a soft
    target (a probability vector, :mod:`barloc.soft`) are left out, their class being unknown."""
    m = (df["split"] == split).to_numpy() & soft.hard_mask(df)
    return logits[m], targets_for(df.loc[m, "label"].tolist(), meta["classes"], meta["kind"])


def reliability_of(kind: str, probs: np.ndarray, y: np.ndarray, bins: int) -> dict:
    if kind == "multiclass":
        return cal.multiclass_reliability(probs, y, bins)
    return cal.multilabel_reliability(probs, y, bins)


def nll_of(kind: str, probs: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(probs, 1e-12, 1 - 1e-12)
    if kind == "multiclass":
        return float(-np.log(p[np.arange(len(y)), y]).mean())
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def fit(kind: str, method: str, z: np.ndarray, y: np.ndarray, offset: np.ndarray,
        train_priors: np.ndarray) -> dict:
    """Calibration parameters for (z + offset) / T + bias, fitted on val logits ``z`` of a model
    trained under ``train_priors``. Fitted biases are anchored back to those priors
    (:func:`barloc.calibrate.prior_anchor`): without that they carry val's class mix into the
    calls and into prior-shift correction."""
    zo = z + offset
    out: dict = {"method": method, "offset": offset}
    if method == "temperature":
        out["temperature"] = (cal.fit_temperature if kind == "multiclass" else cal.fit_label_temperatures)(zo, y)
        return out
    # bcts: one temperature and a bias per class; vector: a temperature and a bias per class.
    # A sigmoid head's labels are separate problems: both are Platt scaling there.
    fitter = {"bcts": cal.fit_bcts, "vector": cal.fit_vector_scaling}[method] if kind == "multiclass" else cal.fit_platt
    temperature, bias = fitter(zo, y)
    probs_val = cal.apply(zo, kind, {"temperature": temperature, "bias": bias})
    return {**out, "temperature": temperature, "bias": bias + cal.prior_anchor(kind, probs_val, train_priors)}


def _scored_val(meta: dict) -> dict:
    """The meta of the model whose val logits calibrate: the early-stopped one after a refit
    unless ``val_scored_by: refit_model``."""
    refit = meta.get("refit")
    return refit["heldout"] if refit and refit.get("val_scored_by", "first_model") == "first_model" else meta


def fitted_priors(meta: dict) -> np.ndarray:
    """Training priors of the model whose val logits calibrate (see :func:`_scored_val`)."""
    return np.asarray(_scored_val(meta)["train_priors"], dtype=np.float64)


def offsets(meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Logit offsets undoing the class weighting of (the model whose val logits calibrate, the
    model that calls). They differ after a refit (``meta["refit"]``): the early-stopped model's
    weighting followed the training split's counts, the refit model's train + val's."""
    kind, loss = meta["kind"], meta["loss"]
    held = _scored_val(meta)
    return (cal.weighting_offset(kind, loss, np.asarray(held["train_counts"]), held["n_train"]),
            cal.weighting_offset(kind, loss, np.asarray(meta["train_counts"]), meta["n_train"]))


def fit_for_model(meta: dict, method: str, zv: np.ndarray, yv: np.ndarray) -> dict:
    """Calibration of ``meta``'s model from the val logits ``zv`` of the model early-stopped on
    them; the stored offset is the calling model's."""
    fit_offset, offset = offsets(meta)
    return {**fit(meta["kind"], method, zv, yv, fit_offset, fitted_priors(meta)), "offset": offset}


def run(inputs, outputs, params, threads: int = 1) -> None:
    meta = read_json(inputs.meta)
    ccfg = params.cfg.get("calibration", {})
    kind, bins = meta["kind"], int(ccfg.get("ece_bins", 15))
    df, logits = read_logits(inputs.logits, meta["classes"])
    zv, yv = split_arrays(df, logits, meta, "val")
    zt, yt = split_arrays(df, logits, meta, "test")
    params_ = fit_for_model(meta, ccfg.get("method", "temperature"), zv, yv)
    # The val logits are the early-stopped model's: judge the fit on them with its own offset.
    raw_v, cal_v = cal.apply(zv, kind), cal.apply(zv, kind, {**params_, "offset": offsets(meta)[0]})
    out = {
        "kind": kind,
        "classes": meta["classes"],
        **params_,
        "val": {
            "nll_before": nll_of(kind, raw_v, yv),
            "nll_after": nll_of(kind, cal_v, yv),
            "ece_before": cal.ece_from_bins(reliability_of(kind, raw_v, yv, bins)),
            "ece_after": cal.ece_from_bins(reliability_of(kind, cal_v, yv, bins)),
        },
        "reliability": {
            "before": reliability_of(kind, cal.apply(zt, kind), yt, bins),
            "after": reliability_of(kind, cal.apply(zt, kind, params_), yt, bins),
        },
    }
    if kind == "multilabel":
        out.update(fit_calls(cal_v, yv, ccfg.get("call_ratio", "auto")))
    if meta.get("extra_heads"):  # e.g. the membrane flag: its own Platt scaling and threshold
        out["extra_heads"] = extra_heads.fit_calibration(df, meta["extra_heads"])
    write_json(out, outputs.calibration)
