"""Post-hoc fits on the pooled out-of-fold logits of cross-fitting (:mod:`barloc.training.crossfit`).

- :func:`choose_calibration`: the calibration method (``auto``: the lowest cross-validated NLL
  among the methods whose calls stay within ``CALLS_TOLERANCE`` of temperature scaling's and
  whose ECE is no higher than the uncalibrated probabilities') and its parameters.
- :func:`crossfitted`: every out-of-fold row calibrated by a fit on the other folds, the
  probabilities held-out checks are run on.
- :func:`heldout_shift`: what prior correction does to the calls on held-out data, each group
  fold taken as a query (real shifts) and Dirichlet re-draws of the records (pure label
  shift), with a bootstrap interval; the workflow applies EM only where it helped there, so
  the test split never takes part in a decision.
"""

from __future__ import annotations

import numpy as np

from barloc.artifacts import FOLD, OOF, SPLIT
from barloc.calibrate import (
    BIAS_METHODS,
    apply,
    call_ratio_on,
    class_offset,
    ece_from_bins,
    fit_calibration,
    nll_of,
    offset_undoes_loss,
    reliability_of,
)
from barloc.calling import correct, reweight, split_arrays, target_vector
from barloc.metrics import fit_calls, moved_logits, predict_multilabel
from barloc.soft import hard_mask

#: the methods ``calibration.method: auto`` chooses among; sigmoid heads' bcts is Platt scaling
#: (and so is their vector scaling, left out as the same fit)
METHODS = {"multiclass": ("none", "temperature", "bcts", "vector"), "multilabel": ("none", "temperature", "bcts")}
#: auto never takes a method whose cross-validated calls lose more than this against temperature scaling's
CALLS_TOLERANCE = 0.01
#: nor one whose calls lose more than this against temperature scaling's on any one fold, or
#: whose ECE rises more than this above the uncalibrated probabilities' on any one fold
FOLD_TOLERANCE = 0.02
#: the calls' figure each kind is judged by
CALLS_METRIC = {"multiclass": "balanced_accuracy", "multilabel": "micro_f1"}


def _largest_gap(a, b) -> float:
    """The largest fold-wise a - b, ignoring NaN folds (0 when every fold is NaN)."""
    gaps = np.subtract(a, b)
    return float(np.nanmax(gaps)) if np.isfinite(gaps).any() else 0.0


def _ece(kind: str, probs: np.ndarray, y: np.ndarray, bins: int) -> float:
    return ece_from_bins(reliability_of(kind, probs, y, bins)) if len(y) else float("nan")


def crossfitted(
    kind: str, method: str, z: np.ndarray, y: np.ndarray, folds: np.ndarray, offset: np.ndarray, priors: np.ndarray
) -> np.ndarray:
    """Calibrated probabilities of every row, each fold's by ``method`` fitted on the other folds."""
    out = np.empty(z.shape, dtype=np.float64)
    for f in np.unique(folds):
        held = folds == f
        out[held] = apply(z[held], kind, fit_calibration(kind, method, z[~held], y[~held], offset, priors))
    return out


def call_hits(
    kind: str,
    probs: np.ndarray,
    y: np.ndarray,
    rule: tuple[np.ndarray, float] | None = None,
    logits: np.ndarray | None = None,
) -> np.ndarray:
    """Per record, what the calls' figure sums: multiclass, whether the top class is right;
    multilabel, (true positives, false positives, false negatives) of the calls by ``rule``
    (``logits``: its ratio is theirs, :func:`barloc.metrics.predict_multilabel`)."""
    if kind == "multiclass":
        return (probs.argmax(axis=1) == y).astype(np.float64)
    thresholds, ratio = rule
    pred, truth = predict_multilabel(probs, thresholds, ratio, logits), np.asarray(y, dtype=bool)
    return np.stack([(pred & truth).sum(1), (pred & ~truth).sum(1), (~pred & truth).sum(1)], axis=1).astype(float)


def hits_score(kind: str, hits: np.ndarray, y: np.ndarray | None = None, target: np.ndarray | None = None) -> float:
    """Accuracy (multiclass) or micro-F1 (multilabel) of :func:`call_hits` rows; with ``y``
    and ``target`` (multiclass), accuracy under the target priors: each class's recall
    weighted by its target prior, over the classes present (balanced accuracy when equal)."""
    if kind == "multiclass":
        if not len(hits):
            return float("nan")
        if target is None:
            return float(hits.mean())
        present = np.unique(y)
        weight = np.asarray(target, dtype=np.float64)[present]
        if weight.sum() <= 0:  # only classes the target gives no weight
            return float("nan")
        recall = np.array([hits[y == c].mean() for c in present])
        return float((weight * recall).sum() / weight.sum())
    tp, fp, fn = hits.sum(axis=0)
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else float("nan")


def calls_score(
    kind: str, probs: np.ndarray, y: np.ndarray, folds: np.ndarray, call_ratio, logits: np.ndarray | None = None
) -> tuple[float, list[float]]:
    """(pooled, per fold) balanced accuracy of the top-class calls, or micro-F1 of sigmoid
    heads' calls by a rule (thresholds, call ratio; ``logits``: the ratio of theirs) fitted on
    the other folds."""
    order = np.unique(folds)
    if kind == "multiclass":
        hits, even = (probs.argmax(axis=1) == y).astype(np.float64), np.ones(probs.shape[1])
        return hits_score(kind, hits, y, even), [hits_score(kind, hits[folds == f], y[folds == f], even) for f in order]
    hits = np.zeros((len(y), 3))
    for f in order:
        held = folds == f
        z_fit, z_held = (None, None) if logits is None else (logits[~held], logits[held])
        rule = fit_calls(probs[~held], y[~held], call_ratio, z_fit)
        hits[held] = call_hits(kind, probs[held], y[held], (rule["thresholds"], rule["call_ratio"]), z_held)
    return hits_score(kind, hits), [hits_score(kind, hits[folds == f]) for f in order]


def choose_calibration(
    kind: str,
    method: str,
    z: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    offset: np.ndarray,
    priors: np.ndarray,
    call_ratio="auto",
    target: np.ndarray | None = None,
    ece_bins: int = 15,
    bias_refit: bool = False,
    ratio_on_logits: bool = False,
) -> tuple[dict, dict, np.ndarray]:
    """(calibration parameters fitted on all rows, the choice, the chosen method's
    :func:`crossfitted` probabilities).

    ``auto`` takes the lowest cross-validated NLL among :data:`METHODS` whose cross-validated
    calls lose at most :data:`CALLS_TOLERANCE` against temperature scaling's (at most
    :data:`FOLD_TOLERANCE` on any one fold: a bias fitted on a few groups can win the pool and
    lose a fold) and whose cross-validated ECE is no higher than that of ``none`` (the
    network's own probabilities, its class weighting undone), nor more than
    :data:`FOLD_TOLERANCE` higher on any one fold: calibration must not make the calls worse, nor the probabilities
    the report shows less reliable. NLL alone can fail the second: on grouped folds a few
    confidently wrong groups set the temperature, and every other call is then under-confident.
    When no method passes both, the calls decide and ECE breaks the tie. Any other method is
    taken as given. The choice records every candidate's cross-validated NLL, ECE and calls.
    ``bias_refit``: the weighting offset does not make the logits posteriors (the softmax term
    of sigmoid heads), so ``auto`` takes only a method of :data:`BIAS_METHODS`; the others are
    still scored, as the guards' references. ``ratio_on_logits``: the calls' ratio compares the
    logits' softmax (docs/method.md#calls), as :func:`calibration_fit`'s rule will.
    ``target``: the known query priors a softmax task calls under (``prior_shift.method:
    known``), so that calls and ECE are those of the probabilities the task reports."""
    candidates = METHODS[kind] if method == "auto" else tuple(dict.fromkeys(("temperature", method)))
    metric = CALLS_METRIC[kind]
    table, probs = {}, {}
    for m in candidates:
        p = probs[m] = crossfitted(kind, m, z, y, folds, offset, priors)
        shown = p if target is None or kind != "multiclass" else reweight(p, kind, priors, np.asarray(target))
        pooled, per_fold = calls_score(kind, shown, y, folds, call_ratio, z if ratio_on_logits else None)
        table[m] = {
            "nll": nll_of(kind, p, y),
            "ece": _ece(kind, shown, y, ece_bins),
            metric: pooled,
            "folds": per_fold,
            "ece_folds": [_ece(kind, shown[folds == f], y[folds == f], ece_bins) for f in np.unique(folds)],
        }
    if method == "auto":
        ref, raw = table["temperature"], table["none"]

        def keeps_calls(m: str) -> bool:  # NaN figures (an empty fold): no guard
            return not (
                table[m][metric] < ref[metric] - CALLS_TOLERANCE
                or _largest_gap(ref["folds"], table[m]["folds"]) > FOLD_TOLERANCE
            )

        def keeps_ece(m: str) -> bool:
            return not (
                table[m]["ece"] > raw["ece"] or _largest_gap(table[m]["ece_folds"], raw["ece_folds"]) > FOLD_TOLERANCE
            )

        allowed = [m for m in candidates if not bias_refit or m in BIAS_METHODS]
        calls_ok = [m for m in allowed if keeps_calls(m)] or (allowed if bias_refit else ["temperature"])
        eligible = [m for m in calls_ok if keeps_ece(m)]
        keeps = (
            f"whose calls' {metric.replace('_', ' ')} stays within {CALLS_TOLERANCE} of temperature scaling's "
            f"(within {FOLD_TOLERANCE} on every fold)"
        )
        if eligible:
            chosen = min(eligible, key=lambda m: table[m]["nll"])
            reason = (
                f"the lowest cross-validated NLL ({table[chosen]['nll']:.3f}) of the methods {keeps} and whose ECE "
                f"is no higher than the uncalibrated probabilities' ({table['none']['ece']:.3f}; nor "
                f"{FOLD_TOLERANCE} higher on any fold)"
            )
        else:
            chosen = min(calls_ok, key=lambda m: table[m]["ece"])
            reason = (
                f"the lowest cross-validated ECE ({table[chosen]['ece']:.3f}) of the methods {keeps}; none of "
                "them kept the uncalibrated probabilities' ECE"
            )
        if bias_refit:
            reason += "; only a method that fits each label's bias, as the training loss's softmax term shifts it"
    else:
        chosen, reason = method, "calibration.method names it"
    choice = {
        "configured": method,
        "chosen": chosen,
        "reason": reason,
        "metric": metric,
        "n": int(len(y)),
        "n_folds": int(len(np.unique(folds))),
        "candidates": table,
    }
    return fit_calibration(kind, chosen, z, y, offset, priors), choice, probs[chosen]


def _redraw(rng: np.random.Generator, strata: np.ndarray, n_strata: int) -> np.ndarray:
    """Indices of a resample whose stratum mix is drawn from a flat Dirichlet."""
    pools = [np.flatnonzero(strata == s) for s in range(n_strata)]
    pools = [p for p in pools if len(p)]
    counts = rng.multinomial(len(strata), rng.dirichlet(np.ones(len(pools))))
    return np.concatenate([rng.choice(p, c) for p, c in zip(pools, counts) if c])


def heldout_shift(
    kind: str,
    probs: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    train: np.ndarray,
    pcfg: dict,
    classes: list[str],
    seed: int,
    rule: tuple[np.ndarray, float] | None = None,
    redraws: int = 50,
    n_boot: int = 1000,
    target: np.ndarray | None = None,
    logits: np.ndarray | None = None,
) -> dict:
    """What ``pcfg``'s prior correction does to the calls on cross-fitted calibrated
    out-of-fold ``probs``: accuracy (multiclass) or micro-F1 (multilabel, calls by ``rule``)
    before and after. ``target``: known softmax priors the calls are made for (``known``), which
    the accuracy is weighted to (:func:`hits_score`). ``logits``: the rule's ratio is theirs,
    moved as the correction moves the probabilities (:func:`barloc.metrics.moved_logits`).

    ``folds``: each group fold is a query whose class mix and records differ from the rest as a
    real query's would; the pooled change gets a 95% bootstrap interval (records resampled
    within folds). ``redraws``: resamples of all records with a class mix (multilabel: first
    label's) drawn from a flat Dirichlet, where only the label mix shifts.
    """
    rng = np.random.default_rng(seed)
    quiet = {**pcfg, "bootstrap": 0}
    y = np.asarray(y)

    def score(hits: np.ndarray, idx: np.ndarray | slice = slice(None)) -> float:
        return hits_score(kind, hits) if target is None else hits_score(kind, hits, y[idx], target)

    strata = y if kind == "multiclass" else np.where(y.any(axis=1), np.asarray(y, float).argmax(axis=1), len(classes))

    def run(idx: np.ndarray, val_idx: np.ndarray) -> np.ndarray:
        val = (probs[val_idx], y[val_idx]) if pcfg["method"] == "bbse" else None
        thresholds = None if rule is None else rule[0]
        corrected, _ = correct(kind, probs[idx], train, quiet, classes, seed, val, thresholds)
        return corrected

    def hits_after(idx: np.ndarray, val_idx: np.ndarray) -> np.ndarray:
        corrected = run(idx, val_idx)
        z = None if logits is None else moved_logits(logits[idx], probs[idx], corrected)
        return call_hits(kind, corrected, y[idx], rule, z)

    before = call_hits(kind, probs, y, rule, logits)
    after = np.empty_like(before)
    per_fold = []
    for f in np.unique(folds):
        held = np.flatnonzero(folds == f)
        after[held] = hits_after(held, np.flatnonzero(folds != f))
        per_fold.append(
            {
                "fold": int(f),
                "n": int(len(held)),
                "before": score(before[held], held),
                "after": score(after[held], held),
            }
        )
    delta = score(after) - score(before)
    boot = []
    by_fold = [np.flatnonzero(folds == f) for f in np.unique(folds)]
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(i, len(i)) for i in by_fold])
        boot.append(score(after[idx], idx) - score(before[idx], idx))
    lo, hi = np.nanpercentile(boot, [2.5, 97.5]) if boot else (np.nan, np.nan)
    changes = []
    everything = np.arange(len(y))
    for _ in range(redraws):
        idx = _redraw(rng, strata, len(classes) + 1)
        sample_hits = hits_after(idx, everything)
        changes.append(score(sample_hits, idx) - score(before[idx], idx))
    if kind == "multilabel":
        metric = "micro_f1"
    elif target is None:
        metric = "accuracy"
    else:
        metric = "balanced_accuracy" if np.allclose(target, target[0]) else "accuracy_at_target_priors"
    return {
        "metric": metric,
        "folds": per_fold,
        "before": score(before),
        "after": score(after),
        "change": delta,
        "ci_low": float(lo),
        "ci_high": float(hi),
        "n_boot": int(n_boot),
        "redraws": {
            "n": int(redraws),
            "mean_change": float(np.mean(changes)) if changes else float("nan"),
            "share_improved": float(np.mean(np.asarray(changes) > 0)) if changes else float("nan"),
        },
    }


def shift_helps(check: dict) -> bool:
    """Whether prior correction improved the calls on held-out data: not worse on the group
    folds taken as queries (real shifts) and better on average under re-drawn class mixes
    (pure label shift); without re-draws, better on the folds."""
    if check["redraws"]["n"] == 0:
        return bool(check["change"] > 0)
    return bool(check["change"] >= 0 and check["redraws"]["mean_change"] > 0)


# ---------------------------------------------------------------- a task's post-hoc fit
def oof_arrays(df, meta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, targets and folds of a logits table's out-of-fold rows with a known class."""
    z, y = split_arrays(df, meta, OOF)
    folds = df.loc[(df[SPLIT] == OOF).to_numpy() & hard_mask(df), FOLD].to_numpy(dtype=int)
    return z, y, folds


def _known_target(meta, pcfg: dict | None) -> np.ndarray | None:
    """The configured query priors of a softmax task that calls under known priors, else None."""
    if pcfg and pcfg.get("method") == "known" and meta.kind == "multiclass":
        return target_vector(pcfg["target_priors"], meta.classes, meta.kind)
    return None


def calibration_fit(
    meta, z: np.ndarray, y: np.ndarray, folds: np.ndarray, ccfg: dict, pcfg: dict | None = None
) -> tuple[dict, np.ndarray]:
    """The calibration.json fields fitted on out-of-fold logits by a task's ``calibration`` block
    (the chosen method's parameters with the calling model's offset, ``choice`` and, for sigmoid
    heads, the calling rule: thresholds and call ratio), and the rows' cross-fitted probabilities
    under the chosen method (:func:`crossfitted`), which the held-out checks read."""
    offset = class_offset(meta)
    target = _known_target(meta, pcfg)
    refit = not offset_undoes_loss(meta.kind, meta.loss)
    on = call_ratio_on(meta.kind, meta.loss)
    fitted, choice, probs = choose_calibration(
        meta.kind,
        ccfg["method"],
        z,
        y,
        folds,
        offset,
        meta.priors,
        ccfg["call_ratio"],
        target,
        int(ccfg["ece_bins"]),
        refit,
        on is not None,
    )
    out = {**fitted, "choice": choice}
    if meta.kind == "multilabel":
        rule = fit_calls(apply(z, meta.kind, fitted), y, ccfg["call_ratio"], z if on else None)
        out |= {"thresholds": rule["thresholds"], "call_ratio": rule["call_ratio"]}
        if on:
            out["call_ratio_on"] = on
    return out, probs


def shift_check(meta, calibration, z, y, folds, pcfg: dict, seed: int, probs: np.ndarray | None = None) -> dict | None:
    """:func:`heldout_shift` of ``pcfg``'s correction on the out-of-fold rows, calibrated by the
    chosen method cross-fitted (``probs``, when :func:`calibration_fit` has them already): for
    EM and BBSE the check that decides, for known priors what the correction did (softmax
    accuracy weighted to those priors; nothing is estimated, so no re-draws); None for none."""
    method = pcfg["method"]
    if method not in ("em", "bbse", "known") or len(y) == 0:
        return None
    if probs is None:
        offset = class_offset(meta) if calibration.offset is None else np.asarray(calibration.offset, dtype=np.float64)
        probs = crossfitted(meta.kind, calibration.method or "temperature", z, y, folds, offset, meta.priors)
    rule = calibration.call_rule(len(meta.classes)) if meta.kind == "multilabel" else None
    redraws = 0 if method == "known" else int(pcfg["check_redraws"])
    return heldout_shift(
        meta.kind,
        probs,
        y,
        folds,
        meta.priors,
        pcfg,
        meta.classes,
        seed,
        rule,
        redraws,
        target=_known_target(meta, pcfg),
        logits=z if meta.kind == "multilabel" and calibration.ratio_on_logits else None,
    )


def decide(method: str, check: bool, n_query: int, heldout: dict | None) -> tuple[bool, dict, str]:
    """(applied, decision, reason): whether the calls use the corrected probabilities, the
    machine-readable decision (priors.json ``decision``; codes in artifacts.DECISION_CODES) and
    the same as a sentence for the log. EM and BBSE assume p(x|y) is the same in training and
    query; when that failed on held-out data (barloc.posthoc.heldout_shift: the correction did
    not improve the calls of the cross-fitting folds taken as queries, or of re-drawn class
    mixes), the calls keep the calibrated probabilities. The test split takes no part."""
    if method == "none":
        return False, {"code": "not_requested"}, "prior_shift.method is none"
    if n_query == 0:
        return False, {"code": "no_query"}, "there are no query samples to correct"
    if method in ("em", "bbse") and check and heldout is not None and not shift_helps(heldout):
        metric = heldout["metric"].replace("_", "-")
        reason = (
            f"on held-out folds {method.upper()} changed {metric} from {heldout['before']:.3f} to "
            f"{heldout['after']:.3f} (mean change over {heldout['redraws']['n']} re-drawn class mixes "
            f"{heldout['redraws']['mean_change']:+.3f}), so the label-shift assumption does not hold well "
            "enough; calls use calibrated probabilities"
        )
        decision = {
            "code": "check_failed",
            "metric": heldout["metric"],
            "split": "heldout",
            "before": heldout["before"],
            "after": heldout["after"],
        }
        return False, decision, reason
    return True, {"code": "applied"}, ""
