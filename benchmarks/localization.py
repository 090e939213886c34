"""Protein localization on DeepLoc 2.0's homology partitions: barloc against a composition floor.

Partition protocol (DeepLoc 2.0): for test partition k, the model trains on three partitions,
partition k+1 (mod 5) early-stops it and tunes its calibration and per-location MCC thresholds,
and partition k is scored; rotated over all five unless ``--partitions`` names fewer. Scores
are averaged over the test partitions run. Every number comes from barloc's own code: ``fit``
(the workflow's train step), the calibrate step's fit, its calling rule (``fit_calls``: per-location
MCC-optimal thresholds and, with ``calibration.call_ratio`` auto, the call ratio) and the DeepLoc
metrics of ``barloc.metrics``, the DeepLoc reader. Every model, the floor included, is called
by the same rule, fitted on the threshold partition; ``barloc_thresholds_only`` scores barloc's
probabilities by the thresholds alone (DeepLoc 2.0's rule, call ratio 0).

- ``floor``: amino-acid, dipeptide and terminal (first/last 50 residues) composition,
  standardised, one-vs-rest logistic regression; thresholds tuned on the same partition.
- ``softmax_vs_sigmoid``: the same encoder trained with one softmax over the locations
  (a protein's locations as a normalised target row, cross-entropy), and again with one
  sparsemax (Martins & Astudillo 2016: the same row, the sparsemax loss; exact zeros, and mass
  can stay on several locations), scored beside the sigmoid model on all test proteins, on
  those with one location and on those with more than one; ``sparsemax`` also counts its exact
  zeros a protein (``mean_zero_probabilities``).
- ``extra_heads`` (with ``--membrane-head`` or ``membrane_head: true``): the membrane/soluble
  head's MCC, accuracy and F1, calibrated and thresholded on the threshold partition.

Runs over subsets of partitions write files that ``--merge`` combines:

    python benchmarks/localization.py --out p01.json --partitions 0 1
    python benchmarks/localization.py --out p234.json --partitions 2 3 4
    python benchmarks/localization.py --merge p01.json p234.json --out localization.json

``--quick`` subsamples proteins per partition, caps the epochs and, unless ``--partitions`` says
otherwise, tests partition 4 only (said so in the JSON's ``settings``): a few minutes on a 2-core
CPU with the configured model.

``--save-model DIR`` (one test partition) writes the scored sigmoid model where ``barloc predict
--model DIR`` reads it, with a MODEL_CARD.md from the run's figures: the shipped model,
``resources/models/localization``, is built this way.

``--cpu-full`` is the CPU headline: every protein of the data (no subsampling), test partition 4
only, on the CPU with 2 threads unless ``--threads``, the floor in the same run; it writes
``benchmarks/results/localization_cpu_full.json`` unless ``--out`` says otherwise. The GPU
protocol (all five test partitions) is the default run.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import platform
import shlex
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from barloc import extra_heads
from barloc.calibrate import apply, call_ratio_on, fit_for_model, softmax_probs
from barloc.config import check_config
from barloc.data import EncodedDataset, predict_logits, targets_for
from barloc.inference import shipped_root
from barloc.losses import label_softmax_loss, sparsemax_loss, sparsemax_probs
from barloc.metrics import fit_calls, multilabel_metrics, per_label_mcc, predict_multilabel
from barloc.records import limit_length, load_reference
from barloc.runtime import sha256, versions
from barloc.training import fit, task_classes

REPO = Path(__file__).resolve().parents[1]
N_PARTITIONS = 5
AMINO = "ACDEFGHIKLMNPQRSTVWY"
TERMINAL = 50
QUICK = {"per_partition": 400, "max_epochs": 4, "patience": 2, "partitions": ["4"]}
#: The CPU headline: full data, one test partition, the floor in the same run.
CPU_FULL = {"partitions": ["4"], "threads": 2, "out": REPO / "benchmarks/results/localization_cpu_full.json"}
#: Proteins of the test partition (never subsampled) that time prediction, after a warm-up pass.
SPEED_PROTEINS = 2000
log = logging.getLogger("localization")


# --- data -------------------------------------------------------------------------------


def load_task(config: Path, data: Path | None, task_name: str = "localization") -> tuple[pd.DataFrame, dict, dict]:
    """Labelled proteins (id, sequence, label, group = partition), the task and trainer config."""
    cfg = check_config(yaml.safe_load(config.read_text()), source=str(config))
    task = dict(cfg["tasks"][task_name])
    ref = Path(data) if data else Path(task["reference"])
    task["reference"] = str(ref if ref.is_absolute() else REPO / ref)
    task.pop("query", None)
    df = limit_length(load_reference(task, None), task, task["reference"])
    df = df[df["label"].notna()].reset_index(drop=True)
    df["group"] = df["group"].astype(str)
    return df, task, dict(cfg["trainer"])


def subsample(df: pd.DataFrame, per_partition: int, seed: int) -> pd.DataFrame:
    """``per_partition`` random proteins from each partition (all of a smaller one)."""
    parts = [g.sample(min(per_partition, len(g)), random_state=seed) for _, g in df.groupby("group", sort=True)]
    return pd.concat(parts).sort_index().reset_index(drop=True)


def rotation(partitions: list[str], test: str) -> tuple[str, list[str]]:
    """The threshold (val) partition and the training partitions for one test partition."""
    i = partitions.index(test)
    val = partitions[(i + 1) % len(partitions)]
    return val, [p for p in partitions if p not in (test, val)]


# --- the composition floor ---------------------------------------------------------------


def composition_features(seqs: list[str], terminal: int = TERMINAL) -> np.ndarray:
    """Amino-acid (20) and dipeptide (400) composition, and the amino-acid composition of the
    first and last ``terminal`` residues (20 + 20); residues outside the 20 are skipped."""
    table = np.full(256, -1, dtype=np.int64)
    for i, a in enumerate(AMINO):
        table[ord(a)] = i
    out = np.zeros((len(seqs), 460), dtype=np.float64)
    for r, s in enumerate(seqs):
        x = table[np.frombuffer(s.encode("ascii"), dtype=np.uint8)]
        aa = x[x >= 0]
        out[r, :20] = np.bincount(aa, minlength=20) / max(len(aa), 1)
        pair = x[:-1] * 20 + x[1:]
        pair = pair[(x[:-1] >= 0) & (x[1:] >= 0)]
        out[r, 20:420] = np.bincount(pair, minlength=400) / max(len(pair), 1)
        for j, part in ((420, x[:terminal]), (440, x[-terminal:])):
            part = part[part >= 0]
            out[r, j : j + 20] = np.bincount(part, minlength=20) / max(len(part), 1)
    return out


def floor_probs(train: pd.DataFrame, others: list[pd.DataFrame], classes: list[str]) -> list[np.ndarray]:
    Y = targets_for(train["label"].tolist(), classes, "multilabel").astype(int)
    model = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=0.05, max_iter=3000)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
        model.fit(composition_features(train["sequence"].tolist()), Y)
    return [model.predict_proba(composition_features(o["sequence"].tolist())) for o in others]


# --- barloc models -----------------------------------------------------------------------


class SoftmaxTargets(Callback):
    """Train the location head as one softmax: a protein's locations as a target row that sums
    to 1 (two locations: 0.5 each), barloc's soft-target cross-entropy as the loss."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        pl_module.loss_fn = label_softmax_loss


class SparsemaxTargets(Callback):
    """Train the location head as one sparsemax: the same normalised target row as
    :class:`SoftmaxTargets`, :func:`barloc.losses.sparsemax_loss` (gradient sparsemax(z) - y) as
    the loss. A row without locations carries no target and is left out of the mean (softmax's
    cross-entropy gives it zero loss; sparsemax's would push every logit down)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        pl_module.loss_fn = _sparsemax_rows_loss


def _sparsemax_rows_loss(x, y):
    total = y.sum(-1, keepdim=True)
    keep = total.squeeze(-1) > 0
    if not bool(keep.any()):
        return (x * 0.0).sum()
    return sparsemax_loss(x[keep], y[keep] / total[keep])


def sparsity(probs: np.ndarray) -> dict:
    """Exact zeros a protein (mean) and the share of proteins with mass on several locations."""
    zero = probs == 0.0
    return {
        "mean_zero_probabilities": float(zero.sum(axis=1).mean()) if len(probs) else float("nan"),
        "share_several_nonzero": float(((~zero).sum(axis=1) > 1).mean()) if len(probs) else float("nan"),
    }


def scores(probs: np.ndarray, Y: np.ndarray, rule: dict, classes: list[str], logits: np.ndarray | None = None) -> dict:
    """DeepLoc 2.0's summary scores and per-location MCC under a calling rule fitted on the val
    partition (:func:`barloc.metrics.fit_calls`: thresholds and call ratio; ``logits``: the
    ratio compares their softmax, as the model's calibration.json says)."""
    thresholds, ratio = rule["thresholds"], rule["call_ratio"]
    m = multilabel_metrics(probs, Y, thresholds, ratio=ratio, logits=logits)
    mcc = per_label_mcc(probs, Y, thresholds, classes, ratio, logits)
    return {
        "n": int(len(Y)),
        "micro_f1": m["micro_f1"],
        "macro_f1": m["macro_f1"],
        "jaccard": m["jaccard"],
        "accuracy": m["exact_match"],
        "mcc": {c: v["mcc"] for c, v in mcc.items()},
        "thresholds": {c: v["threshold"] for c, v in mcc.items()},
        "call_ratio": ratio,
        "call_ratio_on": None if logits is None else "logits",  # as calibration.json says it
        "mean_true_locations": float(Y.sum(axis=1).mean()) if len(Y) else float("nan"),
        "mean_predicted_locations": float(predict_multilabel(probs, thresholds, ratio, logits).sum(axis=1).mean())
        if len(Y)
        else float("nan"),
    }


def subsets(Y: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The proteins the heads are compared on: all, those with more than one location, those with one."""
    multi = Y.sum(axis=1) > 1
    return [("all", np.ones(len(Y), bool)), ("multi_location", multi), ("single_location", ~multi)]


def prediction_speed(model, seqs: list[str], enc: dict, batch_size: int, device: str) -> dict:
    """Proteins per second through barloc's predict path (``EncodedDataset`` + ``predict_logits``,
    as ``barloc predict`` runs it), tokenising included, timed after one warm-up batch."""
    predict_logits(model, EncodedDataset(seqs[:batch_size], enc, "protein"), batch_size, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    predict_logits(model, EncodedDataset(seqs, enc, "protein"), batch_size, device)
    secs = time.perf_counter() - t0  # predict_logits ends with the logits on the host
    lengths = [min(len(s), enc.get("max_len") or len(s)) for s in seqs]
    return {
        "predict_seconds": secs,
        "predict_proteins": len(seqs),
        "mean_residues": float(np.mean(lengths)),
        "batch_size": batch_size,
    }


def run_partition(
    df: pd.DataFrame,
    test: str,
    task: dict,
    trainer: dict,
    seed: int,
    classes: list[str],
    device: str,
    predict_batch: int,
    softmax: bool,
    speed_seqs: list[str],
    floor_only: bool = False,
    save_model: Path | None = None,
    heads_from: dict | None = None,
) -> dict:
    partitions = sorted(df["group"].unique())
    val_p, train_ps = rotation(partitions, test)
    tr, va, te = (df[df["group"].isin(ps)] for ps in (train_ps, [val_p], [test]))
    Yv, Yt = (targets_for(d["label"].tolist(), classes, "multilabel") for d in (va, te))
    out: dict = {
        "test_partition": test,
        "threshold_partition": val_p,
        "train_partitions": train_ps,
        "n_train": len(tr),
        "n_threshold": len(va),
        "n_test": len(te),
    }
    pseed = seed + int(test) if test.isdigit() else seed

    # the floor, on the same proteins
    fv, ft = floor_probs(tr, [va, te], classes)
    call_ratio = task["calibration"]["call_ratio"]
    out["floor"] = scores(ft, Yt, fit_calls(fv, Yv, call_ratio), classes)
    if floor_only:
        return out

    # barloc as the workflow trains and calibrates it
    model, meta, _ = fit(tr, va, task, trainer, pseed, f"partition{test}")
    enc, extra, k = meta.encoder, meta.heads, len(classes)
    view = extra_heads.WithExtraHeads(model) if extra else model
    ds_v, ds_t = (EncodedDataset(d["sequence"].tolist(), enc, "protein") for d in (va, te))  # one encoding, every head
    zv, zt = (predict_logits(view, ds, predict_batch, device) for ds in (ds_v, ds_t))
    if extra:  # the membrane head: calibrated, thresholded and scored on its own, as the workflow does
        both = pd.concat([va.assign(split="val"), te.assign(split="test")], ignore_index=True)
        frame = extra_heads.logit_columns(both[["split"]].copy(), np.vstack([zv, zt]), both, extra, k)
        out["extra_heads"] = extra_heads.evaluate(frame, extra_heads.fit_calibration(frame, extra))
        zv, zt = zv[:, :k], zt[:, :k]
    # One validation partition here, not cross-fitting folds: auto cannot choose, so Platt
    # scaling (bcts), the localization task's calibration before auto.
    method = task["calibration"]["method"]
    calib = fit_for_model(meta, "bcts" if method == "auto" else method, zv, Yv)
    pv, pt = apply(zv, "multilabel", calib), apply(zt, "multilabel", calib)
    on = call_ratio_on(meta.kind, meta.loss)  # the ratio compares the logits' softmax, or the probabilities
    rv, rt = (zv, zt) if on else (None, None)
    rule = fit_calls(pv, Yv, call_ratio, rv)
    out["barloc"] = scores(pt, Yt, rule, classes, rt)
    # the same probabilities called by the per-label thresholds alone (DeepLoc 2.0's rule)
    out["barloc_thresholds_only"] = scores(pt, Yt, {**rule, "call_ratio": 0.0}, classes)
    if save_model is not None:
        export_model(save_model, model, meta, calib, {**rule, "call_ratio_on": on})
    out["timing"] = {
        "train_seconds": meta.train_seconds,
        "epochs": meta.epochs,
        "best_epoch": meta.best_epoch,
        "train_protein_epochs": len(tr) * meta.epochs,
        "device": meta.device,
        "precision": meta.precision,
        **prediction_speed(model, speed_seqs, enc, predict_batch, device),
    }

    # the softmax and sparsemax heads of an earlier run with the same encoder, data and training
    # (--heads-from): their loss replaces the config's, so the loss settings do not reach them
    if heads_from is not None:
        svs = {k: v for k, v in heads_from.items() if k.endswith("_train_seconds")}
        for subset, m in subsets(Yt):
            svs[subset] = {"sigmoid": scores(pt[m], Yt[m], rule, classes, None if rt is None else rt[m])} | {
                name: heads_from[subset][name] for name in ("softmax", "sparsemax")
            }
        out["softmax_vs_sigmoid"] = svs
    # the same encoder with one softmax, and with one sparsemax, over the locations
    elif softmax:
        stask = copy.deepcopy(task)
        stask.setdefault("train", {})["monitor"] = "val_loss"
        heads = {}
        for name, callback, to_probs in (
            ("softmax", SoftmaxTargets(), softmax_probs),
            ("sparsemax", SparsemaxTargets(), sparsemax_probs),
        ):
            hmodel, hmeta, _ = fit(tr, va, stask, trainer, pseed, f"partition{test}-{name}", callbacks=(callback,))
            hv, ht = (to_probs(predict_logits(hmodel, ds, predict_batch, device)) for ds in (ds_v, ds_t))
            heads[name] = (ht, fit_calls(hv, Yv, call_ratio), hmeta.train_seconds)
        svs: dict = {}
        for subset, m in subsets(Yt):
            svs[subset] = {"sigmoid": scores(pt[m], Yt[m], rule, classes, None if rt is None else rt[m])}
            for name, (ht, hrule, _) in heads.items():
                svs[subset][name] = scores(ht[m], Yt[m], hrule, classes)
            svs[subset]["sparsemax"] |= sparsity(heads["sparsemax"][0][m])
        for name, (_, _, secs) in heads.items():
            svs[f"{name}_train_seconds"] = secs
        out["softmax_vs_sigmoid"] = svs
    return out


def export_model(out: Path, model, meta, calib: dict, rule: dict) -> None:
    """The scored sigmoid model as ``barloc predict`` loads it: model.ckpt (weights only),
    model.json and calibration.json (the calibration and calling rule fitted on the threshold
    partition), so the shipped model is the one whose test-partition scores this run reports."""
    from barloc.artifacts import Calibration, write_json
    from barloc.modelio import save_model

    out.mkdir(parents=True, exist_ok=True)
    save_model(model, dataclasses.replace(meta, task="localization"), out / "model.ckpt", out / "model.json")
    calibration = Calibration(
        kind=meta.kind,
        classes=meta.classes,
        **calib,
        thresholds=[float(t) for t in rule["thresholds"]],
        call_ratio=float(rule["call_ratio"]),
        call_ratio_on=rule.get("call_ratio_on"),
    )
    write_json(calibration, out / "calibration.json")


LICENCE = (
    "Sequences and annotations come from UniProtKB/Swiss-Prot (CC BY 4.0, https://www.uniprot.org/help/license) "
    "as curated into DeepLoc 2.0's SwissProt training/validation set (Thumuluri et al. 2022, NAR 50:W228); "
    "cite both when you use this model. The weights are barloc's own, under barloc's MIT licence."
)


#: DeepLoc 2.0 as published (ProtT5, 5-fold partition CV): micro-F1, macro-F1, Jaccard, exact match.
DEEPLOC2_PUBLISHED = (0.73, 0.66, 0.69, 0.55)


def model_ref(out: Path) -> str:
    """What ``barloc predict --model`` takes for a model written to ``out`` (or its staging
    folder): the bare name of a model shipped in the package, else the path."""
    final = out.with_name(out.name.removesuffix(".partial"))
    return final.name if final.parent == shipped_root() else str(final)


def write_model_card(out: Path, result: dict, command: str) -> None:
    """MODEL_CARD.md beside the exported model: data and licence, the test-partition scores
    against the floor, speed, and the command that rebuilt it (all from this run's result)."""
    from barloc.artifacts import Calibration

    st, (test,) = result["settings"], result["test_partitions"]
    config = Path(st["config"])
    config = config.relative_to(REPO) if config.is_relative_to(REPO) else config
    part, b, f = result["partitions"][test], result["barloc"], result["floor"]
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file() and p.name != "MODEL_CARD.md")

    def row(name: str, r: dict) -> str:
        return f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in SUMMARY_KEYS) + " |"

    # per-location MCC from the partition block, unrounded, as benchmarks/README.md prints it
    pb, pf = part["barloc"]["mcc"], part["floor"]["mcc"]
    mcc = "\n".join(f"| {c} | {pb[c]:.3f} | {pf[c]:.3f} |" for c in st["classes"])
    loss = st["loss"]
    per_label = f"focal loss (γ = {loss['gamma']:g})" if loss["type"] == "focal" else "binary cross-entropy"
    weighted = ",\npositives weighted by negatives / positives" if loss["pos_weight"] else ""
    lam = loss.get("softmax_weight", 0.0)
    cal = Calibration.load(out / "calibration.json")
    ratio_on = " of the logits' softmax" if cal.ratio_on_logits else ""
    term = f",\nplus {lam:g} × a softmax cross-entropy over the same logits (`loss.softmax_weight`)" if lam else ""
    text = f"""# barloc protein localization model

Ten independent sigmoid heads (one per subcellular location) over a convolutional encoder of the
amino-acid sequence, trained with per-location {per_label}{weighted}{term}.
It is calibrated (`{cal.method}`) and called by per-location
MCC thresholds and a call ratio{ratio_on} fitted on a held-out partition. Eukaryotic proteins; the model
sees the sequence alone (no language model, no homology search).

    barloc predict --model {model_ref(out)} --input my_proteins.fasta --out calls.tsv

Files: `model.ckpt` (a plain state_dict, loaded with `weights_only=True`), `model.json`
(architecture, classes, training facts), `calibration.json` (calibration and calling rule);
{size / 1e6:.1f} MB in all.

## Training data

DeepLoc 2.0 SwissProt training/validation set: {st["n_proteins"]:,} proteins in five homology
partitions. DeepLoc 2.0's site has it (https://services.healthtech.dtu.dk/services/DeepLoc-2.0/,
Data: `Swissprot_Train_Validation_dataset.csv`); this build read `{Path(st["data"]).name}`
(sha256 `{st["data_sha256"][:16]}…`), the same set as rebuilt in resources/README.md, whose
row order and file differ from the download. The model trained on partitions
{", ".join(part["train_partitions"])} ({part["n_train"]:,} proteins), early-stopped and was calibrated on
partition {part["threshold_partition"]} ({part["n_threshold"]:,}); partition {test} ({part["n_test"]:,}) was never
seen and gives the scores below.

Licence: {LICENCE}

## Scores on test partition {test}

The floor is amino-acid, dipeptide and terminal composition with one-vs-rest logistic
regression, trained on the same partitions and called by the same rule.

| model | micro-F1 | macro-F1 | Jaccard | exact match |
|---|---|---|---|---|
{row("barloc (this model)", b)}
{row("composition floor", f)}
| DeepLoc 2.0 as published (ProtT5, 5-fold CV) | {" | ".join(f"{x:.2f}" for x in DEEPLOC2_PUBLISHED)} |

Per-location MCC:

| location | this model | floor |
|---|---|---|
{mcc}

Locations below the floor's MCC: {", ".join(result["locations_below_floor_mcc"]) or "none"}.

## Cost

Training: {result["train_seconds"] / 60:.1f} min ({part["timing"]["epochs"]} epochs, weights of epoch {part["timing"]["best_epoch"] + 1}) on {st["device"]}.
Prediction: {result["predict_proteins_per_second"]:.0f} proteins/s through `barloc predict`'s path on the same device.
One training, not the workflow's cross-fitting: model.json has no `crossfit` or `inputs`.

## Limits

Scored on one held-out homology partition of the set it was trained from, not on an
independent set. Locations whose MCC here is below 0.1 ({", ".join(c for c in st["classes"] if b["mcc"][c] < 0.1) or "none"})
are called little better than chance: read their calls with care. Proteins longer than
{st["encoder"].get("max_len")} residues are read by their first and last {(st["encoder"].get("max_len") or 0) // 2}.

## Rebuild

From the repository root, with the CSV where `{config}` says (or `--data`):

    {command}

Versions: {", ".join(f"{k} {v}" for k, v in sorted(st["versions"].items()))}.
"""
    (out / "MODEL_CARD.md").write_text(text)


# --- summary -----------------------------------------------------------------------------

SUMMARY_KEYS = ("micro_f1", "macro_f1", "jaccard", "accuracy")


def _mean_scores(rows: list[dict]) -> dict:
    """Unweighted mean over test partitions (DeepLoc's 'averaged over partitions'), with the
    per-partition spread."""
    out = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in SUMMARY_KEYS}
    out["sd"] = {k: round(float(np.std([r[k] for r in rows])), 4) for k in SUMMARY_KEYS}
    out["mcc"] = {c: round(float(np.nanmean([r["mcc"][c] for r in rows])), 4) for c in rows[0]["mcc"]}
    out["mean_predicted_locations"] = round(float(np.mean([r["mean_predicted_locations"] for r in rows])), 3)
    out["mean_true_locations"] = round(float(np.mean([r["mean_true_locations"] for r in rows])), 3)
    out["n_test"] = int(sum(r["n"] for r in rows))
    out["call_ratio"] = [r.get("call_ratio", 0.0) for r in rows]  # per test partition
    out["call_ratio_on"] = rows[0].get("call_ratio_on")  # one rule for every partition: the config's loss
    return out


def summarise(result: dict) -> dict:
    parts = [result["partitions"][k] for k in sorted(result["partitions"])]
    result["test_partitions"] = sorted(result["partitions"])
    result["floor"] = _mean_scores([p["floor"] for p in parts])
    if any("barloc" not in p for p in parts):  # --floor-only
        for key in (
            "barloc",
            "softmax_vs_sigmoid",
            "train_seconds",
            "train_proteins_per_second",
            "predict_proteins_per_second",
            "locations_below_floor_mcc",
        ):
            result[key] = None
        result["device"] = result["settings"]["device"]
        return result
    result["barloc"] = _mean_scores([p["barloc"] for p in parts])
    if all("barloc_thresholds_only" in p for p in parts):  # absent from files written before it
        result["barloc_thresholds_only"] = _mean_scores([p["barloc_thresholds_only"] for p in parts])
    below = [c for c in result["barloc"]["mcc"] if result["barloc"]["mcc"][c] < result["floor"]["mcc"][c]]
    result["locations_below_floor_mcc"] = below
    if all("softmax_vs_sigmoid" in p for p in parts):
        svs: dict = {}
        # files written before the sparsemax head have sigmoid and softmax only
        heads = [
            h for h in ("sigmoid", "softmax", "sparsemax") if all(h in p["softmax_vs_sigmoid"]["all"] for p in parts)
        ]
        for subset in ("all", "multi_location", "single_location"):
            rows = [p["softmax_vs_sigmoid"][subset] for p in parts]
            svs[subset] = {head: _mean_scores([r[head] for r in rows]) for head in heads}
            if "sparsemax" in heads:
                for key in ("mean_zero_probabilities", "share_several_nonzero"):
                    svs[subset]["sparsemax"][key] = round(float(np.mean([r["sparsemax"][key] for r in rows])), 3)
        for head in heads[1:]:
            if all(f"{head}_train_seconds" in p["softmax_vs_sigmoid"] for p in parts):
                svs[f"{head}_train_seconds"] = round(
                    sum(p["softmax_vs_sigmoid"][f"{head}_train_seconds"] for p in parts), 1
                )
        svs["note"] = (
            "same encoder, data and partitions; sigmoid: BCE per location (barloc); softmax: one "
            "cross-entropy over locations against the normalised location row; sparsemax: the "
            "sparsemax loss (Martins & Astudillo 2016) against the same row, probabilities by "
            "sparsemax, so exact zeros (mean_zero_probabilities: exact zeros a protein, of "
            f"{len(result['settings']['classes'])}; share_several_nonzero: proteins with mass on more "
            "than one location). Each is called by the configured rule (per-location MCC thresholds "
            "and call ratio) fitted on the threshold partition; softmax and sparsemax probabilities "
            "are not calibrated."
        )
        result["softmax_vs_sigmoid"] = svs
    else:
        result["softmax_vs_sigmoid"] = None
    if all("extra_heads" in p for p in parts):
        result["extra_heads"] = {
            name: {
                m: round(float(np.mean([p["extra_heads"][name][m] for p in parts])), 4)
                for m in ("mcc", "accuracy", "f1")
            }
            for name in parts[0]["extra_heads"]
        }
    t = [p["timing"] for p in parts]
    train_s = sum(x["train_seconds"] for x in t)
    result["train_seconds"] = round(train_s, 1)
    result["train_proteins_per_second"] = round(sum(x["train_protein_epochs"] for x in t) / train_s, 1)
    result["predict_proteins_per_second"] = round(
        sum(x["predict_proteins"] for x in t) / sum(x["predict_seconds"] for x in t), 1
    )
    result["device"] = result["settings"]["device"]
    result["speed_note"] = (
        f"prediction: barloc's predict path (EncodedDataset + predict_logits, tokenising included) on up to "
        f"{SPEED_PROTEINS} proteins of each test partition of the full data, clipped to encoder.max_len, batch "
        f"{result['settings']['predict_batch']}, after a warm-up batch; training: protein-epochs per second of fit(), "
        "validation passes and Lightning overhead included; the softmax and sparsemax models' training is not counted"
    )
    return result


VARYING = ("partitions", "load_average_at_start", "load_average_at_end")


def merge(files: list[Path]) -> dict:
    runs = [json.loads(f.read_text()) for f in files]
    base = runs[0]
    for f, r in zip(files[1:], runs[1:]):
        mine = {k: v for k, v in r["settings"].items() if k not in VARYING}
        theirs = {k: v for k, v in base["settings"].items() if k not in VARYING}
        if mine != theirs:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise SystemExit(f"{f}: run with other settings than {files[0]} ({', '.join(diff)}); not merged")
    out = {"settings": base["settings"], "partitions": {}, "merged_from": [str(f) for f in files]}
    for f, r in zip(files, runs):
        for k, v in r["partitions"].items():
            if k in out["partitions"]:
                raise SystemExit(f"{f}: test partition {k} is in more than one file")
            out["partitions"][k] = v
    out["settings"]["partitions"] = sorted(out["partitions"])
    out["peak_gpu_mem_gb"] = max(
        (r.get("peak_gpu_mem_gb") for r in runs if r.get("peak_gpu_mem_gb") is not None), default=None
    )
    out["protocol_seconds"] = round(sum(r.get("protocol_seconds", 0.0) for r in runs), 1)
    return summarise(out)


def staging(model_dir: Path) -> Path:
    """Where ``--save-model`` writes until the run has ended: a crash leaves the old model whole."""
    return model_dir.with_name(model_dir.name + ".partial")


#: the settings an earlier run must share for its softmax and sparsemax heads to be this run's
HEADS_SETTINGS = (
    "data_sha256",
    "n_proteins",
    "per_partition",
    "max_epochs",
    "encoder",
    "train",
    "calibration",
    "seed",
    "partitions",
    "classes",
)


def reusable_heads(path: Path, settings: dict) -> dict:
    """Per test partition, the ``softmax_vs_sigmoid`` results of the run in ``path``, refused
    unless it trained its heads with every setting of :data:`HEADS_SETTINGS` the same."""
    earlier = json.loads(path.read_text())
    differ = [k for k in HEADS_SETTINGS if earlier["settings"].get(k) != settings.get(k)]
    if differ:
        raise SystemExit(f"--heads-from {path}: its {', '.join(differ)} differ from this run's")
    parts = earlier["partitions"]
    if any(not parts.get(t, {}).get("softmax_vs_sigmoid") for t in settings["partitions"]):
        raise SystemExit(f"--heads-from {path}: it has no softmax and sparsemax heads for every test partition")
    return {t: parts[t]["softmax_vs_sigmoid"] for t in settings["partitions"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with ``--cpu-full``'s preset applied (device, partition, threads, out)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out",
        type=Path,
        help="result JSON (required, but for --cpu-full: default benchmarks/results/localization_cpu_full.json)",
    )
    ap.add_argument(
        "--config",
        type=Path,
        default=REPO / "config/full.yaml",
        help="the task's encoder, loss, training and calibration settings (default config/full.yaml)",
    )
    ap.add_argument(
        "--data",
        type=Path,
        help="DeepLoc 2.0 CSV, plain or .gz (default: the config's localization reference). The full set, "
        "DeepLoc 2.0's SwissProt training/validation CSV (28,303 proteins, five homology partitions), is not "
        "bundled: get it from DeepLoc 2.0's site (https://services.healthtech.dtu.dk/services/DeepLoc-2.0/, "
        "Data) and point config/full.yaml's reference or --data at it; resources/README.md says where this "
        "checkout keeps a copy",
    )
    ap.add_argument("--partitions", nargs="+", help="test partitions to run (default: all five)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['per_partition']} proteins per partition, at most {QUICK['max_epochs']} epochs, "
        f"test partition {QUICK['partitions'][0]} only unless --partitions is given",
    )
    ap.add_argument(
        "--cpu-full",
        action="store_true",
        help="the CPU headline: every protein of the data (no subsampling), test partition 4 only, on the CPU "
        f"with {CPU_FULL['threads']} threads unless --threads, the floor in the same run; writes "
        "benchmarks/results/localization_cpu_full.json unless --out. Hours on a 2-core CPU: about 17,000 training "
        "proteins, up to the config's max_epochs, for the sigmoid model and again for the softmax and sparsemax "
        "heads (--no-softmax skips those; --max-epochs caps all three)",
    )
    ap.add_argument("--per-partition", type=int, help="subsample this many proteins per partition")
    ap.add_argument("--max-epochs", type=int)
    ap.add_argument("--attention-layers", type=int, help="override encoder.attention_layers")
    ap.add_argument(
        "--composition",
        choices=("on", "off"),
        help="override encoder.composition (the floor's composition features beside the CNN's encoding)",
    )
    ap.add_argument(
        "--membrane-head", action="store_true", help="also train and score the membrane head (membrane_head: true)"
    )
    ap.add_argument(
        "--no-softmax", action="store_true", help="skip the softmax and sparsemax heads (softmax_vs_sigmoid)"
    )
    ap.add_argument(
        "--heads-from",
        type=Path,
        metavar="JSON",
        help="take the softmax and sparsemax heads' results from this earlier result file instead of training "
        "them: it must have the same data, seed, test partitions, encoder, training and calibration settings. "
        "Their loss replaces the config's, so a run that changes only loss settings trains the same heads; the "
        "sigmoid rows are this run's",
    )
    ap.add_argument(
        "--floor-only", action="store_true", help="only the composition floor (minutes on a CPU for the full set)"
    )
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument(
        "--threads", type=int, help="CPU threads (default: the config's trainer.threads, at most the cores)"
    )
    ap.add_argument("--predict-batch", type=int, help="proteins per forward pass (default 128 on CPU, 512 on GPU)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--merge", type=Path, nargs="+", help="combine these result files instead of running")
    ap.add_argument(
        "--save-model",
        type=Path,
        metavar="DIR",
        help="write the scored sigmoid model to DIR as barloc predict loads it (model.ckpt, model.json, "
        "calibration.json); one test partition only",
    )
    args = ap.parse_args(argv)
    if args.heads_from is not None and (args.no_softmax or args.floor_only or args.merge):
        ap.error("--heads-from fills in the heads' results: not with --no-softmax, --floor-only or --merge")
    if args.save_model is not None:
        # resources/models/localization links to the package's copy: write there, not over the link
        args.save_model = args.save_model.resolve()
        if args.merge or args.floor_only or args.membrane_head:
            ap.error("--save-model exports the location model: not with --merge, --floor-only or --membrane-head")
        tests = ["4"] if args.cpu_full else args.partitions or (QUICK["partitions"] if args.quick else None)
        if tests is None or len(tests) != 1:
            ap.error("--save-model: name one test partition (--partitions), or use --cpu-full or --quick")
    if args.cpu_full:
        clash = [
            flag
            for flag, on in (
                ("--quick", args.quick),
                ("--per-partition", args.per_partition is not None),
                ("--partitions", args.partitions is not None),
                ("--floor-only", args.floor_only),
                ("--merge", args.merge is not None),
                ("--device cuda", args.device == "cuda"),
            )
            if on
        ]
        if clash:
            ap.error(f"--cpu-full is full data, test partition 4 and the floor on the CPU: not with {', '.join(clash)}")
        args.device = "cpu"
        args.partitions = list(CPU_FULL["partitions"])
        args.threads = args.threads or CPU_FULL["threads"]
        args.out = args.out or CPU_FULL["out"]
    elif args.out is None:
        ap.error("--out is required (it has a default with --cpu-full only)")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric", "barloc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("barloc.training").setLevel(logging.INFO)  # one line an epoch, with the time left
    for noise in (
        ".*does not have many workers.*",
        ".*number of training batches.*",
        ".*`srun` command is available.*",
        ".*LeafSpec.*",
        "A single label was found.*",
    ):
        warnings.filterwarnings("ignore", noise)

    if args.merge:
        result = merge(args.merge)
    else:
        result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    if args.save_model is not None:
        partial = staging(args.save_model)
        write_model_card(partial, result, shlex.join(["python", "benchmarks/localization.py", *(argv or sys.argv[1:])]))
        shutil.rmtree(args.save_model, ignore_errors=True)
        partial.rename(args.save_model)
    brief = {
        k: result[k]
        for k in (
            "device",
            "train_seconds",
            "train_proteins_per_second",
            "predict_proteins_per_second",
            "peak_gpu_mem_gb",
        )
    }
    print(
        json.dumps(
            {name: {k: result[name][k] for k in SUMMARY_KEYS} if result[name] else None for name in ("barloc", "floor")}
            | brief,
            indent=2,
        )
    )
    return result


def run(args) -> dict:
    t_start = time.perf_counter()
    cuda = torch.cuda.is_available() and args.device in ("auto", "cuda")
    if args.device == "cuda" and not cuda:
        raise SystemExit("--device cuda: no CUDA device is visible")
    device = "cuda" if cuda else "cpu"
    df, task, trainer = load_task(args.config, args.data)
    trainer = {**trainer, "accelerator": "gpu" if cuda else "cpu"}
    threads = args.threads or min(int(trainer.get("threads", 1)), os.cpu_count() or 1)
    torch.set_num_threads(threads)
    per_partition = args.per_partition or (QUICK["per_partition"] if args.quick else None)
    max_epochs = args.max_epochs or (QUICK["max_epochs"] if args.quick else None)
    full = df
    if per_partition:
        df = subsample(df, per_partition, args.seed)
    tr = task.setdefault("train", {})
    if max_epochs:
        tr["max_epochs"] = max_epochs
        if args.quick:  # the task block is checked, so patience is set (the schema's default at least)
            tr["patience"] = min(int(tr["patience"]), QUICK["patience"])
    if args.membrane_head:
        task["membrane_head"] = True
    if args.attention_layers is not None:
        task.setdefault("encoder", {})["attention_layers"] = args.attention_layers
    if args.composition is not None:
        task.setdefault("encoder", {})["composition"] = args.composition == "on"
    partitions = sorted(df["group"].unique())
    if len(partitions) != N_PARTITIONS:
        raise SystemExit(f"{task['reference']}: {len(partitions)} partitions, expected {N_PARTITIONS}")
    tests = [str(p) for p in (args.partitions or (QUICK["partitions"] if args.quick else partitions))]
    unknown = sorted(set(tests) - set(partitions))
    if unknown:
        raise SystemExit(f"--partitions: no partition {', '.join(unknown)} (have {', '.join(partitions)})")
    classes = task_classes(df["label"], task)
    task["classes"] = classes
    predict_batch = args.predict_batch or (512 if cuda else 128)
    settings = {
        "data": str(task["reference"]),
        "data_sha256": sha256(task["reference"]),
        "n_proteins": len(df),
        "quick": bool(args.quick),
        "cpu_full": bool(getattr(args, "cpu_full", False)),
        "per_partition": per_partition,
        "max_epochs": tr.get("max_epochs"),
        "config": str(args.config),
        "encoder": task.get("encoder"),
        "loss": task.get("loss"),
        "train": tr,
        "calibration": task.get("calibration"),
        "membrane_head": bool(task.get("membrane_head")),
        "seed": args.seed,
        "partitions": tests,
        "classes": classes,
        "device": torch.cuda.get_device_name(0)
        if cuda
        else f"cpu ({platform.processor() or platform.machine()}, {threads} threads of {os.cpu_count()} cores)",
        "predict_batch": predict_batch,
        "softmax": not args.no_softmax,
        "floor_only": args.floor_only,
        "versions": versions(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    heads = None
    if args.heads_from is not None:
        heads = reusable_heads(args.heads_from, settings)
        settings["heads_from"] = str(args.heads_from)
    if args.quick:
        settings["note"] = (
            f"QUICK RUN: {per_partition} proteins per partition, at most {tr['max_epochs']} epochs "
            f"(patience {tr['patience']}), only the test partitions in settings.partitions: a smoke test and "
            "a throughput figure, not the 5-partition protocol on the full set"
        )
    if settings["cpu_full"]:
        settings["note"] = (
            f"CPU FULL: every protein of the data ({len(df)}), at most {tr.get('max_epochs')} epochs, test "
            f"partition {', '.join(tests)} only, on the CPU, the floor on the same proteins; the GPU protocol "
            "tests all five partitions"
        )
    result: dict = {"settings": settings, "partitions": {}}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for test in tests:
        log.info("test partition %s (%d proteins in all)", test, len(df))
        pool = full[full["group"] == test]
        speed = pool.sample(min(SPEED_PROTEINS, len(pool)), random_state=args.seed)["sequence"].tolist()
        result["partitions"][test] = run_partition(
            df,
            test,
            task,
            trainer,
            args.seed,
            classes,
            device,
            predict_batch,
            not args.no_softmax,
            speed,
            args.floor_only,
            None if args.save_model is None else staging(args.save_model),
            None if heads is None else heads[test],
        )
        p = result["partitions"][test]
        log.info(
            "partition %s: floor micro-F1 %.3f macro-F1 %.3f", test, p["floor"]["micro_f1"], p["floor"]["macro_f1"]
        )
        if "barloc" in p:
            log.info(
                "partition %s: barloc micro-F1 %.3f macro-F1 %.3f; %.0f s training",
                test,
                p["barloc"]["micro_f1"],
                p["barloc"]["macro_f1"],
                p["timing"]["train_seconds"],
            )
    result["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3) if cuda else None
    result["protocol_seconds"] = round(time.perf_counter() - t_start, 1)
    settings["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return summarise(result)


if __name__ == "__main__":
    main()
