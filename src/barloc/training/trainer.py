"""The Lightning Trainer: settings from the config's ``trainer`` block, how the kept weights
are chosen, the History and progress callbacks, and CPU threads shared between DDP processes."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from barloc.config import trainer_defaults
from barloc.errors import InputError


class History(Callback):
    """Per-epoch losses and the validation metric, for the report's training curves."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after the epoch's validation, so both losses are in callback_metrics.
        m = trainer.callback_metrics
        self.rows.append(
            {"epoch": trainer.current_epoch}
            | {k: float(m[k]) if k in m else float("nan") for k in ("train_loss", "val_loss", "val_metric")}
        )


class EpochLog(Callback):
    """One log line an epoch, for a rule's log file (where a progress bar would be noise):
    the epoch, its losses and validation metric, its seconds, and the time left if training
    runs to ``max_epochs`` (early stopping may end it sooner)."""

    def __init__(self, metric_name: str | None = None, log: logging.Logger | None = None) -> None:
        self.metric_name = metric_name or "val_metric"
        self._log = log or logging.getLogger("barloc.training")
        self._start = self._epoch_start = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        now, m = time.monotonic(), trainer.callback_metrics
        done, total = trainer.current_epoch + 1, trainer.max_epochs or 0
        parts = [f"epoch {done}/{total}"]
        for key, name in (("train_loss", "train loss"), ("val_loss", "val loss"), ("val_metric", self.metric_name)):
            if key in m and math.isfinite(float(m[key])):
                parts.append(f"{name} {float(m[key]):.4f}")
        parts.append(f"{now - self._epoch_start:.2f} s")
        if total > done:
            left = (now - self._start) / done * (total - done)
            parts.append(f"at most {_duration(left)} left")
        self._log.info(", ".join(parts))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class _DropTips(logging.Filter):
    """Lightning's advertising lines ("💡 Tip: ...") say nothing about the run, and its device
    and stop lines ("GPU available: ...", "`Trainer.fit` stopped: ...") repeat what barloc's
    own line after training says (epochs, seconds, device, processes)."""

    NOISE = ("Tip:", "GPU available: ", "TPU available: ", "HPU available: ", "`Trainer.fit` stopped: ")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in self.NOISE)


def quiet_lightning() -> None:
    """Keep Lightning's tip banners and a deprecation warning from its own internals
    (torch's LeafSpec, raised inside lightning.pytorch.utilities._pytree) out of the logs."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


def trainer_settings(tcfg: dict) -> dict:
    """Lightning Trainer arguments from the config's ``trainer`` block (defaults filled in):
    devices and precision (bf16 mixed precision on a GPU, full precision on the CPU) and, for
    several devices, who starts the processes."""
    tcfg = trainer_defaults(tcfg)
    gpu = torch.cuda.is_available() and tcfg["accelerator"] in ("auto", "gpu", "cuda")
    precision = tcfg["precision"]
    if precision == "auto":
        precision = "bf16-mixed" if gpu else "32-true"
    settings = {
        "accelerator": tcfg["accelerator"],
        "devices": tcfg["devices"],
        "num_nodes": tcfg["num_nodes"],
        "strategy": tcfg["strategy"],
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
                "barloc trains on one node: set num_nodes: 1 and devices to the GPUs of one node",
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


def share_threads(settings: dict) -> None:
    """When Lightning starts one process per device on this node, share the job's CPU threads
    between them instead of giving each all of them."""
    if "plugins" in settings:
        per_node = settings["devices"] if isinstance(settings["devices"], int) else torch.cuda.device_count()
        torch.set_num_threads(max(1, torch.get_num_threads() // max(per_node, 1)))


def weight_choice(train_cfg: dict, ckdir: Path, keep_last: bool) -> tuple[ModelCheckpoint | None, list[Callback]]:
    """(the best-weights checkpoint or None, the callbacks that choose the kept weights).

    Early stopping and the best checkpoint follow ``train.monitor`` (the validation metric by
    default: the weighted training loss on a validation set whose class mix differs, as in
    grouped splits, is a noisy guide). With ``keep_last`` (no early stopping, or a refit) the
    last weights are kept and nothing is monitored."""
    if keep_last:
        return None, []
    monitor = train_cfg["monitor"]
    mode = monitor_mode(monitor)
    best = ModelCheckpoint(
        dirpath=ckdir,
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_weights_only=True,
        enable_version_counter=False,
    )
    return best, [best, EarlyStopping(monitor, mode=mode, patience=int(train_cfg["patience"]))]


def monitor_mode(monitor: str) -> str:
    return "min" if monitor == "val_loss" else "max"


def make_trainer(
    settings: dict,
    callbacks: list[Callback],
    max_epochs: int,
    validate: bool,
    root_dir: str | Path,
    metric_name: str | None = None,
) -> L.Trainer:
    """A deterministic Trainer without a logger (History keeps the curves); ``validate=False``
    runs no validation (a refit). Progress: a bar on a terminal, else one log line an epoch
    (:class:`EpochLog`, naming the validation metric ``metric_name``)."""
    quiet_lightning()
    bar = sys.stderr.isatty()
    return L.Trainer(
        max_epochs=max_epochs,
        limit_val_batches=None if validate else 0,
        callbacks=[*callbacks, *(() if bar else (EpochLog(metric_name),))],
        logger=False,
        deterministic=True,
        enable_progress_bar=bar,
        enable_model_summary=False,
        default_root_dir=str(root_dir),
        **settings,
    )
