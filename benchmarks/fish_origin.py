"""Fish origin from COI barcodes: barloc against barcode-classifier baselines, grouped 5-fold CV.

Every method sees the same folds (whole BOLD projects per fold) of the bundled tuna export's
COI-5P records with a basin label (Atlantic / Pacific / Indian / Mediterranean), and is scored
on the pooled out-of-fold predictions.

Baselines: q2-feature-classifier's recipe (char 7-mer hashing + multinomial naive Bayes), 6-mer
logistic regression, "each species' majority basin", and the nearest reference barcode (cosine
of 5-mer profiles; tied references vote, balanced by class). Ablation: barloc's loss options.
barloc_nearest: the same model with the nearest-reference encoder (``encoder.type: nearest``);
barloc_nearest_refit: that one retrained on train + val (``train.refit``) for 40 epochs and
calibrated on its own val logits (``calibration.val_scored_by: refit_model``).
Fold spread: barloc, barloc_nearest and the baselines on the folds of other seeds.
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

from barloc.calibrate import ece_from_bins, multiclass_ece_floor, multiclass_reliability, softmax_probs
from barloc.config import check_config
from barloc.cv import assign_folds, out_of_fold
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
    oof, info = out_of_fold(labelled, task, trainer, N_FOLDS, seed, folds=folds)
    classes = [c.split("::", 1)[1] for c in oof.columns if c.startswith("prob::")]
    y = oof["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    probs = oof[[f"prob::{c}" for c in classes]].to_numpy()
    raw = softmax_probs(oof[[f"logit::{c}" for c in classes]].to_numpy())
    train_priors = {i["fold"]: i["meta"].train_priors for i in info}
    priors = np.array([train_priors[f] for f in oof["fold"]])
    return scores(probs, y, raw, priors), oof


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
            classes = [c.split("::", 1)[1] for c in oof.columns if c.startswith("prob::")]
            y = oof["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
            p = oof[[f"prob::{c}" for c in classes]].to_numpy()
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


# The nearest-reference encoder (encoder.type: nearest), as measured against the configured
# model: a linear head over 8 distances learns faster (lr 0.03) and early-stops on the loss,
# which is smooth, where the validation fold's balanced accuracy jumps with a few records.
NEAREST = {"encoder": {"type": "nearest", "k": 5, "hidden": 0}, "train": {"lr": 0.03, "monitor": "val_loss"}}


# Both nearest-reference arms keep temperature scaling: with BCTS (2026-11-26 run) balanced
# accuracy fell to a mean of 0.436 (nearest) and 0.449 (refit) over the three fold seeds.
NEAREST_CALIBRATION = {"method": "temperature"}


def nearest_variant(task: dict) -> dict:
    return {
        **task,
        "encoder": NEAREST["encoder"],
        "train": {**task.get("train", {}), **NEAREST["train"]},
        "calibration": {**task.get("calibration", {}), **NEAREST_CALIBRATION},
    }


# The same, retrained on train + val (train.refit) for a fixed 40 epochs, about where the
# linear head's training loss levels off: early stopping on the validation projects stopped it
# well short of that (throw-away runs: balanced accuracy under equal priors 0.58 when the refit
# took early stopping's epochs, 0.68 at 40 or 100 epochs).
REFIT = {"refit": True, "early_stopping": False, "max_epochs": 40}
# Temperature from the refit model's own val logits: the first model, trained without the
# validation projects, is the weaker one, and its temperature over-smoothed the refit model
# (throw-away runs over the three fold seeds: ECE 0.153 against 0.102, NLL 0.99 against 0.94).
REFIT_CALIBRATION = {"val_scored_by": "refit_model"}


def nearest_refit_variant(task: dict) -> dict:
    variant = nearest_variant(task)
    return {
        **variant,
        "train": {**variant["train"], **REFIT},
        "calibration": {**variant["calibration"], **REFIT_CALIBRATION},
    }


def fold_spread(labelled, task, trainer, seeds, first: dict) -> dict:
    """The configured model, the nearest-reference variant and the baselines on the folds of
    each seed (other projects share a fold each time); ``first``: seed[0]'s scores so far."""
    classes = sorted(labelled["label"].unique())
    rows = [first]
    for seed in seeds[1:]:
        folds = assign_folds(labelled, N_FOLDS, seed)
        rows.append(
            {
                "barloc": barloc_scores(labelled, task, trainer, seed, folds)[0],
                "barloc_nearest": barloc_scores(labelled, nearest_variant(task), trainer, seed, folds)[0],
                "barloc_nearest_refit": barloc_scores(labelled, nearest_refit_variant(task), trainer, seed, folds)[0],
                **baseline_scores(labelled, folds, classes),
            }
        )
    out: dict = {"seeds": seeds, "per_seed": rows}
    out["mean_balanced_accuracy"] = {
        m: round(float(np.mean([r[m]["balanced_accuracy"] for r in rows])), 4) for m in rows[0]
    }
    for key in ("balanced_accuracy_equal_priors", "ece_calibrated", "ece_floor"):
        out[f"mean_{key}"] = {m: round(float(np.mean([r[m][key] for r in rows])), 4) for m in rows[0]}
    return out


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
        help="fold assignments (seed, seed + 1000, ...) on which to compare barloc, its nearest-reference "
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
        "augment": task.get("train", {}).get("augment"),
    }
    result["barloc"], oof = barloc_scores(labelled, task, trainer, args.seed)
    result["baselines"] = baseline_scores(labelled, folds, classes)
    result["barloc_nearest"] = {
        "variant": {**NEAREST, "calibration": NEAREST_CALIBRATION},
        **barloc_scores(labelled, nearest_variant(task), trainer, args.seed, folds)[0],
    }
    result["barloc_nearest_refit"] = {
        "variant": {
            **NEAREST,
            "train": {**NEAREST["train"], **REFIT},
            "calibration": {**NEAREST_CALIBRATION, **REFIT_CALIBRATION},
        },
        **barloc_scores(labelled, nearest_refit_variant(task), trainer, args.seed, folds)[0],
    }
    if not args.no_ablation:
        result["ablation"] = {}
        for name, loss in ABLATION.items():
            variant = copy.deepcopy(task) | {"loss": loss}
            result["ablation"][name] = barloc_scores(labelled, variant, trainer, args.seed)[0]
    if args.fold_seeds > 1:
        first = {
            "barloc": result["barloc"],
            **{
                arm: {k: v for k, v in result[arm].items() if k != "variant"}
                for arm in ("barloc_nearest", "barloc_nearest_refit")
            },
            **result["baselines"],
        }
        result["fold_spread"] = fold_spread(
            labelled, task, trainer, [args.seed + 1000 * i for i in range(args.fold_seeds)], first
        )
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
