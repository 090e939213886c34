"""Grouped cross-validation of the whole recipe, the basis of the benchmarks.

Each fold k in turn is the test fold. The other folds are the workflow's non-test records:
cross-fitting on them (each of them one fold, :func:`barloc.training.crossfit.cross_fit`), the
post-hoc fits on their out-of-fold logits (:mod:`barloc.posthoc`), then fold k scored as the
workflow scores its test split and its query: calibrated, and prior-corrected by EM with fold k
as the query where the held-out check let it. Groups (BOLD projects, homology partitions) never
straddle folds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from barloc import soft
from barloc.artifacts import LOGIT, Calibration, logit_columns
from barloc.calling import Caller, correct
from barloc.config import with_defaults
from barloc.posthoc import calibration_fit, decide, oof_arrays, shift_check
from barloc.scoring import model_logits
from barloc.splits import grouped_folds
from barloc.training import task_classes
from barloc.training.crossfit import cross_fit, to_calling_model

#: out_of_fold's probability columns: calibrated by the refit model, by the fold models'
#: ensemble, and the final calls' (after prior correction where it was applied)
PROB, ENSEMBLE, FINAL = "prob::", "ensemble::", "final::"


def assign_folds(labelled: pd.DataFrame, n_folds: int, seed: int) -> np.ndarray:
    """Fold per record: the given groups when there are exactly n_folds of them, else grouped folds."""
    groups = labelled["group"].astype(str)
    if groups.nunique() == n_folds:
        return groups.map({g: i for i, g in enumerate(sorted(groups.unique()))}).to_numpy()
    return grouped_folds(labelled["label"], labelled["group"], n_folds, seed)


def out_of_fold(
    labelled: pd.DataFrame,
    cfg: dict,
    trainer_cfg: dict,
    n_folds: int = 5,
    seed: int = 0,
    folds: np.ndarray | None = None,
) -> tuple[pd.DataFrame, list[dict]]:
    """Every labelled record scored as a test record of the workflow, once.

    Returns a frame (id, label, fold, logit::c (the refit model's), prob::c (calibrated),
    ensemble::c (the fold models' mean logits, calibrated the same way), final::c (the calls'
    probabilities)) and per-fold info dicts (meta, calibration, check, applied). Records with
    a soft target train but, their class being unknown, are not scored. ``folds`` fixes the
    folds, so that runs with other training seeds share them; by default they come from ``seed``.
    """
    labelled = labelled.reset_index(drop=True)
    folds = assign_folds(labelled, n_folds, seed) if folds is None else np.asarray(folds)
    classes = task_classes(labelled["label"], cfg, soft.column(labelled))  # as the workflow's training orders them
    cfg = with_defaults({**cfg, "classes": classes})
    pcfg = cfg["prior_shift"]
    hard = soft.hard_mask(labelled)
    parts, info = [], []
    for k in range(n_folds):
        test_m = folds == k
        fit = cross_fit(labelled[~test_m], folds[~test_m], cfg, trainer_cfg, seed + 100 * k, f"fold{k}")
        meta = fit.meta
        z, y, inner = oof_arrays(fit.oof, meta)
        fields, cf_probs = calibration_fit(meta, z, y, inner, cfg["calibration"], pcfg)
        calib = Calibration(kind=meta.kind, classes=classes, **fields)
        check = shift_check(meta, calib, z, y, inner, pcfg, seed, cf_probs)
        test = labelled[test_m & hard]
        zt = model_logits(fit.model, meta, test, 256)[:, : len(classes)]
        members = [
            model_logits(m, mm, test, 256)[:, : len(classes)] + to_calling_model(mm, meta) for m, mm in fit.members
        ]
        caller = Caller(meta, calib, 0.0)
        probs = caller.calibrate(zt)
        applied = decide(pcfg["method"], bool(pcfg["check"]), int(len(test)), check)[0]
        final = probs
        if applied:
            val = (caller.calibrate(z), y) if pcfg["method"] == "bbse" else None
            rule = caller.rule[0] if meta.kind == "multilabel" else None
            final, _ = correct(meta.kind, probs, meta.priors, {**pcfg, "bootstrap": 0}, classes, seed, val, rule)
        frame = pd.DataFrame({"id": test["id"].to_numpy(), "label": test["label"].to_numpy(), "fold": k})
        frame[logit_columns(classes)] = zt
        frame[[PROB + c for c in classes]] = probs
        frame[[ENSEMBLE + c for c in classes]] = caller.calibrate(np.mean(members, axis=0))
        frame[[FINAL + c for c in classes]] = final
        parts.append(frame)
        info.append({"fold": k, "meta": meta, "calibration": calib, "check": check, "applied": bool(applied)})
    return pd.concat(parts, ignore_index=True), info


__all__ = ["ENSEMBLE", "FINAL", "LOGIT", "PROB", "assign_folds", "out_of_fold"]
