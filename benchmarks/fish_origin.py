"""Fish origin from COI barcodes: barloc against barcode-classifier baselines, grouped 5-fold CV.

Every method sees the same folds (whole BOLD projects per fold) of the bundled tuna export's
COI-5P records with a basin label (Atlantic / Pacific / Indian / Mediterranean), and is scored
on the pooled out-of-fold predictions. barloc's arms run the whole recipe for each test fold
(barloc.cv): cross-fitting on the other four folds, calibration chosen and fitted on their
out-of-fold logits, the model refit on all four, and the config's decision rule.

Baselines: q2-feature-classifier's recipe (char 7-mer hashing + multinomial naive Bayes), 6-mer
logistic regression, "each species' majority basin", and the nearest reference barcode (cosine
of 5-mer profiles; tied references vote, balanced by class). Ablation: barloc's loss options.
barloc_kmer: the k-mer MLP encoder, the default before cross-fitting. decision_rules: the
configured model's final calls under the training mix, equal priors, and EM with the held-out
check. Fold spread: barloc, barloc_kmer and the baselines on the folds of other seeds;
default_config: the configured task's final calls over those seeds.
Seed spread: barloc retrained with other training seeds on the same folds, with and without
the config's training-set augmentation (``train.augment``), and the ensembles that average
those members' calibrated probabilities.

    python benchmarks/fish_origin.py --out benchmarks/results/fish_origin.json [--oof oof.parquet]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from barloc.artifacts import logit_columns
from barloc.calibrate import ece_from_bins, multiclass_ece_floor, multiclass_reliability, softmax_probs
from barloc.config import check_config
from barloc.cv import ENSEMBLE, FINAL, PROB, assign_folds, out_of_fold
from barloc.encode import kmer_profile
from barloc.metrics import multiclass_metrics
from barloc.records import drop_rare_classes, load_reference
from barloc.runtime import versions

REPO = Path(__file__).resolve().parents[1]
N_FOLDS = 5


def load_task(config: Path) -> tuple[pd.DataFrame, dict, dict]:
    cfg = check_config(yaml.safe_load(config.read_text()), source=str(config))
    task = cfg["tasks"]["fish_origin"]
    task = {**task, "reference": str(REPO / task["reference"])}
    df = load_reference(task, str(REPO / cfg["geo_table"]))
    df = drop_rare_classes(df, task["kind"], int(task["min_class_size"]))
    labelled = df[df["label"].notna()].reset_index(drop=True)
    trainer = {**cfg["trainer"], "accelerator": "cpu", "precision": "32-true"}
    return labelled, task, trainer


def scores(probs: np.ndarray, y: np.ndarray, raw: np.ndarray | None = None, priors: np.ndarray | None = None) -> dict:
    """Metrics of the calls a method makes under its training class mix (argmax of its
    probabilities), and, given each row's training ``priors``, balanced accuracy of the calls
    under equal priors (probabilities divided by the priors: what barloc calls with
    ``prior_shift: known`` and equal ``target_priors``), the decision balanced accuracy rewards."""
    m = multiclass_metrics(probs, y)
    out = {k: round(m[k], 4) for k in ("balanced_accuracy", "macro_f1", "accuracy", "nll")}
    out["ece_calibrated"] = round(m["ece"], 4)
    # What perfectly calibrated probabilities would show on this many records (binned ECE's bias).
    out["ece_floor"] = round(multiclass_ece_floor(probs), 4)
    if raw is not None:
        out["ece_uncalibrated"] = round(ece_from_bins(multiclass_reliability(raw, y)), 4)
    if priors is not None:
        even = probs / np.clip(priors, 1e-9, None)
        out["balanced_accuracy_equal_priors"] = round(
            multiclass_metrics(even / even.sum(axis=1, keepdims=True), y)["balanced_accuracy"], 4
        )
    return out


def barloc_scores(labelled, task, trainer, seed, folds=None) -> tuple[dict, pd.DataFrame]:
    """The whole recipe in grouped CV (barloc.cv): calibrated calls under the training mix (with
    the equal-prior figure beside them), the final calls (after the prior correction the
    config applies), and the uncalibrated model's."""
    n_folds = N_FOLDS if folds is None else int(np.max(folds)) + 1
    oof, info = out_of_fold(labelled, task, trainer, n_folds, seed, folds=folds)
    classes = [c.split("::", 1)[1] for c in oof.columns if c.startswith(PROB)]
    y = oof["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    probs = oof[[PROB + c for c in classes]].to_numpy()
    raw = softmax_probs(oof[logit_columns(classes)].to_numpy())
    train_priors = {i["fold"]: i["meta"].train_priors for i in info}
    priors = np.array([train_priors[f] for f in oof["fold"]])
    out = scores(probs, y, raw, priors)
    final = multiclass_metrics(oof[[FINAL + c for c in classes]].to_numpy(), y)
    out["final_calls"] = {"balanced_accuracy": round(final["balanced_accuracy"], 4), "ece": round(final["ece"], 4)}
    unc = multiclass_metrics(raw, y)
    out["uncalibrated"] = {"balanced_accuracy": round(unc["balanced_accuracy"], 4), "ece": round(unc["ece"], 4)}
    # The other design for the calling model: the cross-fitting fold models as an ensemble
    # (mean logits, calibrated alike), under the same decision rule as the final calls.
    ens = oof[[ENSEMBLE + c for c in classes]].to_numpy()
    if task.get("prior_shift", {}).get("target_priors") == "equal":
        ens = ens / np.clip(priors, 1e-9, None)
        ens = ens / ens.sum(axis=1, keepdims=True)
    ens_m = multiclass_metrics(ens, y)
    out["ensemble_calls"] = {"balanced_accuracy": round(ens_m["balanced_accuracy"], 4), "ece": round(ens_m["ece"], 4)}
    out["calibration_chosen"] = [i["calibration"].method for i in info]
    out["prior_correction_applied"] = [i["applied"] for i in info]
    return out, oof


def _result_options(argv: list[str]) -> list[str]:
    """The command-line options that decide the figures (not where they are written)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--out", "--oof"):
            skip = True
        elif not arg.startswith(("--out=", "--oof=")):
            out.append(arg)
    return out


# The augmentation the seed spread compares with, when the config has none of its own.
AUGMENT = {"copies": 2, "crop": 0.7, "substitution": 0.01}


def without_augment(task: dict) -> dict:
    return {**task, "train": {**task.get("train", {}), "augment": {"copies": 0}}}


def with_augment(task: dict) -> dict:
    aug = task.get("train", {}).get("augment") or {}
    return {**task, "train": {**task.get("train", {}), "augment": aug if aug.get("copies", 0) > 0 else AUGMENT}}


def seed_spread(labelled, task, trainer, folds, seeds, first: pd.DataFrame | None) -> dict:
    """barloc with each training seed (same folds), with training-set augmentation (the
    config's, else AUGMENT) and without; per seed, the paired change, and the ensembles
    averaging each set's calibrated probabilities. ``first``: the out-of-fold frame already
    trained with seeds[0] and the config as it is."""
    out: dict = {"seeds": seeds}
    probs: dict[str, list[np.ndarray]] = {}
    y = None
    configured = (task.get("train", {}).get("augment") or {}).get("copies", 0) > 0
    for name, variant in (("augmented", with_augment(task)), ("plain", without_augment(task))):
        out[name], probs[name] = [], []
        for i, seed in enumerate(seeds):
            if i == 0 and first is not None and (name == "augmented") == configured:
                oof = first
            else:
                oof = barloc_scores(labelled, variant, trainer, seed, folds)[1]
            oof = oof.set_index("id").loc[labelled["id"]]
            classes = [c.split("::", 1)[1] for c in oof.columns if c.startswith(PROB)]
            y = oof["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
            p = oof[[PROB + c for c in classes]].to_numpy()
            probs[name].append(p)
            out[name].append(scores(p, y))
    for name in ("augmented", "plain"):
        ba = [s["balanced_accuracy"] for s in out[name]]
        out[f"{name}_balanced_accuracy"] = {"mean": round(float(np.mean(ba)), 4), "min": min(ba), "max": max(ba)}
        out[f"{name}_ensemble"] = scores(np.mean(probs[name], axis=0), y)
    diffs = [a["balanced_accuracy"] - p["balanced_accuracy"] for a, p in zip(out["augmented"], out["plain"])]
    out["paired_change"] = {"per_seed": [round(d, 4) for d in diffs], "mean": round(float(np.mean(diffs)), 4)}
    return out


def nearest_votes(query: np.ndarray, ref: np.ndarray, y_ref: np.ndarray, k: int) -> np.ndarray:
    """1-nearest-neighbour by cosine similarity of unit-length k-mer profiles, as a barcode
    identification engine matches a query to its closest reference. Identical haplotypes
    tie, so every reference at the top similarity votes; the vote shares are the probabilities."""
    sim = query @ ref.T
    top = sim >= sim.max(axis=1, keepdims=True) - 1e-9
    votes = np.stack([top[:, y_ref == c].sum(axis=1) for c in range(k)], axis=1).astype(float)
    return votes / votes.sum(axis=1, keepdims=True)


def baseline_scores(labelled: pd.DataFrame, folds: np.ndarray, classes: list[str]) -> dict:
    y = labelled["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    seqs = labelled["sequence"].tolist()
    k = len(classes)
    nb_x = HashingVectorizer(
        analyzer="char", ngram_range=(7, 7), n_features=8192, alternate_sign=False, norm=None
    ).transform(seqs)
    lr_x = kmer_profile(seqs, 6)
    nn_x = kmer_profile(seqs, 5).astype(np.float64)  # ties are within 1e-9: below float32's rounding
    nn_x /= np.clip(np.linalg.norm(nn_x, axis=1, keepdims=True), 1e-12, None)
    out = {}
    priors = np.zeros((len(y), k))
    for f in range(N_FOLDS):
        priors[folds == f] = np.bincount(y[folds != f], minlength=k) / (folds != f).sum()
    for name in ("kmer_nb", "kmer_logreg", "species_majority", "nearest_neighbour"):
        probs = np.zeros((len(y), k))
        for f in range(N_FOLDS):
            test, train = folds == f, folds != f
            if name == "kmer_nb":
                model = MultinomialNB(alpha=0.001).fit(nb_x[train], y[train])
                probs[np.ix_(test, model.classes_)] = model.predict_proba(nb_x[test])
            elif name == "kmer_logreg":
                model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000)).fit(
                    lr_x[train], y[train]
                )
                probs[np.ix_(test, model.classes_)] = model.predict_proba(lr_x[test])
            elif name == "nearest_neighbour":
                probs[test] = nearest_votes(nn_x[test], nn_x[train], y[train], k)
            else:
                species = labelled["species"].fillna("")
                table = pd.crosstab(species[train], y[train])
                table = table.reindex(columns=range(k), fill_value=0) + 1e-3
                prior = np.bincount(y[train], minlength=k) / train.sum()
                rows = table.reindex(species[test]).to_numpy()
                rows = np.where(np.isnan(rows), prior, rows)
                probs[test] = rows / rows.sum(axis=1, keepdims=True)
        probs = np.clip(probs, 1e-9, None)
        out[name] = scores(probs / probs.sum(axis=1, keepdims=True), y, priors=priors)
    return out


# The k-mer MLP, the default before cross-fitting: an MLP over standardised 5-mer profiles,
# early-stopped on balanced accuracy, under the task's own calibration and decision rule.
KMER = {
    "encoder": {"type": "kmer", "k": 5, "hidden": 128, "dropout": 0.3, "standardize": True},
    "train": {"lr": 0.003, "max_epochs": 100, "patience": 10, "monitor": "val_metric", "early_stopping": True},
}


def kmer_variant(task: dict) -> dict:
    return {**task, "encoder": KMER["encoder"], "train": {**task.get("train", {}), **KMER["train"]}}


def rule_variant(task: dict, rule: str) -> dict:
    """The task under another decision rule: training mix (no correction), equal priors, or EM
    with the held-out check."""
    pcfg = {"train_mix": {"method": "none"}, "equal": {"method": "known", "target_priors": "equal"}}.get(
        rule, {"method": "em", "check": True}
    )
    return {**task, "prior_shift": pcfg}


def fold_spread(labelled, task, trainer, seeds, first: dict) -> dict:
    """The configured model, the k-mer MLP variant and the baselines on the folds of
    each seed (other projects share a fold each time); ``first``: seed[0]'s scores so far."""
    classes = sorted(labelled["label"].unique())
    rows = [first]
    for seed in seeds[1:]:
        folds = assign_folds(labelled, N_FOLDS, seed)
        rows.append(
            {
                "barloc": barloc_scores(labelled, task, trainer, seed, folds)[0],
                "barloc_kmer": barloc_scores(labelled, kmer_variant(task), trainer, seed, folds)[0],
                **baseline_scores(labelled, folds, classes),
            }
        )
    out: dict = {"seeds": seeds, "per_seed": rows}
    out["mean_balanced_accuracy"] = {
        m: round(float(np.mean([r[m]["balanced_accuracy"] for r in rows])), 4) for m in rows[0]
    }
    for key in ("balanced_accuracy_equal_priors", "ece_calibrated", "ece_floor"):
        out[f"mean_{key}"] = {m: round(float(np.mean([r[m][key] for r in rows])), 4) for m in rows[0]}
    barlocs = [m for m in rows[0] if m.startswith("barloc")]
    for part in ("final_calls", "ensemble_calls"):
        out[f"mean_{part}"] = {
            m: {k: round(float(np.mean([r[m][part][k] for r in rows])), 4) for k in ("balanced_accuracy", "ece")}
            for m in barlocs
        }
    return out


def default_config(spread: dict) -> dict:
    """fish_origin.json's ``default_config``: the configured task's final calls and its
    uncalibrated model's, mean over the fold seeds, and the best barcode-only baseline under the
    same decision rule (equal priors when the task calls with equal priors)."""
    rows = [r["barloc"] for r in spread["per_seed"]]

    def mean(part: str, key: str) -> float:
        return round(float(np.mean([r[part][key] for r in rows])), 4)

    baselines = ("kmer_nb", "kmer_logreg", "nearest_neighbour")
    return {
        "final_calls": {
            "balanced_accuracy": mean("final_calls", "balanced_accuracy"),
            "ece": mean("final_calls", "ece"),
            "per_seed": [r["final_calls"] for r in rows],
        },
        "uncalibrated": {
            "balanced_accuracy": mean("uncalibrated", "balanced_accuracy"),
            "ece": mean("uncalibrated", "ece"),
        },
        "baselines_same_rule": {
            b: {
                "balanced_accuracy_train_mix": spread["mean_balanced_accuracy"][b],
                "balanced_accuracy_equal_priors": spread["mean_balanced_accuracy_equal_priors"][b],
            }
            for b in baselines
        },
    }


ABLATION = {
    "ce": {"type": "cross_entropy", "class_weights": "none"},
    "weighted_ce": {"type": "cross_entropy", "class_weights": "inverse"},
    "focal": {"type": "focal", "gamma": 2.0, "class_weights": "none"},
    "label_smoothing": {"type": "cross_entropy", "class_weights": "inverse", "label_smoothing": 0.1},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "config/config.yaml")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--oof", type=Path, help="also write barloc's pooled out-of-fold logits (parquet)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--no-augment", action="store_true", help="train without the config's train.augment")
    ap.add_argument(
        "--spread-seeds", type=int, default=5, help="training seeds for the seed spread and ensembles (0: skip)"
    )
    ap.add_argument(
        "--fold-seeds",
        type=int,
        default=3,
        help="fold assignments (seed, seed + 1000, ...) on which to compare barloc, its k-mer MLP "
        "variant and the baselines (1: only --seed)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # one thread: runs repeat bit for bit (summation order is fixed)
    t0 = time.perf_counter()

    labelled, task, trainer = load_task(args.config)
    if args.no_augment:
        task = without_augment(task)
    folds = assign_folds(labelled, N_FOLDS, args.seed)
    classes = sorted(labelled["label"].unique())
    result: dict = {
        "date": dt.date.today().isoformat(),
        "command": " ".join(["python benchmarks/fish_origin.py --out FILE", *_result_options(sys.argv[1:])]),
        "n_records": len(labelled),
        "n_groups": int(labelled["group"].nunique()),
        "classes": classes,
        "class_counts": labelled["label"].value_counts().to_dict(),
        "n_folds": N_FOLDS,
        "encoder": task.get("encoder"),
        "loss": task.get("loss"),
        "calibration": task.get("calibration"),
        "prior_shift": task.get("prior_shift"),
        "augment": task.get("train", {}).get("augment"),
    }
    result["barloc"], oof = barloc_scores(labelled, task, trainer, args.seed)
    result["baselines"] = baseline_scores(labelled, folds, classes)
    result["barloc_kmer"] = {
        "variant": KMER,
        **barloc_scores(labelled, kmer_variant(task), trainer, args.seed, folds)[0],
    }
    result["decision_rules"] = {
        rule: barloc_scores(labelled, rule_variant(task, rule), trainer, args.seed, folds)[0]["final_calls"]
        for rule in ("train_mix", "equal", "em")
    }
    if not args.no_ablation:
        result["ablation"] = {}
        for name, loss in ABLATION.items():
            variant = copy.deepcopy(task) | {"loss": loss}
            result["ablation"][name] = barloc_scores(labelled, variant, trainer, args.seed)[0]
    if args.fold_seeds > 1:
        first = {
            "barloc": result["barloc"],
            "barloc_kmer": {k: v for k, v in result["barloc_kmer"].items() if k != "variant"},
            **result["baselines"],
        }
        result["fold_spread"] = fold_spread(
            labelled, task, trainer, [args.seed + 1000 * i for i in range(args.fold_seeds)], first
        )
        result["default_config"] = default_config(result["fold_spread"])
    if args.spread_seeds > 0:
        seeds = [args.seed + 1000 * i for i in range(args.spread_seeds)]
        result["seed_spread"] = seed_spread(labelled, task, trainer, folds, seeds, oof)
    import sklearn  # the baselines' library: their figures moved with its version before

    result["versions"] = {**versions(), "scikit-learn": sklearn.__version__}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.oof:
        oof.to_parquet(args.oof, index=False)


if __name__ == "__main__":
    main()
