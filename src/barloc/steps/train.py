"""train: fit the Lightning classifier on the train split, early-stopped on val loss."""

from __future__ import annotations

import logging
import sys
import tempfile
import time

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from barloc.data import EncodedDataset, SequenceDataModule, targets_for
from barloc.modelio import build_model, save_model
from barloc.models import VAL_METRIC_NAME, n_kmer_features
from barloc.runtime import atomic_path, parquet_meta, versions

log = logging.getLogger(__name__)


def task_classes(labels: pd.Series, cfg: dict) -> list[str]:
    """Configured class order, else sorted labels seen in the reference."""
    if cfg.get("classes"):
        return list(cfg["classes"])
    return sorted(set(labels.dropna().str.split(";").explode()))


class History(Callback):
    """Per-epoch losses and the validation metric, for the report's training curves."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after the epoch's validation, so both losses are in callback_metrics.
        m = trainer.callback_metrics
        self.rows.append({"epoch": trainer.current_epoch} | {
            k: float(m[k]) if k in m else float("nan") for k in ("train_loss", "val_loss", "val_metric")
        })


def trainer_settings(tcfg: dict) -> dict:
    """Devices and precision: bf16 mixed precision on a GPU, full precision on the CPU."""
    gpu = torch.cuda.is_available() and tcfg.get("accelerator", "auto") in ("auto", "gpu", "cuda")
    precision = tcfg.get("precision", "auto")
    if precision == "auto":
        precision = "bf16-mixed" if gpu else "32-true"
    return {
        "accelerator": tcfg.get("accelerator", "auto"),
        "devices": tcfg.get("devices", 1),
        "num_nodes": tcfg.get("num_nodes", 1),
        "strategy": tcfg.get("strategy", "auto"),
        "precision": precision,
    }


def fit(train: pd.DataFrame, val: pd.DataFrame, cfg: dict, trainer_cfg: dict, seed: int, task: str = "") -> tuple:
    """Train on ``train`` (columns sequence, label), early-stopped on ``val``.

    Returns (model with the best weights, meta dict for model.json, history rows). Shared by
    the workflow's train step and the cross-validation benchmarks.
    """
    kind, alphabet = cfg["kind"], cfg["alphabet"]
    enc, tr = dict(cfg.get("encoder", {})), cfg.get("train", {})
    L.seed_everything(seed, workers=True, verbose=False)
    classes = task_classes(pd.concat([train["label"], val["label"]]), cfg)
    sets = {
        name: EncodedDataset(part["sequence"].tolist(), enc, alphabet, targets_for(part["label"].tolist(), classes, kind))
        for name, part in (("train", train), ("val", val))
    }
    y_train = sets["train"].targets.numpy()
    counts = np.bincount(y_train, minlength=len(classes)) if kind == "multiclass" else y_train.sum(axis=0)
    n_train = len(y_train)

    meta = {
        "task": task, "kind": kind, "classes": classes, "alphabet": alphabet,
        "encoder": enc, "loss": cfg.get("loss", {}), "optim": {k: tr[k] for k in ("lr", "weight_decay") if k in tr},
        "n_features": n_kmer_features(enc), "train_counts": counts.tolist(), "n_train": n_train,
        "train_priors": (counts / max(n_train, 1)).tolist(), "seed": seed,
        "val_metric": VAL_METRIC_NAME[kind],
        # barloc predict applies the same clipping to queries as ingest did to training data.
        "length_limit": {"max_length": cfg.get("max_length"), "on_long": cfg.get("on_long", "clip")},
    }
    model = build_model(meta)
    if enc.get("standardize") and hasattr(model.encoder, "fit_standardizer"):
        model.encoder.fit_standardizer(sets["train"].features)
    dm = SequenceDataModule(sets["train"], sets["val"], int(tr.get("batch_size", 64)), seed)
    history = History()
    settings = trainer_settings(trainer_cfg)
    # Early stopping on the validation metric by default: the weighted training loss on a
    # validation set whose class mix differs (grouped splits) is a noisy guide.
    monitor = tr.get("monitor", "val_metric")
    mode = "min" if monitor == "val_loss" else "max"
    with tempfile.TemporaryDirectory() as ckdir:
        best = ModelCheckpoint(dirpath=ckdir, monitor=monitor, mode=mode, save_top_k=1, save_weights_only=True)
        trainer = L.Trainer(
            max_epochs=int(tr.get("max_epochs", 30)),
            callbacks=[best, history, EarlyStopping(monitor, mode=mode, patience=int(tr.get("patience", 5)))],
            logger=False,
            deterministic=True,
            enable_progress_bar=sys.stderr.isatty(),
            enable_model_summary=False,
            default_root_dir=ckdir,
            **settings,
        )
        t0 = time.perf_counter()
        trainer.fit(model, datamodule=dm)
        seconds = time.perf_counter() - t0
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict(state)
    meta.update({
        "device": str(trainer.strategy.root_device), "precision": settings["precision"],
        "epochs": trainer.current_epoch, "monitor": monitor,
        "best_epoch": int((np.argmin if mode == "min" else np.argmax)([r[monitor] for r in history.rows])),
        "train_seconds": round(seconds, 2), "versions": versions(),
    })
    log.info("trained %d epochs in %.1f s on %s", meta["epochs"], seconds, meta["device"])
    return model, meta, history.rows


def run(inputs, outputs, params, threads: int = 1) -> None:
    records = pd.read_parquet(inputs.records, columns=["id", "sequence", "label"])
    splits = pd.read_csv(inputs.splits, sep="\t", dtype=str)
    data = records.merge(splits, on="id")
    model, meta, history = fit(
        data[data["split"] == "train"], data[data["split"] == "val"], params.cfg, params.trainer, int(params.seed), params.task
    )
    # Provenance: checksums of the user files that ingest built records.parquet from.
    meta["inputs"] = parquet_meta(inputs.records).get("inputs", {})
    with atomic_path(outputs.history) as tmp:
        pd.DataFrame(history).to_csv(tmp, sep="\t", index=False)
    save_model(model, meta, outputs.model, outputs.meta)
