"""Test-set metrics: multiclass, and multilabel exactly as DeepLoc 2.0 reports them."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
)

from barloc.calibrate import binary_nll, brier, ece_from_bins, multiclass_reliability, multilabel_reliability

THRESHOLD_GRID = np.round(np.arange(0.02, 0.99, 0.01), 2)


def multiclass_metrics(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict:
    """Accuracy, balanced accuracy, macro-F1, NLL, ECE and Brier of probability rows."""
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    labels = np.arange(k)
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if len(y) else float("nan"),
        "macro_f1": float(f1_score(y, pred, labels=labels[np.isin(labels, y)], average="macro", zero_division=0)),
        "nll": float(-np.log(p_true).mean()),
        "ece": ece_from_bins(multiclass_reliability(probs, y, n_bins)),
        "brier": brier(probs, np.eye(k)[y]),
    }


def confusion(probs: np.ndarray, y: np.ndarray) -> list[list[int]]:
    """Counts, rows = true class, columns = predicted class."""
    k = probs.shape[1]
    return confusion_matrix(y, probs.argmax(axis=1), labels=np.arange(k)).tolist()


def per_class_multiclass(probs: np.ndarray, y: np.ndarray, classes: list[str]) -> dict:
    pred = probs.argmax(axis=1)
    f1 = f1_score(y, pred, labels=np.arange(len(classes)), average=None, zero_division=0)
    out = {}
    for j, c in enumerate(classes):
        support = int((y == j).sum())
        recall = float((pred[y == j] == j).mean()) if support else float("nan")
        out[c] = {"support": support, "recall": recall, "f1": float(f1[j])}
    return out


def predict_multilabel(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Labels at or above their threshold; every protein keeps at least its top label."""
    pred = probs >= thresholds
    if len(probs):
        pred[np.arange(len(probs)), probs.argmax(axis=1)] = True
    return pred


def mcc_thresholds(probs: np.ndarray, Y: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """Per-label threshold that maximises MCC on validation data (as DeepLoc 2.0 does)."""
    out = np.full(Y.shape[1], 0.5)
    for j in range(Y.shape[1]):
        y = Y[:, j].astype(bool)
        if y.all() or not y.any():
            continue  # MCC is undefined; keep 0.5
        scores = [_mcc(y, probs[:, j] >= t) for t in grid]
        out[j] = float(grid[int(np.argmax(scores))])
    return out


def _mcc(y: np.ndarray, p: np.ndarray) -> float:
    tp = float(np.sum(y & p)); tn = float(np.sum(~y & ~p))
    fp = float(np.sum(~y & p)); fn = float(np.sum(y & ~p))
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / den if den > 0 else 0.0


def multilabel_metrics(probs: np.ndarray, Y: np.ndarray, thresholds: np.ndarray, n_bins: int = 15) -> dict:
    """DeepLoc 2.0 definitions: exact-match accuracy (all labels right), sample-averaged
    Jaccard, micro- and macro-F1 over labels; plus NLL and ECE of the per-label probabilities."""
    Y = Y.astype(bool)
    pred = predict_multilabel(probs, thresholds)
    inter = (pred & Y).sum(axis=1)
    union = (pred | Y).sum(axis=1)
    jacc = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return {
        "exact_match": float((pred == Y).all(axis=1).mean()),
        "jaccard": float(jacc.mean()),
        "micro_f1": float(f1_score(Y, pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(Y, pred, average="macro", zero_division=0)),
        "nll": binary_nll(np.log(np.clip(probs, 1e-12, 1)) - np.log(np.clip(1 - probs, 1e-12, 1)), Y),
        "ece": ece_from_bins(multilabel_reliability(probs, Y, n_bins)),
    }


def per_label_mcc(probs: np.ndarray, Y: np.ndarray, thresholds: np.ndarray, labels: list[str]) -> dict:
    pred = predict_multilabel(probs, thresholds)
    return {
        lab: {
            "mcc": float(matthews_corrcoef(Y[:, j], pred[:, j])) if len(Y) else float("nan"),
            "threshold": float(thresholds[j]),
            "support": int(Y[:, j].sum()),
        }
        for j, lab in enumerate(labels)
    }
