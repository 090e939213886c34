"""Losses for the two heads, and class weights against imbalance.

Through a softmax, d(CE)/d(logits) = p - y. Each option here reshapes that signal:
class weights scale it per true class, label smoothing moves y off the corners so p - y
stops pushing logits to infinity, and the focal term (1 - p_t)**gamma shrinks it for
examples that are already right. The sigmoid versions act the same way per label, and sigmoid
heads can add a softmax term over the same logits (:func:`label_softmax_loss`), whose gradient
softmax(z) - y/n makes a sample's labels compete.

Sparsemax (Martins & Astudillo 2016) is the third probability map: the Euclidean projection of
the logits onto the simplex. Its rows sum to 1 like softmax's but can hold exact zeros and
leave mass on several classes; its loss has gradient sparsemax(z) - y, softmax's p - y.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def class_weights(counts: Sequence[float], scheme: str = "inverse", beta: float = 0.999) -> np.ndarray:
    """Per-class weights normalised to mean 1.

    ``inverse``: 1/n_c. ``effective``: (1 - beta) / (1 - beta**n_c) (Cui et al. 2019), which
    saturates for big classes instead of punishing them without bound. ``none``: ones.
    """
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    if scheme == "none":
        w = np.ones_like(n)
    elif scheme == "inverse":
        w = 1.0 / n
    elif scheme == "effective":
        w = (1.0 - beta) / (1.0 - np.power(beta, n))
    else:
        raise ValueError(f"unknown class-weight scheme {scheme!r}")
    return w * len(w) / w.sum()


def _soft_targets(target: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class indices become one-hot rows; probability rows (soft labels) pass through."""
    if target.dtype in (torch.int64, torch.int32):
        return F.one_hot(target, n_classes).to(torch.float32)
    return target.to(torch.float32)


def _smoothed(y: torch.Tensor, eps: float, k: int) -> torch.Tensor:
    return y * (1.0 - eps) + eps / k if eps > 0 else y


def _class_weighted_mean(per_sample: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """A sample's weight is that of its (expected) true class, normalised by the weight sum as
    torch's weighted CE does, so weights change the balance, not the loss scale."""
    if weight is None:
        return per_sample.mean()
    w = (y * weight).sum(-1)
    return (w * per_sample).sum() / w.sum().clamp_min(1e-12)


def _weight_tilted(y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Soft targets under class weights: q_c w_c / sum_j q_j w_j.

    A soft target q stands for a hard label drawn from q, so its loss is the expectation
    sum_c q_c * w_c * loss(c). Every per-class loss here is linear in the target row, so that
    expectation equals (q . w) * loss(tilted q): the sample weight of
    :func:`_class_weighted_mean` times the loss against q tilted towards the up-weighted
    classes. Its optimum is p proportional to w * q, the same log w shift as for hard labels,
    which calibration's offset undoes. Rows of a one-hot target come back unchanged.
    """
    wy = y * weight
    return wy / wy.sum(-1, keepdim=True).clamp_min(1e-12)


def softmax_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017): CE scaled by (1 - p)**gamma per class, soft targets allowed.
    gamma = 0 is plain cross-entropy.

    A soft target (a probability row q) gets the expected loss of a hard label drawn from q:
    sum_c q_c * loss(c), each class with its own focal factor, smoothing and weight. Without
    weights, focal term or smoothing that is cross-entropy against q, gradient p - q.
    """
    k = logits.shape[-1]
    y = _soft_targets(target, k)
    logp = F.log_softmax(logits.float(), dim=-1)
    if gamma:
        logp = (1.0 - logp.exp()).pow(gamma) * logp
    # Hard labels (class indices) never take this branch, so their loss is as it always was.
    q = _weight_tilted(y, weight) if weight is not None and target.is_floating_point() else y
    per_sample = -(_smoothed(q, label_smoothing, k) * logp).sum(-1)
    return _class_weighted_mean(per_sample, y, weight)


def softmax_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy against hard or soft targets, with optional class weights and smoothing."""
    return softmax_focal_loss(logits, target, 0.0, weight, label_smoothing)


def sparsemax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Sparsemax (Martins & Astudillo 2016): argmin_p ||p - z||^2 over the probability simplex.

    p_j = max(z_j - tau, 0) with tau chosen so the row sums to 1: with z sorted down, the
    support is the k largest for the biggest k with 1 + k z_(k) > z_(1) + ... + z_(k), and
    tau = (z_(1) + ... + z_(k) - 1) / k. Shift-invariant like softmax, so the row maximum is
    taken off first (no overflow for large logits). Batched over every dimension but ``dim``;
    computed in float32 at least (float64 stays float64); differentiable almost everywhere.
    """
    z = logits.transpose(dim, -1)
    if not z.is_floating_point() or z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()
    z = z - z.max(dim=-1, keepdim=True).values
    zs = torch.sort(z, dim=-1, descending=True).values
    k = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    cum = zs.cumsum(-1)
    support = 1 + k * zs > cum  # true for a prefix of the sorted row (always for k = 1)
    k_z = support.sum(-1, keepdim=True)
    tau = (cum.gather(-1, k_z - 1) - 1) / k_z.to(z.dtype)
    return torch.clamp(z - tau, min=0).transpose(dim, -1)


def sparsemax_probs(logits: np.ndarray) -> np.ndarray:
    """:func:`sparsemax` over the rows of a numpy array, in float64 (for scoring)."""
    with torch.no_grad():
        return sparsemax(torch.as_tensor(np.asarray(logits, dtype=np.float64)), dim=-1).numpy()


def sparsemax_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The sparsemax loss (Martins & Astudillo 2016, eq. 18, for probability-row targets),
    averaged over rows.

    Per row, with p = sparsemax(z) and target row q (class indices become one-hot rows):
    L = p.z - ||p||^2 / 2 - q.z + ||q||^2 / 2, the Fenchel-Young loss of the squared norm on
    the simplex. It is >= 0, zero exactly when p = q (so a sparse target row can be reached with
    finite logits, unlike softmax), and its gradient is p - q: the gradient of p.z - ||p||^2 / 2
    is p itself, so p enters as a constant and the gradient is exact, not through the sort.
    """
    x = logits.float() if logits.dtype != torch.float64 else logits
    q = _soft_targets(target, x.shape[-1]).to(x.dtype)
    p = sparsemax(x).detach()
    per_row = (p * x).sum(-1) - 0.5 * (p * p).sum(-1) - (q * x).sum(-1) + 0.5 * (q * q).sum(-1)
    return per_row.mean()


def sigmoid_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    pos_weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Binary focal loss per label: BCE scaled by (1 - p_t)**gamma; gamma = 0 is plain BCE."""
    y = _smoothed(target.float(), label_smoothing, 2)
    x = logits.float()
    bce = F.binary_cross_entropy_with_logits(x, y, pos_weight=pos_weight, reduction="none")
    if gamma:
        p = torch.sigmoid(x)
        bce = (1 - (p * y + (1 - p) * (1 - y))).pow(gamma) * bce
    return bce.mean()


def sigmoid_bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    pos_weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Independent binary cross-entropy per label; pos_weight up-weights rare positives."""
    return sigmoid_focal_loss(logits, target, 0.0, pos_weight, label_smoothing)


def label_softmax_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Softmax cross-entropy of sigmoid heads' logits against each row's labels as a
    distribution (1/n on each of its n labels, smoothed like the per-label loss), summed over
    the labels and averaged over the rows; a row without labels has no distribution, so it
    adds zero loss and gradient (it still counts in the mean).

    Its gradient, softmax(z) - y/n, makes a sample's labels compete, which per-label BCE does
    not: a rare label gains by beating the sample's other labels, not by clearing its own
    base rate. Beside BCE it shapes the logits' ranking; the probabilities stay per-label
    sigmoids, calibrated and thresholded as before. Plain cross-entropy: the focal factor and
    positive weights act on the per-label loss only.
    """
    y = target.float()
    n = y.sum(-1, keepdim=True)
    q = _smoothed(y / n.clamp_min(1.0), label_smoothing, y.shape[-1]) * (n > 0)
    return softmax_cross_entropy(logits, q)


def pos_weights(positives: np.ndarray, n: int, cap: float = 50.0) -> np.ndarray:
    """negatives/positives per label, capped so a near-empty label cannot dominate."""
    pos = np.maximum(np.asarray(positives, dtype=np.float64), 1.0)
    return np.minimum((n - pos) / pos, cap)


def make_loss(kind: str, cfg: dict, target_counts: np.ndarray, n_train: int) -> LossFn:
    """Build the configured loss. ``target_counts``: per-class (or per-label positive) counts."""
    from barloc.config import block_defaults

    cfg = block_defaults("loss", cfg)
    name = cfg["type"]
    smoothing = float(cfg["label_smoothing"])
    gamma = float(cfg["gamma"])
    if kind == "multiclass":
        scheme = cfg["class_weights"]
        w = None
        if scheme != "none":
            w = torch.tensor(class_weights(target_counts, scheme, cfg["beta"]), dtype=torch.float32)
        if name == "cross_entropy":
            return lambda x, y: softmax_cross_entropy(x, y, _on(w, x), smoothing)
        if name == "focal":
            return lambda x, y: softmax_focal_loss(x, y, gamma, _on(w, x), smoothing)
    else:
        pw = None
        if cfg["pos_weight"]:
            pw = torch.tensor(pos_weights(target_counts, n_train, cfg["pos_weight_cap"]), dtype=torch.float32)
        if name in ("bce", "cross_entropy", "focal"):
            g = gamma if name == "focal" else 0.0  # BCE is the focal loss at gamma 0
            lam = float(cfg["softmax_weight"])

            def sigmoid_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                loss = sigmoid_focal_loss(x, y, g, _on(pw, x), smoothing)
                return loss + lam * label_softmax_loss(x, y, smoothing) if lam else loss

            return sigmoid_loss
    raise ValueError(f"loss {name!r} is not available for {kind} tasks")


def _on(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t.to(like.device)
