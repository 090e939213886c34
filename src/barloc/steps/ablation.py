"""ablation: what class weighting and focal loss each change, measured on this run's split.

A multiclass task's model is trained three more times on the same train/val split with the
same encoder, optimiser and seed, changing only the loss: plain cross-entropy, cross-entropy
with class weights, and focal loss without class weights. Each is calibrated on val as the
calibrate step does and scored on the test split like the evaluate step (records with a soft
target are left out of the scores). A paired bootstrap over the test records says how much
of each change in balanced accuracy chance alone could make. The report turns the result into
one plain sentence.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from barloc import metrics, soft
from barloc.artifacts import FOLD, SPLIT, present_columns, write_json
from barloc.calibrate import apply, fit_for_model
from barloc.config import block_defaults, with_defaults
from barloc.scoring import model_logits
from barloc.splits import read_splits
from barloc.training import fit

log = logging.getLogger(__name__)

#: The compared losses, in report order; each keeps the task's label smoothing.
VARIANTS = ("cross_entropy", "class_weights", "focal")


def variant_losses(loss: dict) -> dict[str, dict]:
    """The three losses, built from the task's own settings: its class-weight scheme (inverse
    when it has none) and its focal gamma (2 when unset)."""
    loss = block_defaults("loss", loss)
    scheme = loss["class_weights"]
    base = {"label_smoothing": float(loss["label_smoothing"]), "beta": loss["beta"]}
    return {
        "cross_entropy": {**base, "type": "cross_entropy", "class_weights": "none"},
        "class_weights": {**base, "type": "cross_entropy", "class_weights": scheme if scheme != "none" else "inverse"},
        "focal": {**base, "type": "focal", "gamma": float(loss["gamma"]), "class_weights": "none"},
    }


def balanced_accuracy(pred: np.ndarray, y: np.ndarray, k: int) -> float:
    """Mean recall over the classes present in ``y``."""
    recalls = [float((pred[y == c] == c).mean()) for c in range(k) if (y == c).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def paired_bootstrap(preds: dict[str, np.ndarray], y: np.ndarray, k: int, n_boot: int, seed: int) -> dict:
    """95% intervals of each variant's balanced accuracy minus plain cross-entropy's, from
    the same resamples of the test records."""
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[float]] = {name: [] for name in preds if name != "cross_entropy"}
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        ref = balanced_accuracy(preds["cross_entropy"][idx], y[idx], k)
        for name in diffs:
            diffs[name].append(balanced_accuracy(preds[name][idx], y[idx], k) - ref)
    return {
        name: {"ci_low": float(np.nanpercentile(d, 2.5)), "ci_high": float(np.nanpercentile(d, 97.5))}
        for name, d in diffs.items()
    }


def measure(data: pd.DataFrame, cfg: dict, trainer: dict, seed: int, task: str = "", n_boot: int = 1000) -> dict:
    """Train, calibrate and score each variant; ``data`` has sequence, label [, label_probs],
    split (train / test) and fold. The first cross-fitting fold early-stops and calibrates each
    variant, the other folds train it: one model per variant is enough to compare losses."""
    cfg = with_defaults(cfg)
    kind = cfg["kind"]
    first = data[FOLD] == data[FOLD].min()
    parts = {"train": data[(data[SPLIT] != "test") & ~first], "val": data[first], "test": data[data[SPLIT] == "test"]}
    # auto compares methods across folds, which a single split cannot: temperature scaling then
    method = "temperature" if cfg["calibration"]["method"] == "auto" else cfg["calibration"]["method"]
    # One process on one device: the comparison needs no DDP, and a second Lightning launcher
    # outside the train rule would only get in the way.
    trainer = {**trainer, "devices": 1, "num_nodes": 1, "strategy": "auto"}
    out: dict = {"task": task, "kind": kind, "seed": seed, "bootstrap": n_boot, "variants": {}}
    preds: dict[str, np.ndarray] = {}
    y = None
    for name, loss in variant_losses(cfg["loss"]).items():
        model, meta, _ = fit(parts["train"], parts["val"], {**cfg, "loss": loss}, trainer, seed, f"{task}/{name}")
        classes = meta.classes
        z = {}
        for split in ("val", "test"):
            hard = parts[split][soft.hard_mask(parts[split])]  # a soft target's class is unknown
            z[split] = (
                model_logits(model, meta, hard, 256),
                hard["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(),
            )
        calib = fit_for_model(meta, method, *z["val"])
        zt, y = z["test"]
        cal, raw = apply(zt, kind, calib), apply(zt, kind)
        m = metrics.multiclass_metrics(cal, y)
        out["variants"][name] = {
            "loss": loss,
            "balanced_accuracy": m["balanced_accuracy"],
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
            "ece": m["ece"],
            "nll": m["nll"],
            "ece_uncalibrated": metrics.multiclass_metrics(raw, y)["ece"],
            "recall": {c: v["recall"] for c, v in metrics.per_class_multiclass(cal, y, classes).items()},
            "epochs": meta.epochs,
        }
        preds[name] = cal.argmax(axis=1)
        out["classes"] = classes
        log.info("%s: balanced accuracy %.3f, ECE %.3f", name, m["balanced_accuracy"], m["ece"])
    out["n_test"] = int(len(y))
    out["n_train"] = int(len(parts["train"]))
    out["test_support"] = {c: int((y == i).sum()) for i, c in enumerate(out["classes"])}
    out["differences"] = paired_bootstrap(preds, y, len(out["classes"]), n_boot, seed)
    for name, d in out["differences"].items():
        d["balanced_accuracy"] = (
            out["variants"][name]["balanced_accuracy"] - out["variants"]["cross_entropy"]["balanced_accuracy"]
        )
    return out


def run(inputs, outputs, params, threads: int = 1) -> None:
    cols = soft.parquet_columns(inputs.records, ["id", "sequence", "label"]) + present_columns(
        inputs.records, ["group"]
    )
    records = pd.read_parquet(inputs.records, columns=cols)
    data = records.merge(read_splits(inputs.splits), on="id")
    result = measure(data, params.cfg, params.trainer, int(params.seed), params.task)
    write_json(result, outputs.ablation)
