"""Temperature scaling (Guo et al. 2017) and reliability statistics.

Dividing logits by T > 1 softens over-confident probabilities without changing the argmax.
T is fitted by minimising NLL on validation logits, in float64 and in log-space so that
huge logits, constant logits and single-class validation sets all stay finite.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit, log_softmax, softmax

from barloc.shift import EPS

LOG_T_BOUNDS = (-4.0, 6.0)  # T in [0.018, 403]: wide enough for any sane network
BIAS_BOUND = 20.0  # |b| <= 20: e^20 odds, far past anything a validation set supports


def log_t_bounds(logits: np.ndarray) -> tuple[float, float]:
    """Bounds on log T, widened for huge logits.

    When validation labels look random to the model (or it saw a single class) the best
    temperature is infinite: flat probabilities. The upper bound lets T reach about 1000x the
    logits' spread, where z/T is flat to 1e-3, so logits of 1e4 are tamed as well as logits of 10.
    """
    z = np.asarray(logits, dtype=np.float64)
    finite = z[np.isfinite(z)]
    spread = float(np.abs(finite).max()) if finite.size else 0.0
    return LOG_T_BOUNDS[0], max(LOG_T_BOUNDS[1], float(np.log(max(spread, 1e-300))) + 7.0)


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


def _fit_log_t(objective, bounds: tuple[float, float] = LOG_T_BOUNDS) -> float:
    res = minimize_scalar(objective, bounds=bounds, method="bounded", options={"xatol": 1e-6})
    # Bounded Brent never evaluates T = 1 exactly; keep it when fitting does not help.
    return float(np.exp(res.x)) if res.fun < objective(0.0) else 1.0


def fit_temperature(logits: np.ndarray, y: np.ndarray, offset: np.ndarray | None = None) -> float:
    """One temperature for a softmax head, by NLL on validation data: softmax(z / T [+ offset])."""
    if len(y) == 0:
        return 1.0
    if offset is None:
        return _fit_log_t(lambda lt: softmax_nll(logits, y, np.exp(lt)), log_t_bounds(logits))
    z, off = np.asarray(logits, dtype=np.float64), np.asarray(offset, dtype=np.float64)
    return _fit_log_t(lambda lt: softmax_nll(z / np.exp(lt) + off, y), log_t_bounds(z))


def fit_label_temperatures(logits: np.ndarray, Y: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    """One temperature per sigmoid head, each label its own binary problem: sigmoid(z_j / T_j [+ offset_j])."""
    logits = np.asarray(logits, dtype=np.float64)
    off = np.zeros(logits.shape[1]) if offset is None else np.asarray(offset, dtype=np.float64)
    return np.array(
        [
            _fit_log_t(
                lambda lt, j=j: binary_nll(logits[:, j] / np.exp(lt) + off[j], Y[:, j]), log_t_bounds(logits[:, j])
            )
            for j in range(Y.shape[1])
        ]
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


def multiclass_ece_floor(
    probs: np.ndarray, n_bins: int = 15, draws: int = 200, seed: int | np.random.Generator = 0
) -> float:
    """The top-label ECE that perfectly calibrated probabilities would still show on this many
    records: the mean ECE when each record's class is drawn from its own ``probs`` row. Binned
    ECE is biased upwards on small sets (each bin's accuracy is a noisy proportion), so an
    observed ECE means little until compared with this."""
    rng = np.random.default_rng(seed)
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    out = []
    for _ in range(draws):
        y = (rng.random((len(probs), 1)) > cum).sum(axis=1)
        out.append(ece_from_bins(multiclass_reliability(probs, y, n_bins)))
    return float(np.mean(out))


def multilabel_reliability(probs: np.ndarray, Y: np.ndarray, n_bins: int = 15, adaptive: bool = False) -> dict:
    """Reliability of every (sample, label) probability: is P(label) = observed rate?"""
    return reliability(probs.ravel(), Y.ravel(), n_bins, adaptive)


def brier(probs: np.ndarray, onehot: np.ndarray) -> float:
    """Mean over samples of the squared error summed over classes (or labels)."""
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def _nll_grad_vector(theta: np.ndarray, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """NLL of softmax(z / T + b) with one T per class, and its gradient in (log T, b)."""
    k = z.shape[1]
    t, b = np.exp(theta[:k]), theta[k:]
    s = z / t + b
    lp = log_softmax(s, axis=1)
    n = len(y)
    g = np.exp(lp)
    g[np.arange(n), y] -= 1.0  # dNLL/ds = p - y
    g /= n
    return float(-lp[np.arange(n), y].mean()), np.concatenate([(g * (-z / t)).sum(axis=0), g.sum(axis=0)])


def _nll_grad_softmax(theta: np.ndarray, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """NLL of softmax(z / T + b) and its gradient in (log T, b): vector scaling's with every
    class sharing one temperature, whose gradient is the sum of the per-class ones."""
    k = z.shape[1]
    f, g = _nll_grad_vector(np.concatenate([np.full(k, theta[0]), theta[1:]]), z, y)
    return f, np.concatenate([[g[:k].sum()], g[k:]])


def _minimize_never_worse(f, x0: np.ndarray, bounds: list[tuple[float, float]], args: tuple = ()) -> np.ndarray:
    """L-BFGS-B on ``f`` (value and gradient) from ``x0``; ``x0`` itself unless the optimum is
    finite and no worse, so a fit never leaves the probabilities worse than its start."""
    from scipy.optimize import minimize

    res = minimize(f, x0, args=args, jac=True, method="L-BFGS-B", bounds=bounds)
    return res.x if np.isfinite(res.fun) and res.fun <= f(x0, *args)[0] else x0


def fit_bcts(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Bias-corrected temperature scaling (Alexandari et al. 2020): softmax(z/T + b).

    The biases absorb a systematic prior offset (from class weights, focal loss or a skewed
    training set), which a single temperature cannot, and which EM prior estimation needs gone.
    They also absorb the validation set's own class mix, which :func:`prior_anchor` takes off.
    """
    z = np.asarray(logits, dtype=np.float64)
    k = z.shape[1]
    if len(y) == 0:
        return 1.0, np.zeros(k)
    y = np.asarray(y, dtype=np.int64)
    t0 = fit_temperature(z, y)
    x0 = np.concatenate([[np.log(t0)], np.zeros(k)])
    x = _minimize_never_worse(_nll_grad_softmax, x0, [log_t_bounds(z)] + [(-BIAS_BOUND, BIAS_BOUND)] * k, (z, y))
    b = x[1:] - x[1:].mean()  # softmax ignores a common shift
    return float(np.exp(x[0])), b


def fit_vector_scaling(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vector scaling (Guo et al. 2017; Alexandari et al. 2020): softmax(z / T_c + b_c), a
    temperature and a bias per class, started from BCTS and never worse than it on ``y``.

    One temperature cannot fix a model that is over-confident about one class and not another
    (the class weights and a rare class's few training records make that likely); EM prior
    estimation reads each class's posterior on its own, so it needs each one calibrated.
    """
    z = np.asarray(logits, dtype=np.float64)
    k = z.shape[1]
    t0, b0 = fit_bcts(z, y)
    if len(y) == 0:
        return np.full(k, t0), b0
    y = np.asarray(y, dtype=np.int64)
    x0 = np.concatenate([np.full(k, np.log(t0)), b0])
    x = _minimize_never_worse(_nll_grad_vector, x0, [log_t_bounds(z)] * k + [(-BIAS_BOUND, BIAS_BOUND)] * k, (z, y))
    b = x[k:] - x[k:].mean()  # softmax ignores a common shift
    return np.exp(x[:k]), b


def fit_platt(logits: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-label temperature and bias for sigmoid heads: sigmoid(z_j / T_j + b_j)."""
    z = np.asarray(logits, dtype=np.float64)
    k = z.shape[1]
    T, B = np.ones(k), np.zeros(k)
    for j in range(k):
        y = np.asarray(Y[:, j], dtype=np.float64)
        if len(y) == 0:
            continue

        def f(theta, zj=z[:, j], y=y):
            t, b = np.exp(theta[0]), theta[1]
            s = zj / t + b
            g = (expit(s) - y) / len(y)  # dNLL/ds = p - y
            return float(-(y * log_expit(s) + (1 - y) * log_expit(-s)).mean()), np.array(
                [float((g * -zj / t).sum()), float(g.sum())]
            )

        x = _minimize_never_worse(f, np.zeros(2), [log_t_bounds(z[:, j]), (-BIAS_BOUND, BIAS_BOUND)])
        T[j], B[j] = np.exp(x[0]), x[1]  # x = 0 (T = 1, b = 0) leaves the label as it was
    return T, B


def prior_anchor(kind: str, probs_val: np.ndarray, train_priors: np.ndarray) -> np.ndarray:
    """Bias shift that puts BCTS-, vector- or Platt-calibrated probabilities back under the training priors.

    A fitted bias sets its NLL gradient, sum(p - y), to zero, so the mean calibrated probability
    on val equals val's class mix: the biases learn val's mix along with the miscalibration.
    Grouped splits make that mix far from the training one (a val fold of projects with 1%
    Mediterranean records against 26% in training), and prior-shift correction and the calls
    treat calibrated probabilities as posteriors under the training priors. So the mix comes
    off again: log(pi_train / mean p) per softmax class, logit(r_train) - logit(mean p) per
    sigmoid label. The mean rather than val's counts keeps a class absent from val finite.
    """
    probs_val = np.asarray(probs_val, dtype=np.float64)
    if len(probs_val) == 0:  # nothing was fitted (see fit_bcts, fit_platt): nothing to take off
        return np.zeros(probs_val.shape[1])
    p = np.clip(probs_val.mean(axis=0), EPS, 1 - EPS)
    t = np.clip(np.asarray(train_priors, dtype=np.float64), EPS, 1 - EPS)
    if kind == "multiclass":
        shift = np.log(t / t.sum()) - np.log(p / p.sum())
        return shift - shift.mean()  # softmax ignores a common shift
    return logit(t) - logit(p)


def apply(logits: np.ndarray, kind: str, calib: dict | None = None) -> np.ndarray:
    """Calibrated probabilities through softmax or per-label sigmoid: z / T + offset + bias
    (``offset_after_temperature``, barloc's calibration since cross-fitting), or
    (z + offset) / T + bias (calibration.json files from before it).

    ``calib`` is a calibration.json dict; None gives the raw model probabilities.
    """
    z = np.asarray(logits, dtype=np.float64)
    if calib:
        off, t, b = (np.asarray(calib.get(k, d)) for k, d in (("offset", 0.0), ("temperature", 1.0), ("bias", 0.0)))
        z = z / t + off + b if calib.get("offset_after_temperature") else (z + off) / t + b
    return softmax(z, axis=1) if kind == "multiclass" else expit(z)


def weighting_offset(kind: str, loss: dict, train_counts: np.ndarray, n_train: int) -> np.ndarray:
    """Logit offset that undoes the loss's class weighting.

    Weighted CE is minimised by p_w(y|x) proportional to w_y p(y|x), so subtracting log w_y
    gives back posteriors under the training priors; BCE with pos_weight multiplies the
    posterior odds by pos_weight, so log(pos_weight) comes off each sigmoid logit. Without
    this, EM prior estimation would start from the wrong priors.
    """
    from barloc.config import block_defaults
    from barloc.losses import class_weights, pos_weights

    loss = block_defaults("loss", loss)
    counts = np.asarray(train_counts, dtype=np.float64)
    if kind == "multiclass":
        scheme = loss["class_weights"]
        if scheme == "none":
            return np.zeros(len(counts))
        return -np.log(class_weights(counts, scheme, loss["beta"]))
    if not loss["pos_weight"]:
        return np.zeros(len(counts))
    return -np.log(np.maximum(pos_weights(counts, n_train, loss["pos_weight_cap"]), 1e-12))


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [EPS, 1 - EPS] so that 0 and 1 stay finite."""
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


#: the calibration methods that fit a bias per class or label: the only ones that calibrate
#: logits whose shift the weighting offset does not undo (:func:`offset_undoes_loss`)
BIAS_METHODS = ("bcts", "vector")


def offset_undoes_loss(kind: str, loss: dict) -> bool:
    """Whether :func:`weighting_offset` alone brings the logits back to posteriors under the
    training priors. Not with the softmax term of sigmoid heads (``loss.softmax_weight``): it
    moves each label's logit by an amount no closed form gives, so only a fitted per-label
    bias (Platt scaling) takes it off."""
    from barloc.config import block_defaults

    return not (kind == "multilabel" and float(block_defaults("loss", loss)["softmax_weight"]) > 0)


def call_ratio_on(kind: str, loss: dict) -> str | None:
    """calibration.json's ``call_ratio_on``: ``"logits"`` for sigmoid heads trained with the
    softmax term, which trained the logits' softmax to rank a sample's labels
    (docs/method.md#calls); else None, the calibrated probabilities."""
    return None if offset_undoes_loss(kind, loss) else "logits"


# ---------------------------------------------------------------- a trained model's calibration
def nll_of(kind: str, probs: np.ndarray, y: np.ndarray) -> float:
    """Mean NLL of probability rows (multiclass) or of every label's Bernoulli (multilabel)."""
    p = np.clip(probs, 1e-12, 1 - 1e-12)
    if kind == "multiclass":
        return float(-np.log(p[np.arange(len(y)), y]).mean())
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def reliability_of(kind: str, probs: np.ndarray, y: np.ndarray, bins: int) -> dict:
    if kind == "multiclass":
        return multiclass_reliability(probs, y, bins)
    return multilabel_reliability(probs, y, bins)


def fit_calibration(
    kind: str, method: str, z: np.ndarray, y: np.ndarray, offset: np.ndarray, train_priors: np.ndarray
) -> dict:
    """Calibration parameters for z / T + offset + bias, fitted on held-out logits ``z`` of a
    model trained under ``train_priors``, whose class weighting ``offset`` undoes.

    The temperature scales the logits before the offset: a class-weighted network's logits
    are its evidence, p(x|y) up to a constant, and the offset is the training prior the
    weighting took out. Over-confidence is in the evidence, so that is what T tempers; scaling
    the offset too would tilt every call towards the common classes (and, after a correction to
    equal priors, past them). Fitted biases are anchored back to the training priors
    (:func:`prior_anchor`): without that they carry the fitting records' class mix into the
    calls and into prior-shift correction."""
    z, offset = np.asarray(z, dtype=np.float64), np.asarray(offset, dtype=np.float64)
    out: dict = {"method": method, "offset": offset, "offset_after_temperature": True}
    if method == "none":  # the weighting undone, nothing fitted
        return {**out, "temperature": 1.0 if kind == "multiclass" else np.ones(z.shape[1])}
    if method not in ("temperature", "bcts", "vector"):
        raise ValueError(f"calibration method {method!r} is not one fit: auto chooses in barloc.posthoc")
    if method == "temperature":
        out["temperature"] = (fit_temperature if kind == "multiclass" else fit_label_temperatures)(z, y, offset)
        return out
    # bcts: one temperature and a bias per class; vector: a temperature and a bias per class.
    # A sigmoid head's labels are separate problems: both are Platt scaling there. Their free
    # biases absorb the offset, which is taken off them again so that offset + bias is the fit.
    fitter = {"bcts": fit_bcts, "vector": fit_vector_scaling}[method] if kind == "multiclass" else fit_platt
    temperature, bias = fitter(z, y)
    bias = bias - offset
    if kind == "multiclass":
        bias = bias - bias.mean()  # softmax ignores a common shift
    probs_val = apply(z, kind, {**out, "temperature": temperature, "bias": bias})
    return {**out, "temperature": temperature, "bias": bias + prior_anchor(kind, probs_val, train_priors)}


def prior_logits(meta) -> np.ndarray:
    """log training prior per class (multiclass) or logit of each label's training rate: what
    a model's unweighted logits carry of its training mix."""
    p = np.clip(np.asarray(meta.train_priors, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) if meta.kind == "multiclass" else logit(p)


def class_offset(meta) -> np.ndarray:
    """The logit offset undoing the class weighting of ``meta``'s model (a
    :class:`~barloc.artifacts.ModelMeta`), from its own training counts (none recorded: no offset)."""
    if not meta.train_counts:
        return np.zeros(len(meta.classes))
    return weighting_offset(meta.kind, meta.loss, np.asarray(meta.train_counts), meta.n_train)


def fit_for_model(meta, method: str, zv: np.ndarray, yv: np.ndarray) -> dict:
    """Calibration of ``meta``'s model from logits ``zv`` it gave held-out records ``yv``."""
    offset = class_offset(meta)
    return {**fit_calibration(meta.kind, method, zv, yv, offset, meta.priors), "offset": offset}
