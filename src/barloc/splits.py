"""Train/val/test splits of the labelled reference records that never split a group
(a BOLD project, a homology partition)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from barloc.errors import InputError

log = logging.getLogger(__name__)


def grouped_folds(labels: pd.Series, groups: pd.Series, n_folds: int, seed: int) -> np.ndarray:
    """Fold number per record: stratified by label, whole groups per fold.

    Records without a group form singleton groups. Multilabel strings stratify as strings
    (rare combinations merge into their first label) so that folds stay balanced.
    """
    g = groups.astype(object).copy()
    g[g.isna()] = [f"__single__{i}" for i in labels.index[g.isna()]]
    y = labels.astype(str)
    counts = y.value_counts()
    y = y.where(y.map(counts) >= n_folds, y.str.split(";").str[0])
    n_groups = g.nunique()
    if n_groups < n_folds:
        raise InputError(None, f"only {n_groups} groups for {n_folds} folds: lower split.n_folds")
    folds = np.empty(len(y), dtype=np.int64)
    skf = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test_idx) in enumerate(skf.split(np.zeros(len(y)), y, g)):
        folds[test_idx] = k
    return folds


def assign_splits(records: pd.DataFrame, cfg: dict, seed: int) -> pd.DataFrame:
    """``id``, ``split`` of every labelled reference record, by a task's ``split`` block."""
    labelled = records[(records["role"] == "reference") & records["label"].notna()].reset_index(drop=True)
    method = cfg["method"]
    if method == "grouped":
        folds = grouped_folds(labelled["label"], labelled["group"], int(cfg["n_folds"]), seed)
        split = np.where(folds == cfg["test_fold"], "test", np.where(folds == cfg["val_fold"], "val", "train"))
    elif method == "given":
        group = labelled["group"].astype(str)
        test, val = [str(x) for x in cfg["test_groups"]], [str(x) for x in cfg["val_groups"]]
        split = np.where(group.isin(test), "test", np.where(group.isin(val), "val", "train"))
    else:
        raise ValueError(f"unknown split method {method!r}")
    out = pd.DataFrame({"id": labelled["id"], "split": split})
    for name in ("train", "val", "test"):
        if not (out["split"] == name).any():
            raise InputError(None, f"the {name} split is empty: check the split settings and groups")
    train_classes = set(labelled.loc[out["split"] == "train", "label"].str.split(";").explode())
    missing = set(labelled["label"].str.split(";").explode()) - train_classes
    if missing:
        log.warning("classes absent from the training split: %s", sorted(missing))
    log.info("split sizes: %s", out["split"].value_counts().to_dict())
    return out
