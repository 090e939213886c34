"""Soft targets: a record whose origin is uncertain, given as a probability vector.

A labels sheet without a ``label`` column has one column per class. A row of 0/1 flags is a
hard label; a row with a fraction in it (``0.7  0.3  0``) is that record's probability vector
over the classes (multiclass tasks only). In the record table it is kept as

- ``label``: its *nominal* class, the most probable one (the first column on a tie), so that
  splits stay stratified, ``min_class_size`` counts it and nothing downstream meets a record
  without a class;
- ``label_probs`` (:data:`SOFT`): JSON ``{"class": probability}`` of its non-zero entries,
  summing to 1. The column exists only when some record has a soft target, so tables from
  hard labels are exactly what they were before soft targets existed.

Training uses the vector: the loss is the expected loss of a hard label drawn from it
(:func:`barloc.losses.softmax_focal_loss`); without class weights, focal term or smoothing
that is cross-entropy against the vector, whose gradient with respect to the logits is p - q. Evaluation leaves such records out of every metric that needs a
known class (test metrics, the calibration fit, the prior-shift check), because their class
is not known; ``metrics.json`` counts them in ``n_test_soft``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

SOFT = "label_probs"
#: How far a probability row may sum from 1 (rounding to two decimals over a few classes).
SUM_TOLERANCE = 0.01


def encode(probs: dict[str, float]) -> str:
    """JSON of the non-zero entries, rescaled to sum to exactly 1, in the given order."""
    total = sum(probs.values())
    return json.dumps({c: p / total for c, p in probs.items() if p > 0})


def decode(text: object) -> dict[str, float] | None:
    """The probability dict of a ``label_probs`` cell, or None for a hard (or no) label."""
    if text is None or pd.isna(text):
        return None
    return json.loads(str(text))


def nominal(probs: dict[str, float]) -> str:
    """The most probable class; the first one (column order) on a tie."""
    return max(probs, key=lambda c: probs[c])


def has_soft(df: pd.DataFrame) -> bool:
    return SOFT in df.columns and bool(df[SOFT].notna().any())


def column(df: pd.DataFrame) -> list | None:
    """The ``label_probs`` cells of ``df`` as a list, or None when it has no soft target."""
    return df[SOFT].tolist() if has_soft(df) else None


def classes_in(cells: Iterable[object] | None) -> set[str]:
    """Every class that some soft target gives a non-zero probability."""
    out: set[str] = set()
    for cell in () if cells is None else cells:
        probs = decode(cell)
        if probs:
            out.update(probs)
    return out


def target_matrix(labels: Sequence[str | None], cells: Sequence[object], classes: list[str]) -> np.ndarray:
    """(n, classes) float32 targets: a one-hot row per hard label, the vector per soft target,
    zeros for an unknown label."""
    index = {c: i for i, c in enumerate(classes)}
    Y = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for r, (label, cell) in enumerate(zip(labels, cells)):
        probs = decode(cell)
        if probs:
            for c, p in probs.items():
                Y[r, index[c]] = p
        elif label is not None and not pd.isna(label):
            Y[r, index[label]] = 1.0
    return Y


def drop_classes(df: pd.DataFrame, dropped: set[str]) -> pd.DataFrame:
    """Take ``dropped`` classes out of every soft target: the rest is rescaled to sum to 1 and
    the nominal label follows; a target with nothing left becomes unknown."""
    if not has_soft(df) or not dropped:
        return df
    df = df.copy()
    for i in df.index[df[SOFT].notna()]:
        kept = {c: p for c, p in decode(df.at[i, SOFT]).items() if c not in dropped}
        if kept:
            df.at[i, SOFT] = encode(kept)
            df.at[i, "label"] = nominal(kept)
        else:
            df.at[i, SOFT] = None
            df.at[i, "label"] = None
    return df


def hard_mask(df: pd.DataFrame) -> np.ndarray:
    """True for rows without a soft target (all rows of a table without the column)."""
    if SOFT not in df.columns:
        return np.ones(len(df), dtype=bool)
    return df[SOFT].isna().to_numpy()


def parquet_columns(path: object, columns: list[str]) -> list[str]:
    """``columns`` plus ``label_probs`` when the parquet file at ``path`` has it."""
    from barloc.artifacts import present_columns

    return columns + present_columns(path, [SOFT])


def targets(df: pd.DataFrame, classes: list[str], kind: str) -> np.ndarray:
    """Training targets for ``df`` (columns label [, label_probs]): class indices as
    :func:`barloc.data.targets_for` gives them, or, when a multiclass record has a soft
    target, the (n, classes) matrix of :func:`target_matrix`."""
    cells = column(df)
    if cells is None or kind != "multiclass":
        from barloc.data import targets_for  # torch and Lightning only where training needs them

        return targets_for(df["label"].tolist(), classes, kind)
    return target_matrix(df["label"].tolist(), cells, classes)


def key_columns(df: pd.DataFrame) -> list[str]:
    """The columns that decide what a training run learns from: sequence, label and, when
    present, label_probs (for the resume fingerprint)."""
    return ["sequence", "label"] + ([SOFT] if SOFT in df.columns else [])
