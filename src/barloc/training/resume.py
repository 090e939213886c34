"""Resuming a killed training run from its checkpoint folder: the fingerprint that says a
folder was written for this very training, the state Lightning's checkpoint leaves out, and
the check whether ``last.ckpt`` can be resumed."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from barloc.artifacts import atomic_path
from barloc.training.trainer import History

log = logging.getLogger(__name__)

LAST, FINGERPRINT = "last.ckpt", "fingerprint"


def fingerprint(*parts) -> str:
    """SHA-256 over data frames (their values) and JSON-able settings, in order."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, pd.DataFrame):
            h.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


def write_fingerprint(ckdir: Path, fp: str) -> None:
    with atomic_path(ckdir / FINGERPRINT) as tmp:
        tmp.write_text(fp + "\n")


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


def resume_callbacks(ckdir: Path, history: History) -> list[Callback]:
    """Full state every epoch (weights, optimizer, callbacks, loops, RNGs) in ckdir/last.ckpt."""
    return [
        ModelCheckpoint(dirpath=ckdir, filename=Path(LAST).stem, enable_version_counter=False),
        _ResumeState(history),
    ]


def resumable(ckdir: Path, fp: str, clear: bool = True) -> Path | None:
    """ckdir/last.ckpt when it was written for this very training (same fingerprint) and loads;
    otherwise None, after clearing ckdir (with ``clear``) so nothing stale is mixed into a
    fresh run."""
    last = ckdir / LAST
    fp_file = ckdir / FINGERPRINT
    if not ckdir.exists():
        return None
    why = None
    if not last.exists():
        why = f"no {LAST}"
    elif not fp_file.exists() or fp_file.read_text().strip() != fp:
        why = "it was written for other data or settings"
    else:
        try:
            checkpoint_epochs(last)
        except Exception as err:  # a truncated or unreadable file: start over rather than fail
            why = f"{LAST} does not load ({type(err).__name__}: {err})"
    if why is None:
        return last
    if clear:
        log.info("not resuming from %s: %s; starting over", ckdir, why)
        shutil.rmtree(ckdir, ignore_errors=True)
    return None


def checkpoint_epochs(path: Path) -> int:
    """The number of epochs a Lightning checkpoint has finished (tensors and plain types only)."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"]) + 1
