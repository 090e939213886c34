"""Grouped cross-validation: out-of-fold logits for a task, the basis of the benchmarks.

Fold k is the test fold, fold k+1 (mod n) the validation fold for early stopping and
calibration, the rest train. Groups (BOLD projects, homology partitions) never straddle folds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from barloc import soft
from barloc.artifacts import LOGIT, Calibration
from barloc.calibrate import fit_for_model
from barloc.calling import Caller
from barloc.config import with_defaults
from barloc.data import targets_for
from barloc.scoring import model_logits
from barloc.splits import grouped_folds
from barloc.training import task_classes, train_for_calls


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
    """Out-of-fold raw logits and calibrated probabilities for every labelled record.

    Returns a frame (id, label, fold, logit::c..., prob::c...) and per-fold info dicts
    (meta, calibration). Calibration is fitted on each fold's own validation fold.
    Records with a soft target (:mod:`barloc.soft`) train like in the workflow but, their
    class being unknown, are left out of the calibration fit and of the returned frame.
    ``folds`` (one fold number per record) fixes the folds, so that runs with other training
    seeds (ensemble members, seed spread) share them; by default they come from ``seed``.
    """
    labelled = labelled.reset_index(drop=True)
    folds = assign_folds(labelled, n_folds, seed) if folds is None else np.asarray(folds)
    classes = task_classes(labelled["label"], cfg, soft.column(labelled))  # as the workflow's training orders them
    cfg = with_defaults({**cfg, "classes": classes})
    hard = soft.hard_mask(labelled)
    parts, info = [], []
    for k in range(n_folds):
        val_k = (k + 1) % n_folds
        test_m, val_m = folds == k, folds == val_k
        train_m = ~(test_m | val_m)
        trained = train_for_calls(labelled[train_m], labelled[val_m], cfg, trainer_cfg, seed + k, f"fold{k}")
        meta = trained.meta
        val_m, test_m = val_m & hard, test_m & hard
        logits = {}
        # As in the workflow: val logits from the model early-stopped on them (see train.refit).
        for name, m, model in (("val", val_m, trained.val_model), ("test", test_m, trained.model)):
            logits[name] = model_logits(model, meta, labelled[m], 256)[:, : len(classes)]
        yv = targets_for(labelled.loc[val_m, "label"].tolist(), classes, cfg["kind"])
        calib = fit_for_model(meta, cfg["calibration"]["method"], logits["val"], yv)
        probs = Caller(meta, Calibration(**calib), 0.0).calibrate(logits["test"])
        frame = pd.DataFrame(
            {"id": labelled.loc[test_m, "id"].to_numpy(), "label": labelled.loc[test_m, "label"].to_numpy(), "fold": k}
        )
        frame[[LOGIT + c for c in classes]] = logits["test"]
        frame[[f"prob::{c}" for c in classes]] = probs
        parts.append(frame)
        info.append({"fold": k, "meta": meta, "calibration": calib})
    return pd.concat(parts, ignore_index=True), info
