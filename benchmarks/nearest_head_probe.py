"""How far the nearest-reference features go with an ideal head: scikit-learn's logistic
regression (L-BFGS to convergence, L2, C = 1) on barloc's per-basin nearest-reference
distances (``NearestReferenceEncoder.distances``, the ``nearest`` encoder's features), grouped 5-fold CV
on the bundled tuna records, folds of seeds 42, 1042 and 2042.

Arms: ``balanced_4folds`` (class-balanced weights, head fitted on all four non-test folds),
``balanced_3folds`` (the validation fold barloc holds out for early stopping left out of the
head's fit, though still a reference), ``unweighted_4folds`` (calls under the training mix).
References are always the four non-test folds; a record never matches its own project.

    python benchmarks/nearest_head_probe.py [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fish_origin import N_FOLDS, REPO, load_task

from barloc.cv import assign_folds
from barloc.encode import kmer_profile
from barloc.metrics import multiclass_metrics
from barloc.models.encoders import NearestReferenceEncoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args()
    labelled, _, _ = load_task(REPO / "config/config.yaml")
    classes = sorted(labelled["label"].unique())
    y = labelled["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    groups = torch.as_tensor(pd.factorize(labelled["group"].astype(str))[0])
    x = torch.from_numpy(kmer_profile(labelled["sequence"].tolist(), args.k))
    out: dict = {"k": args.k, "per_seed": {}}
    for seed in (42, 1042, 2042):
        folds = assign_folds(labelled, N_FOLDS, seed)
        probs = {
            arm: np.zeros((len(y), len(classes))) for arm in ("balanced_4folds", "balanced_3folds", "unweighted_4folds")
        }
        for f in range(N_FOLDS):
            test, ref = folds == f, folds != f
            enc = NearestReferenceEncoder(x.shape[1], int(ref.sum()), len(classes))
            enc.set_reference(x[ref], torch.as_tensor(y[ref]), groups[ref])
            with torch.no_grad():  # a reference never matches its own project
                f_ref, f_test = enc.distances(x[ref], groups[ref]).numpy(), enc.distances(x[test]).numpy()
            mu, sd = f_ref.mean(axis=0), f_ref.std(axis=0) + 1e-3
            f_ref, f_test = (f_ref - mu) / sd, (f_test - mu) / sd
            head_rows = {
                "balanced_4folds": np.ones(ref.sum(), bool),
                "balanced_3folds": folds[ref] != (f + 1) % N_FOLDS,
                "unweighted_4folds": np.ones(ref.sum(), bool),
            }
            for arm, rows in head_rows.items():
                weight = None if arm.startswith("unweighted") else "balanced"
                model = LogisticRegression(C=1.0, max_iter=5000, class_weight=weight).fit(f_ref[rows], y[ref][rows])
                probs[arm][test] = model.predict_proba(f_test)
        out["per_seed"][seed] = {
            arm: round(multiclass_metrics(p, y)["balanced_accuracy"], 4) for arm, p in probs.items()
        }
    out["mean"] = {
        arm: round(float(np.mean([s[arm] for s in out["per_seed"].values()])), 4)
        for arm in next(iter(out["per_seed"].values()))
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
