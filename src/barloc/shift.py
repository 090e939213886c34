"""Prior-shift (label-shift) correction without retraining.

If p(x|y) holds and only p(y) changes, the Bayes posterior under the new priors is the old
one reweighted by pi_target/pi_train, i.e. logits shifted by log(pi_target/pi_train).
Unknown target priors are estimated by EM on the unlabelled query set (Saerens et al. 2002):
alternate reweighting the posteriors and re-averaging them until the priors stop moving.
Or by black-box shift estimation (BBSE, Lipton et al. 2018): the confusion matrix of hard
predictions on labelled validation data maps target priors to the query's predicted-class
frequencies, so solving that linear system estimates them without trusting the probabilities.
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
    probs: np.ndarray,
    train_priors: np.ndarray,
    tol: float = 1e-6,
    max_iter: int = 1000,
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
        out[:, j] = reweight(
            pj, np.array([1 - train_rates[j], train_rates[j]]), np.array([1 - target_rates[j], target_rates[j]])
        )[:, 1]
    return out


def confusion_joint(probs: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """C[i, j] = P(pred = i, y = j) on labelled data, hard predictions by argmax."""
    pred = np.asarray(probs).argmax(axis=1)
    C = np.zeros((k, k))
    np.add.at(C, (pred, np.asarray(y, dtype=np.int64)), 1.0)
    return C / max(len(pred), 1)


@dataclass(frozen=True)
class BBSEResult:
    priors: np.ndarray  # estimated target priors, a distribution
    weights: np.ndarray  # w = pi_target / pi_source: the least-squares solution, kept >= 0
    rank: int  # rank of the confusion matrix; < k means some classes are not separable
    clipped: bool  # the plain solution had negative weights (sampling noise, or not label shift)


def bbse(
    val_probs: np.ndarray,
    val_y: np.ndarray,
    query_probs: np.ndarray,
    source_priors: np.ndarray | None = None,
    nonnegative: str = "nnls",
) -> BBSEResult:
    """Black-box shift estimation (Lipton et al. 2018) for a softmax head.

    Under label shift, P_query(pred = i) = sum_j P(pred = i | y = j) pi_target(j)
    = sum_j C[i, j] w_j with C the joint confusion matrix on validation data and
    w_j = pi_target(j) / pi_val(j). ``C w = mu`` is solved by least squares (when C is singular,
    the solution closest to w = 1, i.e. no shift where the data cannot tell). When that solution
    has negative weights, ``nonnegative="nnls"`` (the default) solves the least squares again
    subject to w >= 0, which coincides with the plain solution whenever that is nonnegative;
    ``"clip"`` only sets them to 0, as Lipton et al. and abstention do. pi_target is
    w * pi_source renormalised. ``source_priors`` defaults to the validation label frequencies
    (C's column sums), which are what w is relative to; pass others only when the validation
    labels were drawn from them. Classes absent from validation carry no information; they
    keep the query's mean predicted probability.
    """
    if nonnegative not in ("nnls", "clip"):
        raise ValueError(f"nonnegative must be 'nnls' or 'clip', not {nonnegative!r}")
    val_probs = np.asarray(val_probs, dtype=np.float64)
    query_probs = np.asarray(query_probs, dtype=np.float64)
    k = val_probs.shape[1] if val_probs.ndim == 2 else query_probs.shape[1]
    C = confusion_joint(val_probs, val_y, k)
    p_val = C.sum(axis=0)
    source = p_val if source_priors is None else np.clip(np.asarray(source_priors, dtype=np.float64), 0, None)
    if len(query_probs) == 0 or len(val_probs) == 0:
        prior = source / source.sum() if source.sum() > 0 else np.full(k, 1.0 / k)
        return BBSEResult(prior, np.ones(k), int(np.linalg.matrix_rank(C)), False)
    mu = np.bincount(query_probs.argmax(axis=1), minlength=k) / len(query_probs)
    # Least squares for w - 1 (as RLLS does with theta): where C is singular the minimum-norm
    # solution leaves the undetermined directions at w = 1, "no shift", rather than at 0.
    theta, *_ = np.linalg.lstsq(C, mu - C.sum(axis=1), rcond=None)
    w = 1.0 + theta
    clipped = bool((w < -1e-12).any())
    if clipped and nonnegative == "nnls":
        # Least squares again, under w >= 0. Zeroing the negative weights afterwards leaves the
        # others fitted to a system they no longer solve; with an ill-conditioned C (a class the
        # model rarely predicts) that can put nearly all mass on that class, draw after draw.
        from scipy.optimize import nnls

        w = nnls(C, mu)[0]
    w = np.clip(w, 0.0, None)
    q = w * source
    if q.sum() <= 0:  # every weight clipped: no usable estimate, stay at the source priors
        q = source.copy() if source.sum() > 0 else np.ones(k)
    q = q / q.sum()
    absent = p_val <= 0
    if absent.any() and not absent.all():
        # No validation sample of these classes, so C says nothing about them: they keep the
        # query's mean predicted probability and the others share the rest.
        m = query_probs[:, absent].mean(axis=0)
        q[~absent] *= (1.0 - m.sum()) / max(q[~absent].sum(), EPS)
        q[absent] = m
    return BBSEResult(q, w, int(np.linalg.matrix_rank(C)), clipped)


def bbse_priors(
    val_probs: np.ndarray,
    val_y: np.ndarray,
    query_probs: np.ndarray,
    source_priors: np.ndarray | None = None,
    nonnegative: str = "nnls",
) -> np.ndarray:
    """Target priors by BBSE; see :func:`bbse`."""
    return bbse(val_probs, val_y, query_probs, source_priors, nonnegative).priors


def bbse_multilabel(
    val_probs: np.ndarray,
    val_Y: np.ndarray,
    query_probs: np.ndarray,
    thresholds: np.ndarray | float = 0.5,
) -> list[BBSEResult]:
    """BBSE per sigmoid head: a 2x2 problem per label, hard calls at the label's threshold."""
    val_probs, query_probs = np.asarray(val_probs, dtype=np.float64), np.asarray(query_probs, dtype=np.float64)
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (val_probs.shape[1],))
    out = []

    def calls(p: np.ndarray, t: float) -> np.ndarray:  # one-hot [absent, present] hard calls
        hit = p >= t
        return np.stack([~hit, hit], axis=1).astype(np.float64)

    for j in range(val_probs.shape[1]):
        out.append(
            bbse(
                calls(val_probs[:, j], thr[j]),
                np.asarray(val_Y[:, j], dtype=np.int64),
                calls(query_probs[:, j], thr[j]),
            )
        )
    return out


def bbse_priors_multilabel(
    val_probs: np.ndarray,
    val_Y: np.ndarray,
    query_probs: np.ndarray,
    thresholds: np.ndarray | float = 0.5,
) -> np.ndarray:
    """Per-label positive rates on the query by BBSE."""
    return np.array([r.priors[1] for r in bbse_multilabel(val_probs, val_Y, query_probs, thresholds)])


def bootstrap_bbse(
    val_probs: np.ndarray,
    val_y: np.ndarray,
    query_probs: np.ndarray,
    multilabel: bool = False,
    thresholds: np.ndarray | float = 0.5,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the BBSE priors, resampling validation and query
    samples both: the confusion matrix is an estimate too."""
    k = np.asarray(query_probs).shape[1] if np.ndim(query_probs) == 2 else np.asarray(val_probs).shape[1]
    if len(query_probs) == 0 or len(val_probs) == 0 or n_boot <= 0:
        return np.full(k, np.nan), np.full(k, np.nan)
    rng = np.random.default_rng(seed)
    draws = np.empty((n_boot, k))
    for b in range(n_boot):
        iv = rng.integers(0, len(val_probs), len(val_probs))
        iq = rng.integers(0, len(query_probs), len(query_probs))
        if multilabel:
            draws[b] = bbse_priors_multilabel(val_probs[iv], val_y[iv], query_probs[iq], thresholds)
        else:
            draws[b] = bbse_priors(val_probs[iv], val_y[iv], query_probs[iq])
    a = (1 - level) / 2
    return np.quantile(draws, a, axis=0), np.quantile(draws, 1 - a, axis=0)


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
