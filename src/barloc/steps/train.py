"""train: fit the Lightning classifier on the train split, early-stopped on val loss."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from barloc import extra_heads, soft
from barloc.augment import augment_records
from barloc.data import EncodedDataset, SequenceDataModule, group_ids, group_keys
from barloc.errors import InputError
from barloc.modelio import build_model, save_model
from barloc.models import VAL_METRIC_NAME, n_kmer_features
from barloc.runtime import atomic_path, parquet_meta, present_columns, process_rank, versions
from barloc.steps.predict import score_frame

log = logging.getLogger(__name__)


def task_classes(labels: pd.Series, cfg: dict, soft_cells=None) -> list[str]:
    """Configured class order, else sorted labels seen in the reference (and classes that
    soft targets give a probability)."""
    if cfg.get("classes"):
        return list(cfg["classes"])
    return sorted(set(labels.dropna().str.split(";").explode()) | soft.classes_in(soft_cells))


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
    """Lightning Trainer arguments from the config's ``trainer`` block: devices and precision
    (bf16 mixed precision on a GPU, full precision on the CPU) and, for several devices, who
    starts the processes."""
    gpu = torch.cuda.is_available() and tcfg.get("accelerator", "auto") in ("auto", "gpu", "cuda")
    precision = tcfg.get("precision", "auto")
    if precision == "auto":
        precision = "bf16-mixed" if gpu else "32-true"
    settings = {
        "accelerator": tcfg.get("accelerator", "auto"),
        "devices": tcfg.get("devices", 1),
        "num_nodes": tcfg.get("num_nodes", 1),
        "strategy": tcfg.get("strategy", "auto"),
        "precision": precision,
        # The bucket sampler shards batches itself (Lightning cannot wrap a batch sampler).
        "use_distributed_sampler": False,
    }
    devices = settings["devices"]
    if gpu and isinstance(devices, int) and devices > torch.cuda.device_count():
        raise InputError(
            None,
            f"trainer.devices is {devices}, but this job sees {torch.cuda.device_count()} GPU(s) "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); on Slurm, ask for as many "
            f"in the profile (set-resources: train: gpu: {devices})",
        )
    if _multi_process(settings) and not _started_by_slurm():
        # One node: Lightning starts one process per device itself. Inside a Slurm job step
        # of one task (how the Slurm executor plugin runs every job) Lightning would otherwise
        # pick its SLURMEnvironment and wait for processes that srun never starts.
        if settings["num_nodes"] > 1:
            raise InputError(
                None,
                f"trainer.num_nodes is {settings['num_nodes']}, but this training process was not started by "
                "Slurm as one task per device on each node (srun --nodes=<num_nodes> "
                "--ntasks-per-node=<devices>); Snakemake's Slurm plugin runs each job as one task, so "
                "barloc trains on one node: set num_nodes: 1 and devices to the GPUs of one node"
            )
        settings["plugins"] = [LightningEnvironment()]
    return settings


def _multi_process(settings: dict) -> bool:
    devices = settings["devices"]
    many = devices == "auto" and torch.cuda.device_count() > 1
    return many or (isinstance(devices, int) and devices > 1) or settings["num_nodes"] > 1


def _started_by_slurm() -> bool:
    """True when srun started this process as one task of several in its job step."""
    return int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1


class _ResumeState(Callback):
    """What a Lightning checkpoint leaves out but an exact resume needs: the global RNG states
    (dropout), the bucket sampler's epoch and the history rows. Saved in last.ckpt with the
    trainer's own state, as tensors and plain types so it loads with weights_only=True."""

    def __init__(self, history: History) -> None:
        self.history = history

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The bucket sampler shuffles epoch e with seed + e, counting its own passes from 0 in
        # each process; after a resume it must start at the resumed epoch. Lightning hands every
        # epoch's number to the loader's sampler's set_epoch before the epoch (also the first
        # one after a resume), so forward it from there to the batch sampler.
        loader = trainer.train_dataloader
        batches, sampler = getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)
        if hasattr(batches, "epoch") and sampler is not None and not hasattr(sampler, "set_epoch"):
            sampler.set_epoch = lambda epoch: setattr(batches, "epoch", int(epoch))

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": random.getstate(),
            "history": [dict(r) for r in self.history.rows],
        }

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        self.history.rows[:] = [dict(r) for r in state["history"]]


def _fingerprint(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, pd.DataFrame):
            h.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


def fit(
    train: pd.DataFrame,
    val: pd.DataFrame,
    cfg: dict,
    trainer_cfg: dict,
    seed: int,
    task: str = "",
    checkpoint_dir: str | Path | None = None,
    callbacks: tuple[Callback, ...] = (),
    epochs: int | None = None,
) -> tuple:
    """Train on ``train`` (columns sequence, label), early-stopped on ``val``.

    Returns (model with the best weights, meta dict for model.json, history rows). Shared by
    the workflow's train step and the cross-validation benchmarks.

    With ``checkpoint_dir``, a killed run can be resumed: every epoch ends with ``last.ckpt``
    there (weights, optimizer, early-stopping and RNG state) beside the best weights so far, and
    a call with the same data, config and seed continues from the epoch after the last one
    saved, ending with the weights an uninterrupted run gets. A folder left by other data or
    settings is cleared, not resumed; it is removed once training has finished. ``callbacks``
    are extra Lightning callbacks (tests).

    With ``train.early_stopping: false`` it trains for ``max_epochs`` and keeps the last weights
    (``val`` is still scored, for the history). With ``epochs`` (a refit, :func:`train_for_calls`)
    it trains on ``train`` for exactly that many epochs and keeps the last weights, with no
    validation: ``val`` is ignored.
    """
    refit = epochs is not None
    if refit:
        val = train.iloc[:0]
    kind, alphabet = cfg["kind"], cfg["alphabet"]
    enc, tr = dict(cfg.get("encoder", {})), cfg.get("train", {})
    L.seed_everything(seed, workers=True, verbose=False)
    classes = task_classes(pd.concat([train["label"], val["label"]]), cfg,
                           (soft.column(train) or []) + (soft.column(val) or []))
    extra = extra_heads.heads(cfg)  # e.g. the membrane flag: target columns after the classes'
    if extra:
        extra_heads.check_columns(pd.concat([train, val]), extra, "the training records")
    nearest = enc.get("type") == "nearest"
    if nearest and (kind != "multiclass" or alphabet != "dna"):
        raise InputError(None, "encoder type 'nearest' compares DNA k-mer profiles for a softmax head: "
                               "it needs kind: multiclass and alphabet: dna")
    names = None
    if nearest:
        # The references: every labelled record outside the test split with a hard label.
        labelled = pd.concat([train, val], ignore_index=True)
        refs = soft.hard_mask(labelled)
        names = list(dict.fromkeys(group_keys(labelled[refs])))
    sets = {
        name: EncodedDataset(part["sequence"].tolist(), enc, alphabet,
                             extra_heads.append_targets(soft.targets(part, classes, kind), part, extra),
                             group_ids(part, names) if nearest else None)
        # train.augment: altered copies of the training records (DNA), never of val; a copy keeps
        # its original's group and id, so it never matches its original either.
        for name, part in (("train", augment_records(train, tr.get("augment"), seed, alphabet)),
                           *((("val", val),) if not refit else ()))
    }
    if refit:
        sets["val"] = sets["train"]  # never scored: the trainer runs no validation
    y_train = sets["train"].targets.numpy()[:, :len(classes)] if extra else sets["train"].targets.numpy()
    # Soft targets (a probability row each) count as expected class counts.
    counts = np.bincount(y_train, minlength=len(classes)) if y_train.ndim == 1 else y_train.sum(axis=0)
    n_train = len(y_train)
    if n_train > len(train):  # augmented: every record repeated equally, so count records, not copies
        reps = n_train // len(train)
        counts, n_train = (counts // reps if counts.dtype.kind == "i" else counts / reps), len(train)

    meta = {
        "task": task, "kind": kind, "classes": classes, "alphabet": alphabet,
        "encoder": enc, "loss": cfg.get("loss", {}), "optim": {k: tr[k] for k in ("lr", "weight_decay") if k in tr},
        "n_features": n_kmer_features(enc), "train_counts": counts.tolist(), "n_train": n_train,
        "train_priors": (counts / max(n_train, 1)).tolist(), "seed": seed,
        "val_metric": VAL_METRIC_NAME[kind],
        # barloc predict applies the same clipping to queries as ingest did to training data.
        "length_limit": {"max_length": cfg.get("max_length"), "on_long": cfg.get("on_long", "clip")},
        **({"extra_heads": extra} if extra else {}),
    }
    if nearest:
        meta.update({"n_reference": int(refs.sum()), "reference_groups": names})
    model = build_model(meta)
    if nearest:
        # Encoded already: the training records are the first rows of the (augmented) training set.
        mask = torch.from_numpy(refs)
        held = () if refit else (sets["val"],)
        model.encoder.set_reference(
            torch.cat([sets["train"].features[: len(train)], *(s.features for s in held)])[mask],
            torch.as_tensor([classes.index(c) for c in labelled.loc[refs, "label"]]),
            torch.cat([sets["train"].groups[: len(train)], *(s.groups for s in held)])[mask])
        # Always standardised: the distances' scale says nothing about their weight.
        model.encoder.fit_standardizer(sets["train"].features, sets["train"].groups)
    elif enc.get("standardize") and hasattr(model.encoder, "fit_standardizer"):
        model.encoder.fit_standardizer(sets["train"].features)
    dm = SequenceDataModule(sets["train"], sets["val"], int(tr.get("batch_size", 64)), seed)
    history = History()
    settings = trainer_settings(trainer_cfg)
    rank = process_rank()
    if "plugins" in settings:
        # Lightning starts one process per device on this node: share the job's CPU threads
        # between them instead of giving each all of them.
        per_node = settings["devices"] if isinstance(settings["devices"], int) else torch.cuda.device_count()
        torch.set_num_threads(max(1, torch.get_num_threads() // max(per_node, 1)))
    # Early stopping on the validation metric by default: the weighted training loss on a
    # validation set whose class mix differs (grouped splits) is a noisy guide.
    monitor = tr.get("monitor", "val_metric")
    mode = "min" if monitor == "val_loss" else "max"
    keep_last = refit or not tr.get("early_stopping", True)
    with tempfile.TemporaryDirectory() as tmpdir:
        ckdir, resume = Path(tmpdir), None
        if checkpoint_dir is not None:
            ckdir = Path(checkpoint_dir)
            fp = _fingerprint({k: v for k, v in settings.items() if k != "plugins"}
                              | {"seed": seed, "cfg": cfg, "task": task, "epochs": epochs},
                              train[soft.key_columns(train) + (["group"] if nearest and "group" in train else [])],
                              val[soft.key_columns(val)])
            # Under DDP the first process decides (and clears a stale folder) before it starts
            # the others, which then find the same last.ckpt, or none, and only read.
            resume = _resumable(ckdir, fp, clear=rank == 0)
        best = ModelCheckpoint(dirpath=ckdir, filename="best", monitor=monitor, mode=mode, save_top_k=1,
                               save_weights_only=True, enable_version_counter=False)
        chooser = [] if keep_last else [best, EarlyStopping(monitor, mode=mode, patience=int(tr.get("patience", 5)))]
        cbs = [*chooser, history, *callbacks]
        if checkpoint_dir is not None:
            # Full state every epoch (weights, optimizer, callbacks, loops), for resuming.
            cbs += [ModelCheckpoint(dirpath=ckdir, filename="last", enable_version_counter=False), _ResumeState(history)]
        trainer = L.Trainer(
            max_epochs=epochs if refit else int(tr.get("max_epochs", 30)),
            limit_val_batches=0 if refit else None,
            callbacks=cbs,
            logger=False,
            deterministic=True,
            enable_progress_bar=sys.stderr.isatty(),
            enable_model_summary=False,
            default_root_dir=tmpdir,
            **settings,
        )
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # The folder holds our own fingerprint and checkpoints, which is the point.
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            if resume is not None:
                log.info("resuming %s from %s (epoch %d done)", task or "training", resume, _ckpt_epoch(resume))
                trainer.fit(model, datamodule=dm, ckpt_path=resume, weights_only=True)
            else:
                if checkpoint_dir is not None and trainer.is_global_zero:
                    with atomic_path(ckdir / "fingerprint") as tmp:
                        tmp.write_text(fp + "\n")
                trainer.fit(model, datamodule=dm)
        seconds = time.perf_counter() - t0
        if trainer.is_global_zero:
            # Only the first process saved checkpoints, and only it writes outputs. Without early
            # stopping the model holds the weights it keeps: the last ones.
            if not keep_last:
                state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
                model.load_state_dict(state)
            if checkpoint_dir is not None:
                shutil.rmtree(ckdir, ignore_errors=True)
    meta.update({
        "device": str(trainer.strategy.root_device), "precision": settings["precision"],
        "world_size": trainer.world_size,
        "epochs": trainer.current_epoch, "monitor": None if keep_last else monitor,
        "best_epoch": trainer.current_epoch - 1 if keep_last
        else int((np.argmin if mode == "min" else np.argmax)([r[monitor] for r in history.rows])),
        "train_seconds": round(seconds, 2), "versions": versions(),
    })
    log.info("trained %d epochs in %.1f s on %s (%d process%s, rank %d)", meta["epochs"], seconds, meta["device"],
             trainer.world_size, "es" if trainer.world_size > 1 else "", trainer.global_rank)
    return model, meta, history.rows


def _resumable(ckdir: Path, fingerprint: str, clear: bool = True) -> Path | None:
    """ckdir/last.ckpt when it was written for this very training (same fingerprint) and loads;
    otherwise None, after clearing ckdir (with ``clear``) so nothing stale is mixed into a
    fresh run."""
    last = ckdir / "last.ckpt"
    fp_file = ckdir / "fingerprint"
    if not ckdir.exists():
        return None
    why = None
    if not last.exists():
        why = "no last.ckpt"
    elif not fp_file.exists() or fp_file.read_text().strip() != fingerprint:
        why = "it was written for other data or settings"
    else:
        try:
            _ckpt_epoch(last)
        except Exception as err:  # a truncated or unreadable file: start over rather than fail
            why = f"last.ckpt does not load ({type(err).__name__}: {err})"
    if why is None:
        return last
    if clear:
        log.info("not resuming from %s: %s; starting over", ckdir, why)
        shutil.rmtree(ckdir, ignore_errors=True)
    return None


def _ckpt_epoch(path: Path) -> int:
    """The number of epochs a Lightning checkpoint has finished (tensors and plain types only)."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"]) + 1


class Trained(NamedTuple):
    model: L.LightningModule  # the model that calls
    meta: dict
    history: list[dict]
    val_model: L.LightningModule  # scores val for calibration: the first model, unless val_scored_by: refit_model


def train_for_calls(
    train: pd.DataFrame, val: pd.DataFrame, cfg: dict, trainer_cfg: dict, seed: int, task: str = "",
    checkpoint_dir: str | Path | None = None,
) -> Trained:
    """Fit on ``train``, scored on ``val``, and, with ``train.refit``, retrain from scratch on
    train + val for as many epochs as that fit kept (the one early stopping chose, or
    ``max_epochs`` with ``early_stopping: false``). The validation projects then also teach the
    calling model, which matters when each basin has few projects, while the first model, which
    never trained on them, gives the val logits that calibration is fitted on (cross-fitting: the
    same recipe on fewer records). ``meta["refit"]`` keeps the first model's class counts, which
    its logits' class weighting followed. With ``calibration.val_scored_by: refit_model`` the
    refit model scores val instead: for a model too small to overfit, such as the nearest
    encoder's linear head, that matches its test logits better than the weaker first model's."""
    model, meta, history = fit(train, val, cfg, trainer_cfg, seed, task, checkpoint_dir)
    if not cfg.get("train", {}).get("refit"):
        return Trained(model, meta, history, model)
    scorer = cfg.get("calibration", {}).get("val_scored_by", "first_model")
    epochs = meta["best_epoch"] + 1
    both = pd.concat([train, val], ignore_index=True)
    final, fmeta, _ = fit(both, None, cfg, trainer_cfg, seed, task,
                          None if checkpoint_dir is None else Path(checkpoint_dir).with_name("checkpoints_refit"),
                          epochs=epochs)
    fmeta["refit"] = {"epochs": epochs, "val_scored_by": scorer, "heldout": {k: meta[k] for k in
                      ("train_counts", "n_train", "train_priors", "epochs", "best_epoch", "monitor", "train_seconds")}}
    return Trained(final, fmeta, history, model if scorer == "first_model" else final)


def run(inputs, outputs, params, threads: int = 1) -> None:
    # group (the BOLD project) keeps the nearest-reference encoder from matching a record's own project.
    records = pd.read_parquet(inputs.records, columns=soft.parquet_columns(inputs.records, ["id", "sequence", "label"])
                              + present_columns(inputs.records, [*extra_heads.heads(params.cfg), "group"]))
    splits = pd.read_csv(inputs.splits, sep="\t", dtype=str)
    data = records.merge(splits, on="id")
    val = data[data["split"] == "val"]
    trained = train_for_calls(
        data[data["split"] == "train"], val, params.cfg, params.trainer, int(params.seed), params.task,
        # Not a rule output, so Snakemake keeps it when the job dies; a rerun resumes from it.
        checkpoint_dir=Path(outputs.model).parent / "checkpoints",
    )
    if process_rank() != 0:
        return  # a DDP worker Lightning started by rerunning this script: rank 0 writes
    meta = trained.meta
    # Provenance: checksums of the user files that ingest built records.parquet from.
    meta["inputs"] = parquet_meta(inputs.records).get("inputs", {})
    batch_size = int(params.cfg.get("train", {}).get("batch_size", 64)) * 2
    with atomic_path(outputs.val_logits) as tmp:
        score_frame(trained.val_model, meta, val, batch_size).to_parquet(tmp, index=False)
    with atomic_path(outputs.history) as tmp:
        pd.DataFrame(trained.history).to_csv(tmp, sep="\t", index=False)
    save_model(trained.model, meta, outputs.model, outputs.meta)
