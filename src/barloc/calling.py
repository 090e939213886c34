"""The one road from logits to calls: calibrate, correct for the query's class priors, call.

The workflow's prior_shift and evaluate steps, ``barloc predict`` and cross-validation
(barloc.cv, which the fish benchmarks use) go through here, so a sample gets the same call
whichever way it is scored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from barloc import extra_heads, shift, soft
from barloc.artifacts import CALLS_COLUMNS, ID, LABEL, PROB, SPLIT, Calibration, ModelMeta, logit_columns
from barloc.calibrate import apply
from barloc.data import targets_for
from barloc.errors import InputError
from barloc.metrics import moved_logits, predict_multilabel

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the labelled rows of a logits table
def class_logits(df: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """The (n, classes) logit matrix of a logits table, in ``classes`` order; row-major, so that
    row-wise sums (softmax, the calibration fits) add in the same order whatever the frame's layout."""
    return np.ascontiguousarray(df[logit_columns(classes)].to_numpy(dtype=np.float64))


def extra_logits(df: pd.DataFrame, meta: ModelMeta) -> np.ndarray | None:
    """The extra heads' logits of a logits table ((n, heads); None without extra heads)."""
    return df[[extra_heads.EXTRA + n for n in meta.heads]].to_numpy(np.float64) if meta.heads else None


def split_arrays(df: pd.DataFrame, meta: ModelMeta, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Logits and targets of one split's records with a known class: records with a soft target
    (a probability vector, :mod:`barloc.soft`) are left out, their class being unknown."""
    m = (df[SPLIT] == split).to_numpy() & soft.hard_mask(df)
    return class_logits(df.loc[m], meta.classes), targets_for(df.loc[m, LABEL].tolist(), meta.classes, meta.kind)


# ---------------------------------------------------------------- prior correction
def target_vector(target: dict | str, classes: list[str], kind: str) -> np.ndarray:
    """Configured priors as a vector: multiclass must name every class and sum to 1. ``equal``
    (multiclass): every class as likely, the calls that balanced accuracy scores best."""
    if target == "equal":
        if kind != "multiclass":
            raise InputError(
                None,
                "prior_shift.target_priors: equal is for a softmax (multiclass) task; "
                "give each label's prevalence instead",
            )
        return np.full(len(classes), 1.0 / len(classes))
    unknown = set(target) - set(classes)
    if unknown:
        raise InputError(None, f"prior_shift.target_priors names unknown classes {sorted(unknown)}")
    if kind == "multiclass":
        missing = set(classes) - set(target)
        if missing:
            raise InputError(None, f"prior_shift.target_priors lacks classes {sorted(missing)}")
        v = np.array([float(target[c]) for c in classes])
        return v / v.sum()
    return np.array([float(target.get(c, np.nan)) for c in classes])


def reweight(probs: np.ndarray, kind: str, train: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Calibrated probabilities moved from the training priors to ``target``; row-wise."""
    if kind == "multilabel":
        return shift.reweight_multilabel(probs, train, target)
    return shift.reweight(probs, train, target)


def correct(
    kind: str,
    probs: np.ndarray,
    train: np.ndarray,
    pcfg: dict,
    classes: list[str],
    seed: int,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    thresholds: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Corrected probabilities and the prior estimate for one set of unlabelled samples, by
    ``pcfg`` (a task's ``prior_shift`` block, defaults filled in).

    ``val`` (calibrated probabilities, labels of the val split) is needed by ``bbse``; for
    sigmoid heads BBSE makes hard calls at ``thresholds`` (0.5 when not given).
    """
    method = pcfg["method"]
    tol, max_iter = float(pcfg["tol"]), int(pcfg["max_iter"])
    strength = float(pcfg["prior_strength"])
    n_boot = int(pcfg["bootstrap"])
    info: dict = {"method": method, "n_query": int(len(probs))}
    if method == "none" or len(probs) == 0:
        return probs, {**info, "query_priors": None}
    if method == "known":
        target = target_vector(pcfg.get("target_priors", {}), classes, kind)
        if kind == "multilabel":
            target = np.where(np.isnan(target), train, target)
        return reweight(probs, kind, train, target), {**info, "query_priors": target}
    if method == "bbse":
        if val is None or len(val[0]) == 0:
            raise InputError(None, "prior_shift.method bbse needs labelled val rows in logits.parquet")
        vp, vy = val
        thr = np.full(len(classes), 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        if kind == "multiclass":
            results = [shift.bbse(vp, vy, probs)]
            est = results[0].priors
        else:
            results = shift.bbse_multilabel(vp, vy, probs, thr)
            est = np.array([r.priors[1] for r in results])
        corrected = reweight(probs, kind, train, est)
        lo, hi = shift.bootstrap_bbse(vp, vy, probs, kind == "multilabel", thr, n_boot, seed)
        deficient = [r.rank < len(r.priors) for r in results]
        clipped = [r.clipped for r in results]
        if any(deficient):
            log.warning(
                "BBSE: the val confusion matrix is singular%s; undetermined priors stay at no shift",
                "" if kind == "multiclass" else f" for {sum(deficient)} label(s)",
            )
        if any(clipped):
            log.warning("BBSE: negative importance weights clipped to 0 (small samples, or not pure label shift)")
        # BBSE is one linear solve: nothing to converge; the keys stay for the report and readers
        return corrected, {
            **info,
            "query_priors": est,
            "ci_low": lo,
            "ci_high": hi,
            "converged": True,
            "iterations": 0,
            "n_val": int(len(vp)),
            "bbse": {"rank": [r.rank for r in results], "clipped": clipped, "weights": [r.weights for r in results]},
        }
    if kind == "multiclass":
        res = shift.em_priors(probs, train, tol, max_iter, strength)
        est, corrected, iters, ok = res.priors, res.posteriors, res.iterations, res.converged
    else:
        est, corrected, iters, ok = shift.em_priors_multilabel(probs, train, tol, max_iter, strength)
    lo, hi = shift.bootstrap_priors(probs, train, kind == "multilabel", n_boot, seed, tol, max_iter, strength=strength)
    if not ok:
        log.warning("EM did not converge in %d iterations; priors are the last estimate", max_iter)
    return corrected, {**info, "query_priors": est, "ci_low": lo, "ci_high": hi, "converged": ok, "iterations": iters}


# ---------------------------------------------------------------- calls
def calls_table(
    ids,
    probs: np.ndarray,
    classes: list[str],
    kind: str,
    threshold: float,
    label_thresholds=None,
    call_ratio: float = 0.0,
    logits: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row a sample: the call, its probability, the runners-up and the uncertain flag.

    Multiclass: the top class, uncertain below ``threshold``. Multilabel: every label at or
    above its threshold and at least ``call_ratio`` of the top label's probability (the top
    label always; with ``logits``, top and ratio are theirs: :func:`barloc.metrics.predict_multilabel`),
    uncertain when no label reaches its threshold."""
    # labels in the rule's order: by the logits when its ratio compares them, so that the top
    # label, listed first with its probability, is the one the rule always calls
    order = np.argsort(-(probs if logits is None or kind == "multiclass" else logits), axis=1, kind="stable")
    if kind != "multiclass":
        called_all = predict_multilabel(probs, label_thresholds, call_ratio, logits)
    rows = []
    for i, sid in enumerate(ids):
        p = probs[i]
        if kind == "multiclass":
            top = order[i, 0]
            called = [top]
            uncertain = bool(p[top] < threshold)
            rest = order[i, 1:3]
        else:
            pred = called_all[i]
            called = [j for j in order[i] if pred[j]]
            uncertain = not bool((p >= label_thresholds).any())
            rest = [j for j in order[i] if not pred[j]][:2]
        rows.append(
            {
                ID: sid,
                "call": ";".join(classes[j] for j in called),
                "probability": round(float(p[order[i, 0]]), 6),
                "alternatives": "; ".join(f"{classes[j]} ({p[j]:.2f})" for j in rest),
                "uncertain": uncertain,
                **{PROB + c: round(float(p[j]), 6) for j, c in enumerate(classes)},
            }
        )
    return pd.DataFrame(rows, columns=CALLS_COLUMNS + [PROB + c for c in classes])


@dataclass
class Caller:
    """A trained model's calling rule: its calibration, label thresholds and call ratio, the
    uncertain cut-off, and its extra heads."""

    meta: ModelMeta
    calibration: Calibration
    uncertain_below: float
    source: object = None  # calibration.json's path, for error messages

    @property
    def kind(self) -> str:
        return self.meta.kind

    @property
    def classes(self) -> list[str]:
        return list(self.meta.classes)

    @property
    def train_priors(self) -> np.ndarray:
        return self.meta.priors

    @property
    def rule(self) -> tuple[np.ndarray, float]:
        """Multilabel: per-label thresholds and the call ratio (see barloc.metrics)."""
        return self.calibration.call_rule(len(self.classes))

    def calibrate(self, z: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of class logits ``z``."""
        return apply(z, self.kind, self.calibration.params())

    def probabilities(self, z: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
        """Calibrated and, with ``target`` priors, prior-corrected probabilities of class logits."""
        return self.corrected(self.calibrate(z), target)

    def corrected(self, calibrated: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
        """``calibrated`` probabilities corrected to ``target`` priors (unchanged without)."""
        return calibrated if target is None else reweight(calibrated, self.kind, self.train_priors, np.asarray(target))

    @property
    def needs_logits(self) -> bool:
        """Whether the calls read the class logits besides the probabilities: sigmoid heads whose
        call ratio compares the logits' softmax (calibration.json ``call_ratio_on: logits``)."""
        return self.kind == "multilabel" and self.calibration.ratio_on_logits

    def rank_logits(
        self, z: np.ndarray | None, probs: np.ndarray, calibrated: np.ndarray | None = None
    ) -> np.ndarray | None:
        """What the call ratio compares, for final ``probs`` of class logits ``z``, when
        :attr:`needs_logits`: ``z`` moved as prior correction moved the ``calibrated``
        probabilities (default: ``z`` calibrated) to ``probs`` (:func:`barloc.metrics.moved_logits`);
        else None."""
        if not self.needs_logits:
            return None
        if z is None:
            raise ValueError("this model's call ratio compares its logits: pass them")
        return moved_logits(z, self.calibrate(z) if calibrated is None else calibrated, probs)

    def calls(
        self,
        ids,
        probs: np.ndarray,
        extra: np.ndarray | None = None,
        z: np.ndarray | None = None,
        calibrated: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """The calls table of final probabilities (of class logits ``z``, see :meth:`rank_logits`),
        then each extra head's probability and call."""
        rank = self.rank_logits(z, probs, calibrated)
        table = calls_table(list(ids), probs, self.classes, self.kind, self.uncertain_below, *self.rule, rank)
        if self.meta.heads:  # e.g. membrane_prob and membrane_call, after the class columns
            table = extra_heads.add_call_columns(
                table, extra, self.calibration.extra_heads, self.meta.heads, self.source
            )
        return table

    def call(
        self, ids, z: np.ndarray, extra: np.ndarray | None = None, target: np.ndarray | None = None
    ) -> pd.DataFrame:
        """Logits to calls in one go: calibrate, correct to ``target`` priors if given, call."""
        calibrated = self.calibrate(z)
        return self.calls(ids, self.corrected(calibrated, target), extra, z, calibrated)
