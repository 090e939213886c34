"""``fit``: one training run, orchestrated (data, model, trainer, resume, kept weights)."""

from __future__ import annotations

import dataclasses
import gc
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback

from barloc import soft
from barloc.artifacts import ModelMeta
from barloc.config import with_defaults
from barloc.modelio import build_model
from barloc.models import VAL_METRIC_NAME, SequenceClassifier, n_kmer_features
from barloc.runtime import process_rank, versions
from barloc.training.datamodule import SequenceDataModule
from barloc.training.resume import (
    checkpoint_epochs,
    fingerprint,
    resumable,
    resume_callbacks,
    write_fingerprint,
)
from barloc.training.trainer import (
    History,
    make_trainer,
    monitor_mode,
    share_threads,
    trainer_settings,
    weight_choice,
)

log = logging.getLogger(__name__)


def fit(
    train: pd.DataFrame,
    val: pd.DataFrame | None,
    cfg: dict,
    trainer_cfg: dict,
    seed: int,
    task: str = "",
    checkpoint_dir: str | Path | None = None,
    callbacks: tuple[Callback, ...] = (),
    epochs: int | None = None,
) -> tuple[SequenceClassifier, ModelMeta, list[dict]]:
    """Train on ``train`` (columns sequence, label), early-stopped on ``val``; ``cfg`` is the
    task block, ``trainer_cfg`` the trainer block (schema defaults fill what they leave out).

    Returns (model with the kept weights, its model.json, history rows). Shared by the
    workflow's train step, the ablation step and the cross-validation benchmarks.

    With ``checkpoint_dir``, a killed run can be resumed: every epoch ends with ``last.ckpt``
    there (weights, optimizer, early-stopping and RNG state) beside the best weights so far, and
    a call with the same data, config and seed continues from the epoch after the last one
    saved, ending with the weights an uninterrupted run gets. A folder left by other data or
    settings is cleared, not resumed; it is removed once training has finished. ``callbacks``
    are extra Lightning callbacks (tests).

    With ``train.early_stopping: false`` it trains for ``max_epochs`` and keeps the last weights
    (``val`` is still scored, for the history). With ``epochs`` (the refit of cross-fitting,
    :func:`barloc.training.crossfit.cross_fit`)
    it trains on ``train`` for exactly that many epochs and keeps the last weights, with no
    validation: ``val`` is ignored.
    """
    cfg, refit = with_defaults(cfg), epochs is not None
    tr = cfg["train"]
    L.seed_everything(seed, workers=True, verbose=False)
    data = SequenceDataModule(train, None if refit else val, cfg, seed)
    data.setup("fit")  # encoded now: the model's size and class weights come from the data
    meta = _model_meta(data, cfg, seed, task)
    model = build_model(meta)
    data.fit_encoder(model.encoder)
    history = History()
    settings = trainer_settings(trainer_cfg)
    share_threads(settings)
    keep_last = refit or not tr["early_stopping"]
    with tempfile.TemporaryDirectory() as tmpdir:
        ckdir, resume = Path(tmpdir), None
        if checkpoint_dir is not None:
            ckdir = Path(checkpoint_dir)
            nearest_groups = ["group"] if data.nearest and "group" in train else []
            fp = fingerprint(
                {k: v for k, v in settings.items() if k != "plugins"}
                | {"seed": seed, "cfg": cfg, "task": task, "epochs": epochs},
                train[soft.key_columns(train) + nearest_groups],
                data.val_records[soft.key_columns(data.val_records)],
            )
            # Under DDP the first process decides (and clears a stale folder) before it starts
            # the others, which then find the same last.ckpt, or none, and only read.
            resume = resumable(ckdir, fp, clear=process_rank() == 0)
        best, chooser = weight_choice(tr, ckdir, keep_last)
        cbs = [*chooser, history, *callbacks]
        if checkpoint_dir is not None:
            cbs += resume_callbacks(ckdir, history)
        trainer = make_trainer(
            settings, cbs, epochs if refit else int(tr["max_epochs"]), not refit, tmpdir, meta.val_metric
        )
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # The folder holds our own fingerprint and checkpoints, which is the point.
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            if resume is not None:
                log.info("resuming %s from %s (epoch %d done)", task or "training", resume, checkpoint_epochs(resume))
                trainer.fit(model, datamodule=data, ckpt_path=resume, weights_only=True)
            else:
                if checkpoint_dir is not None and trainer.is_global_zero:
                    write_fingerprint(ckdir, fp)
                trainer.fit(model, datamodule=data)
        seconds = time.perf_counter() - t0
        if trainer.is_global_zero:
            # Only the first process saved checkpoints, and only it writes outputs. Without early
            # stopping the model holds the weights it keeps: the last ones.
            if best is not None:
                state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
                model.load_state_dict(state)
            if checkpoint_dir is not None:
                shutil.rmtree(ckdir, ignore_errors=True)
    monitor = None if keep_last else tr["monitor"]
    pick = np.argmin if monitor_mode(tr["monitor"]) == "min" else np.argmax
    meta = dataclasses.replace(
        meta,
        device=str(trainer.strategy.root_device),
        precision=settings["precision"],
        world_size=trainer.world_size,
        epochs=trainer.current_epoch,
        monitor=monitor,
        best_epoch=trainer.current_epoch - 1 if keep_last else int(pick([r[monitor] for r in history.rows])),
        train_seconds=round(seconds, 2),
        versions=versions(),
    )
    log.info(
        "trained %d epochs in %.1f s on %s (%d process%s, rank %d)",
        meta.epochs,
        seconds,
        meta.device,
        trainer.world_size,
        "es" if trainer.world_size > 1 else "",
        trainer.global_rank,
    )
    # Free the trainer and the datamodule's encoded records now: they sit in reference cycles
    # (Lightning's), which would otherwise outlive the next model's set-up.
    model.trainer = None
    del trainer, data
    gc.collect()
    return model, meta, history.rows


def _model_meta(data: SequenceDataModule, cfg: dict, seed: int, task: str) -> ModelMeta:
    """model.json's description of the model before training: what it is and what it learns
    from. :func:`fit` adds how the run went; ``crossfit`` and ``inputs`` are added by
    :func:`barloc.training.crossfit.cross_fit` and the train step."""
    counts, n_train = data.class_counts()
    tr = cfg["train"]
    return ModelMeta(
        task=task,
        kind=data.kind,
        classes=data.classes,
        alphabet=data.alphabet,
        encoder=data.encoder_cfg,
        loss=cfg["loss"],
        optim={k: tr[k] for k in ("lr", "weight_decay", "mask_residues") if k in tr},
        n_features=n_kmer_features(data.encoder_cfg),
        train_counts=counts.tolist(),
        n_train=n_train,
        train_priors=(counts / max(n_train, 1)).tolist(),
        seed=seed,
        val_metric=VAL_METRIC_NAME[data.kind],
        # barloc predict applies the same clipping to queries as ingest did to training data.
        length_limit={"max_length": cfg.get("max_length"), "on_long": cfg["on_long"]},
        extra_heads=data.extra or None,
        n_reference=data.n_reference,
        reference_groups=data.reference_groups,
    )
