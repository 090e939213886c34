"""Prior-shift (label-shift) correction without retraining.

If p(x|y) holds and only p(y) changes, the Bayes posterior under the new priors is the old
one reweighted by pi_target/pi_train, i.e. logits shifted by log(pi_target/pi_train).
Unknown target priors are estimated by EM on the unlabelled query set (Saerens et al. 2002):
alternate reweighting the posteriors and re-averaging them until the priors stop moving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-12


def adjust_logits(logits: np.ndarray, train_priors: np.ndarray, target_priors: np.ndarray) -> np.ndarray:
    """Softmax logits under new class priors: z + log(pi_target / pi_train)."""
    shift = np.log(np.clip(target_priors, EPS, None)) - np.log(np.clip(train_priors, EPS, None))
    return np.asarray(logits, dtype=np.float64) + shift


def reweight(probs: np.ndarray, train_priors: np.ndarray, target_priors: np.ndarray) -> np.ndarray:
    """The same correction on probabilities: p * (pi_t/pi_s), renormalised per row."""
    w = np.clip(target_priors, EPS, None) / np.clip(train_priors, EPS, None)
    q = probs * w
    return q / np.clip(q.sum(axis=1, keepdims=True), EPS, None)


@dataclass(frozen=True)
class EMResult:
    priors: np.ndarray
    posteriors: np.ndarray
    iterations: int
    converged: bool


def em_priors(
    probs: np.ndarray, train_priors: np.ndarray, tol: float = 1e-6, max_iter: int = 1000,
    strength: float = 0.0,
) -> EMResult:
    """Saerens-Latinne-Decaestecker EM. ``probs`` are calibrated posteriors under train priors.

    ``strength`` > 0 makes it MAP-EM with a Dirichlet prior of that many pseudo-samples at the
    training priors: with a weak classifier the likelihood of the priors is flat and plain EM
    drifts to the simplex's corners, which the pseudo-samples prevent.
    Converged means the largest prior change in an iteration fell below ``tol``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    train = np.clip(np.asarray(train_priors, dtype=np.float64), EPS, None)
    train = train / train.sum()
    if len(probs) == 0:
        return EMResult(train.copy(), probs, 0, True)
    priors = train.copy()
    post = probs
    for it in range(1, max_iter + 1):
        post = reweight(probs, train, priors)
        new = (post.sum(axis=0) + strength * train) / (len(post) + strength)
        delta = float(np.abs(new - priors).max())
        priors = new
        if delta < tol:
            return EMResult(priors, reweight(probs, train, priors), it, True)
    return EMResult(priors, post, max_iter, False)


def binary_columns(p: np.ndarray) -> list[np.ndarray]:
    """Per-label [1 - p, p] matrices: each sigmoid head is its own two-class problem."""
    return [np.stack([1 - p[:, j], p[:, j]], axis=1) for j in range(p.shape[1])]


def em_priors_multilabel(
    probs: np.ndarray, train_rates: np.ndarray, tol: float = 1e-6, max_iter: int = 1000, strength: float = 0.0
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """EM per label on binary posteriors. Returns (rates, corrected probs, max iters, all converged)."""
    rates, cols, iters, ok = [], [], 0, True
    for j, pj in enumerate(binary_columns(probs)):
        r = em_priors(pj, np.array([1 - train_rates[j], train_rates[j]]), tol, max_iter, strength)
        rates.append(r.priors[1])
        cols.append(r.posteriors[:, 1])
        iters, ok = max(iters, r.iterations), ok and r.converged
    corrected = np.stack(cols, axis=1) if cols else probs
    return np.array(rates), corrected, iters, ok


def reweight_multilabel(probs: np.ndarray, train_rates: np.ndarray, target_rates: np.ndarray) -> np.ndarray:
    """Known per-label rates: the binary correction applied label by label."""
    out = np.empty_like(probs, dtype=np.float64)
    for j, pj in enumerate(binary_columns(probs)):
        out[:, j] = reweight(pj, np.array([1 - train_rates[j], train_rates[j]]),
                             np.array([1 - target_rates[j], target_rates[j]]))[:, 1]
    return out


def bootstrap_priors(
    probs: np.ndarray,
    train_priors: np.ndarray,
    multilabel: bool = False,
    n_boot: int = 200,
    seed: int = 0,
    tol: float = 1e-6,
    max_iter: int = 1000,
    level: float = 0.95,
    strength: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the EM priors, resampling query samples."""
    k = len(train_priors)
    if len(probs) == 0 or n_boot <= 0:
        return np.full(k, np.nan), np.full(k, np.nan)
    rng = np.random.default_rng(seed)
    draws = np.empty((n_boot, k))
    for b in range(n_boot):
        sample = probs[rng.integers(0, len(probs), len(probs))]
        if multilabel:
            draws[b] = em_priors_multilabel(sample, train_priors, tol, max_iter, strength)[0]
        else:
            draws[b] = em_priors(sample, train_priors, tol, max_iter, strength).priors
    a = (1 - level) / 2
    return np.quantile(draws, a, axis=0), np.quantile(draws, 1 - a, axis=0)
