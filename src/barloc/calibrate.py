"""Temperature scaling (Guo et al. 2017) and reliability statistics.

Dividing logits by T > 1 softens over-confident probabilities without changing the argmax.
T is fitted by minimising NLL on validation logits, in float64 and in log-space so that
huge logits, constant logits and single-class validation sets all stay finite.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit, log_softmax, softmax

LOG_T_BOUNDS = (-4.0, 6.0)  # T in [0.018, 403]: wide enough for any sane network


def softmax_probs(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def sigmoid_probs(logits: np.ndarray, temperature: np.ndarray | float = 1.0) -> np.ndarray:
    return expit(np.asarray(logits, dtype=np.float64) / temperature)


def softmax_nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of class indices ``y``."""
    lp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-lp[np.arange(len(y)), y].mean())


def binary_nll(logits: np.ndarray, y: np.ndarray, temperature: np.ndarray | float = 1.0) -> float:
    """Mean binary NLL over every (sample, label) pair."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(y, dtype=np.float64)
    return float(-(y * log_expit(z) + (1 - y) * log_expit(-z)).mean())


def _fit_log_t(objective) -> float:
    res = minimize_scalar(objective, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    # Bounded Brent never evaluates T = 1 exactly; keep it when fitting does not help.
    return float(np.exp(res.x)) if res.fun < objective(0.0) else 1.0


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """One temperature for a softmax head, by NLL on validation data."""
    if len(y) == 0:
        return 1.0
    return _fit_log_t(lambda lt: softmax_nll(logits, y, np.exp(lt)))


def fit_label_temperatures(logits: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """One temperature per sigmoid head: each label is its own binary problem."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.array(
        [_fit_log_t(lambda lt, j=j: binary_nll(logits[:, j], Y[:, j], np.exp(lt))) for j in range(Y.shape[1])]
        if len(Y)
        else np.ones(logits.shape[1])
    )


def reliability(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15, adaptive: bool = False) -> dict:
    """Binned confidence vs observed accuracy; empty bins are dropped.

    Equal-width bins by default; ``adaptive`` uses equal-mass bins (quantiles), which
    keeps the estimate stable when most predictions are near 1.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if adaptive and confidence.size:
        edges = np.quantile(confidence, np.linspace(0, 1, n_bins + 1))
        edges[0], edges[-1] = 0.0, 1.0
    else:
        edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    out: dict[str, list] = {k: [] for k in ("bin_lower", "bin_upper", "confidence", "accuracy", "count")}
    for b in range(n_bins):
        m = which == b
        if not m.any():
            continue
        out["bin_lower"].append(float(edges[b]))
        out["bin_upper"].append(float(edges[b + 1]))
        out["confidence"].append(float(confidence[m].mean()))
        out["accuracy"].append(float(correct[m].mean()))
        out["count"].append(int(m.sum()))
    return out


def ece_from_bins(bins: dict) -> float:
    """Expected calibration error: count-weighted |accuracy - confidence| over bins."""
    n = np.asarray(bins["count"], dtype=np.float64)
    if n.sum() == 0:
        return 0.0
    gap = np.abs(np.asarray(bins["accuracy"]) - np.asarray(bins["confidence"]))
    return float((n * gap).sum() / n.sum())


def multiclass_reliability(probs: np.ndarray, y: np.ndarray, n_bins: int = 15, adaptive: bool = False) -> dict:
    """Top-label reliability for a softmax head."""
    return reliability(probs.max(axis=1), probs.argmax(axis=1) == y, n_bins, adaptive)


def multilabel_reliability(probs: np.ndarray, Y: np.ndarray, n_bins: int = 15, adaptive: bool = False) -> dict:
    """Reliability of every (sample, label) probability: is P(label) = observed rate?"""
    return reliability(probs.ravel(), Y.ravel(), n_bins, adaptive)


def brier(probs: np.ndarray, onehot: np.ndarray) -> float:
    """Mean over samples of the squared error summed over classes (or labels)."""
    return float(((probs - onehot) ** 2).sum(axis=1).mean())
