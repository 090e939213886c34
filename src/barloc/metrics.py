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

from barloc.calibrate import (
    binary_nll,
    brier,
    ece_from_bins,
    logit,
    multiclass_reliability,
    multilabel_reliability,
)

THRESHOLD_GRID = np.round(np.arange(0.02, 0.99, 0.01), 2)
RATIO_GRID = np.round(np.arange(0.0, 1.0001, 0.05), 2)


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


def predict_multilabel(
    probs: np.ndarray, thresholds: np.ndarray, ratio: float = 0.0, logits: np.ndarray | None = None
) -> np.ndarray:
    """Labels at or above their threshold and at least ``ratio`` times the protein's top label's
    probability; every protein keeps at least its top label.

    With ``logits`` (calibration.json ``call_ratio_on: logits``, docs/method.md#calls) the top
    label and the ratio are those of the logits' softmax, exp(z_j - z_max); the calibrated
    probabilities still face the thresholds."""
    pred = probs >= thresholds
    if len(probs):
        rank = probs if logits is None else np.exp(logits - logits.max(axis=1, keepdims=True))
        top = rank.argmax(axis=1)
        if ratio > 0:
            pred &= rank >= ratio * rank[np.arange(len(rank)), top][:, None]
        pred[np.arange(len(probs)), top] = True
    return pred


def moved_logits(logits: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``logits`` moved by what a correction did to each label's calibrated logit (probabilities
    ``before`` -> ``after``), so that :func:`predict_multilabel`'s ratio of them ranks as the
    prior-corrected probabilities do."""
    return logits + logit(after) - logit(before)


def fit_call_ratio(
    probs: np.ndarray,
    Y: np.ndarray,
    thresholds: np.ndarray,
    grid: np.ndarray = RATIO_GRID,
    logits: np.ndarray | None = None,
) -> float:
    """The ``ratio`` of :func:`predict_multilabel` that maximises the mean of micro- and
    macro-F1 on validation data (the smallest such, so 0, plain per-label thresholds, wins ties).

    Per-label MCC-optimal thresholds are each right for their label alone, but a weak model's
    low thresholds add up: it called 2.5 locations per protein for 1.2 true ones
    (benchmarks/README.md). The ratio keeps a call only when its probability (or, with
    ``logits``, its softmax share) is not far below the protein's strongest; the probabilities
    themselves stay independent per label.
    """
    Y = np.asarray(Y, dtype=bool)
    if not len(Y):
        return 0.0

    def score(r: float) -> float:
        pred = predict_multilabel(probs, thresholds, r, logits)
        return f1_score(Y, pred, average="micro", zero_division=0) + f1_score(Y, pred, average="macro", zero_division=0)

    scores = [score(float(r)) for r in grid]
    return float(grid[int(np.argmax(scores))])


def fit_calls(
    probs: np.ndarray, Y: np.ndarray, call_ratio: float | str = "auto", logits: np.ndarray | None = None
) -> dict:
    """A sigmoid model's calling rule, fitted on calibrated validation probabilities: per-label
    MCC-optimal ``thresholds`` and the ``call_ratio`` (``"auto"``: :func:`fit_call_ratio`), of
    the probabilities or, with ``logits``, of their softmax (:func:`predict_multilabel`)."""
    thresholds = mcc_thresholds(probs, Y)
    ratio = fit_call_ratio(probs, Y, thresholds, logits=logits) if call_ratio == "auto" else float(call_ratio)
    return {"thresholds": thresholds, "call_ratio": ratio}


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
    tp = float(np.sum(y & p))
    tn = float(np.sum(~y & ~p))
    fp = float(np.sum(~y & p))
    fn = float(np.sum(y & ~p))
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / den if den > 0 else 0.0


def multilabel_metrics(
    probs: np.ndarray,
    Y: np.ndarray,
    thresholds: np.ndarray,
    n_bins: int = 15,
    ratio: float = 0.0,
    logits: np.ndarray | None = None,
) -> dict:
    """DeepLoc 2.0 definitions: exact-match accuracy (all labels right), sample-averaged
    Jaccard, micro- and macro-F1 over labels; plus NLL and ECE of the per-label probabilities.
    The calls are :func:`predict_multilabel`'s (``logits``: the ratio of their softmax)."""
    Y = Y.astype(bool)
    pred = predict_multilabel(probs, thresholds, ratio, logits)
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


def per_label_mcc(
    probs: np.ndarray,
    Y: np.ndarray,
    thresholds: np.ndarray,
    labels: list[str],
    ratio: float = 0.0,
    logits: np.ndarray | None = None,
) -> dict:
    pred = predict_multilabel(probs, thresholds, ratio, logits)
    return {
        lab: {
            "mcc": float(matthews_corrcoef(Y[:, j], pred[:, j])) if len(Y) else float("nan"),
            "threshold": float(thresholds[j]),
            "support": int(Y[:, j].sum()),
        }
        for j, lab in enumerate(labels)
    }


#: Round cut-offs the report lists under the accuracy-vs-coverage curve (plus the configured one).
COVERAGE_CUTOFFS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def accuracy_coverage(confidence: np.ndarray, correct: np.ndarray) -> dict:
    """The accuracy-vs-coverage curve of a top-label confidence.

    Keeping the samples whose confidence is >= t: coverage(t) is the share kept and
    accuracy(t) the share of those that are right. One point per distinct confidence, from
    the most confident sample down to all samples (coverage 1). JSON-ready: lists and ``n``.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    n = len(conf)
    if n == 0:
        return {"threshold": [], "coverage": [], "accuracy": [], "n": 0}
    order = np.argsort(-conf, kind="stable")
    conf, hit = conf[order], hit[order]
    kept = np.arange(1, n + 1)
    acc = np.cumsum(hit) / kept
    # With ties, a cut-off keeps every sample of that confidence: the last index of each run.
    last = np.r_[conf[1:] != conf[:-1], True]
    return {
        "threshold": conf[last].tolist(),
        "coverage": (kept[last] / n).tolist(),
        "accuracy": acc[last].tolist(),
        "n": int(n),
    }


def coverage_at(curve: dict, cutoff: float) -> tuple[float, float]:
    """(coverage, accuracy) of :func:`accuracy_coverage`'s ``curve`` when samples below
    ``cutoff`` are set aside; accuracy is NaN when none is kept."""
    kept = [i for i, t in enumerate(curve["threshold"]) if t >= cutoff]
    if not kept:
        return 0.0, float("nan")
    i = kept[-1]
    return float(curve["coverage"][i]), float(curve["accuracy"][i])
