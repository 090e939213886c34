"""Test split and cross-fitting folds of the labelled reference records that never split a
group (a BOLD project, a homology partition)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from barloc.artifacts import FOLD, GROUP, ID, LABEL, ROLE, SPLIT
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
    """``id``, ``split`` (train or test) and ``fold`` (a train record's cross-fitting fold,
    0..K-1; empty for test) of every labelled reference record, by a task's ``split`` block."""
    labelled = records[(records[ROLE] == "reference") & records[LABEL].notna()].reset_index(drop=True)
    n = int(cfg["n_folds"])
    if cfg["method"] == "grouped":
        folds = grouped_folds(labelled[LABEL], labelled[GROUP], n, seed)
        test = folds == cfg["test_fold"]
        inner = np.unique(folds[~test])
        fold = np.searchsorted(inner, folds)  # the other folds, numbered 0..n-2
    elif cfg["method"] == "given":
        test = labelled[GROUP].astype(str).isin([str(x) for x in cfg["test_groups"]]).to_numpy()
        rest = labelled.loc[~test]
        groups = sorted(rest[GROUP].astype(str).unique())
        fold = np.full(len(labelled), -1)
        if 0 < len(groups) <= n - 1:  # each group its own fold (DeepLoc partitions)
            fold[~test] = rest[GROUP].astype(str).map({g: i for i, g in enumerate(groups)}).to_numpy()
        elif len(groups):
            fold[~test] = grouped_folds(rest[LABEL], rest[GROUP], n - 1, seed)
    else:
        raise ValueError(f"unknown split method {cfg['method']!r}")
    out = pd.DataFrame({ID: labelled[ID], SPLIT: np.where(test, "test", "train")})
    out[FOLD] = pd.Series(fold, dtype="Int64").mask(test)
    if not test.any():
        raise InputError(None, "the test split is empty: check the split settings and groups")
    if out.loc[~test, FOLD].nunique() < 2:
        raise InputError(
            None,
            "cross-fitting needs the non-test records in at least 2 groups: "
            "check the split settings and the records' groups",
        )
    train_classes = set(labelled.loc[~test, LABEL].str.split(";").explode())
    missing = set(labelled[LABEL].str.split(";").explode()) - train_classes
    if missing:
        log.warning("classes absent from the non-test records: %s", sorted(missing))
    log.info(
        "split: %d test, %d in %d cross-fitting folds",
        int(test.sum()),
        int((~test).sum()),
        out.loc[~test, FOLD].nunique(),
    )
    return out


def read_splits(path) -> pd.DataFrame:
    """splits.tsv as written by :func:`assign_splits` (fold as a nullable integer)."""
    return pd.read_csv(path, sep="\t", dtype={ID: str, SPLIT: str, FOLD: "Int64"})
