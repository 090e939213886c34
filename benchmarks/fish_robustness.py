"""Fish origin: does the configured recipe's calibration hold on folds it was not tuned on?

The whole recipe (barloc.cv: cross-fitting, calibration chosen on out-of-fold logits, refit,
the task's decision rule) on three fold designs of the bundled tuna records:

- ``stratified``: the grouped, stratified folds of fish_origin.py (fold seeds 42, 1042, 2042;
  scikit-learn's StratifiedGroupKFold keeps most projects in the same fold across seeds);
- ``random_projects``: whole projects dealt at random into five folds, three draws, so that
  the folds and their class mixes differ from the stratified ones;
- ``species_out``: each species (and records without one) a fold of its own, so every call is
  of a species the model never saw.

Per design and draw: balanced accuracy and ECE of the final calls and of the uncalibrated
network (its class-weighted softmax), and the worst per-fold change of the calls' balanced
accuracy by calibration (the issue's guard: never below -0.02).

    python benchmarks/fish_robustness.py --out benchmarks/results/fish_robustness.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fish_origin import N_FOLDS, REPO, barloc_scores, load_task

from barloc.artifacts import logit_columns
from barloc.cv import FINAL, assign_folds
from barloc.posthoc import calls_score
from barloc.runtime import versions


def random_project_folds(labelled: pd.DataFrame, n_folds: int, seed: int) -> np.ndarray:
    """Whole projects in random order, each to the fold with the fewest records so far."""
    rng = np.random.default_rng(seed)
    sizes = labelled["group"].astype(str).value_counts()
    order = rng.permutation(sizes.index.to_numpy())
    load, fold_of = np.zeros(n_folds), {}
    for g in order:
        k = int(load.argmin())
        fold_of[g] = k
        load[k] += sizes[g]
    return labelled["group"].astype(str).map(fold_of).to_numpy()


def species_folds(labelled: pd.DataFrame) -> np.ndarray:
    species = labelled["species"].fillna("").astype(str).replace("", "(no species)")
    return species.map({s: i for i, s in enumerate(sorted(species.unique()))}).to_numpy()


def recipe(labelled: pd.DataFrame, task: dict, trainer: dict, folds: np.ndarray, seed: int) -> dict:
    """fish_origin.py's barloc row on these folds, with the per-fold change of the calls'
    balanced accuracy, final against uncalibrated."""
    scores, oof = barloc_scores(labelled, task, trainer, seed, folds)
    classes = [c.split("::", 1)[1] for c in oof.columns if c.startswith(FINAL)]
    y = oof["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    fold = oof["fold"].to_numpy()
    final = calls_score("multiclass", oof[[FINAL + c for c in classes]].to_numpy(), y, fold, None)[1]
    raw = calls_score("multiclass", oof[logit_columns(classes)].to_numpy(), y, fold, None)[1]
    changes = [round(float(c), 4) for c in np.subtract(final, raw)]
    return {
        "n_folds": int(len(np.unique(fold))),
        **{k: scores[k] for k in ("final_calls", "uncalibrated")},
        "per_fold_change": changes,
        "worst_fold_change": min(changes),
        "calibration_chosen": scores["calibration_chosen"],
    }


def summary(rows: list[dict]) -> dict:
    def mean(part: str, key: str) -> float:
        return round(float(np.mean([r[part][key] for r in rows])), 4)

    return {
        "final_calls": {
            "balanced_accuracy": mean("final_calls", "balanced_accuracy"),
            "ece": mean("final_calls", "ece"),
        },
        "uncalibrated": {
            "balanced_accuracy": mean("uncalibrated", "balanced_accuracy"),
            "ece": mean("uncalibrated", "ece"),
        },
        "worst_fold_change": min(r["worst_fold_change"] for r in rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "config/config.yaml")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--draws", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    labelled, task, trainer = load_task(args.config)
    seeds = [args.seed + 1000 * i for i in range(args.draws)]
    designs = {
        "stratified": [(s, assign_folds(labelled, N_FOLDS, s)) for s in seeds],
        "random_projects": [(s, random_project_folds(labelled, N_FOLDS, s)) for s in seeds],
        "species_out": [(args.seed, species_folds(labelled))],
    }
    result: dict = {
        "date": dt.date.today().isoformat(),
        "command": f"python benchmarks/fish_robustness.py --out FILE --seed {args.seed} --draws {args.draws}",
        "n_records": len(labelled),
        "calibration": task.get("calibration"),
        "prior_shift": task.get("prior_shift"),
        "designs": {},
    }
    for name, draws in designs.items():
        rows = [{"seed": s, **recipe(labelled, task, trainer, folds, s)} for s, folds in draws]
        result["designs"][name] = {"draws": rows, "mean": summary(rows)}
    result["versions"] = versions()
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
