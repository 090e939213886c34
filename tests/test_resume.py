"""A killed training resumes from results/{task}/checkpoints/last.ckpt instead of starting over."""

from __future__ import annotations

import logging
import os
import signal
import subprocess

import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from conftest import wait_for_epochs
from lightning.pytorch.callbacks import Callback

from barloc.training import fit
from barloc.training.resume import checkpoint_epochs

CPU = {"accelerator": "cpu", "devices": 1, "precision": "32-true", "threads": 1}
EPOCHS = 6


def _frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """DNA sequences whose base composition leans towards one base per class."""
    labels = rng.choice(["a", "b", "c"], size=n)
    seqs = []
    for lab in labels:
        p = np.full(4, 0.25)
        p["abc".index(lab)] += 0.15
        seqs.append("".join(rng.choice(list("ACGT"), size=int(rng.integers(40, 90)), p=p / p.sum())))
    return pd.DataFrame({"sequence": seqs, "label": labels})


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return _frame(rng, 300), _frame(rng, 90)


def _cfg(**train):
    return {
        "kind": "multiclass",
        "alphabet": "dna",
        "encoder": {"type": "cnn", "embed_dim": 8, "channels": 8, "kernel_sizes": [3, 5], "dropout": 0.3},
        "loss": {"type": "cross_entropy"},
        # Dropout, shuffling and a long patience: every epoch depends on all the state a
        # resume has to bring back (weights, optimizer, RNG, sampler epoch, early stopping).
        "train": {"max_epochs": EPOCHS, "batch_size": 32, "lr": 0.01, "patience": 10, "monitor": "val_loss"} | train,
    }


class Killed(RuntimeError):
    pass


class KillAt(Callback):
    """Dies as epoch ``k`` starts, after epoch k-1's checkpoint was written."""

    def __init__(self, k: int) -> None:
        self.k = k

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.k:
            raise Killed(f"killed at the start of epoch {self.k}")


class Epochs(Callback):
    """The epochs this call really trained."""

    def __init__(self) -> None:
        self.trained: list[int] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.trained.append(trainer.current_epoch)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_killed_training_resumes_at_the_next_epoch_and_ends_as_an_uninterrupted_one(data, tmp_path, caplog):
    train, val = data
    ref, ref_meta, ref_hist = fit(train, val, _cfg(), CPU, 3, "t")

    ck = tmp_path / "checkpoints"
    with pytest.raises(Killed):
        fit(train, val, _cfg(), CPU, 3, "t", checkpoint_dir=ck, callbacks=(KillAt(3),))
    assert (ck / "last.ckpt").exists() and checkpoint_epochs(ck / "last.ckpt") == 3

    epochs = Epochs()
    with caplog.at_level(logging.INFO, logger="barloc.training"):
        model, meta, hist = fit(train, val, _cfg(), CPU, 3, "t", checkpoint_dir=ck, callbacks=(epochs,))
    assert "resuming t from" in caplog.text and "(epoch 3 done)" in caplog.text
    assert epochs.trained == [3, 4, 5]  # epochs 0-2 were not trained again
    assert [r["epoch"] for r in hist] == list(range(EPOCHS))
    pd.testing.assert_frame_equal(pd.DataFrame(hist), pd.DataFrame(ref_hist))
    assert _same_weights(model, ref)
    assert meta.epochs == ref_meta.epochs and meta.best_epoch == ref_meta.best_epoch
    assert not ck.exists(), "checkpoints are removed once training has finished"


def test_checkpoints_of_another_training_are_not_resumed(data, tmp_path, caplog):
    train, val = data
    ck = tmp_path / "checkpoints"
    with pytest.raises(Killed):
        fit(train, val, _cfg(), CPU, 3, "t", checkpoint_dir=ck, callbacks=(KillAt(2),))
    ref, _, ref_hist = fit(train, val, _cfg(lr=0.02), CPU, 3, "t")

    epochs = Epochs()
    with caplog.at_level(logging.INFO, logger="barloc.training"):
        model, _, hist = fit(train, val, _cfg(lr=0.02), CPU, 3, "t", checkpoint_dir=ck, callbacks=(epochs,))
    assert "written for other data or settings; starting over" in caplog.text
    assert epochs.trained == list(range(EPOCHS))
    pd.testing.assert_frame_equal(pd.DataFrame(hist), pd.DataFrame(ref_hist))
    assert _same_weights(model, ref)


def test_an_unreadable_last_checkpoint_starts_over(data, tmp_path, caplog):
    train, val = data
    ck = tmp_path / "checkpoints"
    with pytest.raises(Killed):
        fit(train, val, _cfg(), CPU, 3, "t", checkpoint_dir=ck, callbacks=(KillAt(2),))
    last = ck / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # cut off mid-write
    epochs = Epochs()
    with caplog.at_level(logging.INFO, logger="barloc.training"):
        fit(train, val, _cfg(), CPU, 3, "t", checkpoint_dir=ck, callbacks=(epochs,))
    assert "last.ckpt does not load" in caplog.text and epochs.trained == list(range(EPOCHS))


# --- the workflow: kill the train job's process, Snakemake's retry resumes it ---------------


@pytest.mark.slow
def test_workflow_retry_of_a_killed_train_job_resumes(tmp_path):
    from test_workflow import REPO, SNAKEMAKE, make_workdir

    def only_localization(cfg, wd):
        task = cfg["tasks"]["localization"]
        task["train"] = {**task["train"], "max_epochs": 12, "patience": 12}
        cfg["tasks"] = {"localization": task}

    wd = make_workdir(tmp_path, only_localization)
    # killed in the second fold model: the first one is kept, the second resumes
    ck = wd / "results/localization/checkpoints/fold1/last.ckpt"
    cmd = SNAKEMAKE + [
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(wd),
        "--cores",
        "1",
        "--retries",
        "1",
        "results/localization/model.ckpt",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    killed = None
    try:
        done = wait_for_epochs(ck, 2, proc)
        if done >= 2:
            train_jobs = [
                p
                for p in psutil.Process(proc.pid).children(recursive=True)
                if any(a.endswith(".train.py") for a in p.cmdline())
            ]
            for p in train_jobs:  # the job's Python process, as a time limit would end it
                p.send_signal(signal.SIGKILL)
            killed = done if train_jobs else None
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed is not None, "training ended before it could be killed:\n" + out[-3000:]
    assert proc.returncode == 0, out[-4000:]
    assert "Trying to restart job" in out or "attempt: 2" in out, out[-3000:]
    log = (wd / "results/logs/localization/train.log").read_text()
    assert "localization fold 0: finished before, not retrained" in log, log[-3000:]
    assert "resuming localization fold 1 from" in log, log[-3000:]
    resumed_at = int(log.split("resuming localization fold 1 from")[1].split("(epoch ")[1].split(" done")[0])
    assert resumed_at >= killed
    history = pd.read_csv(wd / "results/localization/history.tsv", sep="\t")
    for _, rows in history.groupby("fold"):
        assert list(rows["epoch"]) == list(range(12))
    assert not ck.parent.parent.exists()
