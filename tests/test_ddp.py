"""Multi-process (DDP) training on the CPU: two processes with the gloo backend stand in for
two GPUs. Lightning starts the second process by rerunning the script, as it does for a
Snakemake step's script, so these tests run scripts in subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import wait_for_epochs
from test_workflow import REPO, SNAKEMAKE, make_workdir

from barloc.data import BucketBatchSampler

pytestmark = pytest.mark.slow

# Synthetic data (not real barcodes): two classes told apart by their base composition.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np, pandas as pd
    import lightning as L
    from barloc.training import fit
    from barloc.runtime import process_rank, setup_logging
    from barloc.modelio import save_model

    out = sys.argv[1]
    setup_logging()
    rng = np.random.default_rng(0)
    def synthetic(n, gc):
        return ["".join(rng.choice(list("ACGT"), 60, p=[(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])) for _ in range(n)]
    seqs = synthetic(100, 0.3) + synthetic(101, 0.7)
    df = pd.DataFrame({"sequence": seqs, "label": ["at_rich"] * 100 + ["gc_rich"] * 101})
    train, val = df.iloc[::2].reset_index(drop=True), df.iloc[1::2].reset_index(drop=True)
    cfg = {"kind": "multiclass", "alphabet": "dna", "encoder": {"type": "kmer", "k": 2, "hidden": 8},
           "loss": {"type": "cross_entropy"}, "train": {"max_epochs": int(sys.argv[4]), "batch_size": 8, "patience": 50}}

    class Seen(L.Callback):
        def __init__(self):
            self.batches = []
        def on_train_batch_start(self, trainer, module, batch, idx):
            self.batches.append([trainer.current_epoch, batch["index"].tolist()])
        def on_train_epoch_end(self, trainer, module):
            time.sleep(float(sys.argv[5]))  # time for a test to kill the run mid-training

    seen = Seen()
    trainer_cfg = {"accelerator": "cpu", "devices": int(sys.argv[2]), "strategy": sys.argv[3], "threads": 1}
    model, meta, history = fit(train, val, cfg, trainer_cfg, seed=3, task="synthetic",
                               checkpoint_dir=os.path.join(out, "checkpoints"), callbacks=(seen,))
    rank = process_rank()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump({"batches": seen.batches, "world_size": meta.world_size}, fh)
    if rank == 0:
        save_model(model, meta, os.path.join(out, "model.ckpt"), os.path.join(out, "model.json"))
    """
)


def _train(tmp_path: Path, devices: int, strategy: str, epochs: int = 3, sleep: float = 0.0) -> Path:
    out = tmp_path / f"{devices}-{strategy}"
    out.mkdir(exist_ok=True)
    script = tmp_path / "train_synthetic.py"
    script.write_text(SCRIPT)
    res = subprocess.run(
        [sys.executable, str(script), str(out), str(devices), strategy, str(epochs), str(sleep)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    return out


def test_two_processes_split_every_epoch_between_them(tmp_path):
    out = _train(tmp_path, 2, "ddp")
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # Only the first process wrote the model, and its checkpoints folder is gone.
    assert json.loads((out / "model.json").read_text())["world_size"] == 2
    assert not (out / "checkpoints").exists()
    n_train, bs = 101, 8
    whole = list(BucketBatchSampler([1] * n_train, bs, shuffle=True, seed=3))
    per_rank = -(-len(whole) // 2)
    for epoch in range(3):
        mine = [[b for e, b in r["batches"] if e == epoch] for r in ranks]
        # Equal step counts (or the all-reduce would hang) and together every record.
        assert [len(m) for m in mine] == [per_rank, per_rank]
        assert {i for m in mine for b in m for i in b} == set(range(n_train))
        assert not {i for b in mine[0] for i in b} & {i for b in mine[1][: len(whole) // 2] for i in b}


def test_killed_two_process_run_resumes_to_the_same_weights(tmp_path):
    """Both processes killed mid-training (as Slurm does at a time limit); a rerun resumes
    from last.ckpt and ends with the weights of an uninterrupted run (so DDP on the CPU is
    also as reproducible as one process)."""
    (tmp_path / "whole").mkdir()
    whole = _train(tmp_path / "whole", 2, "ddp", epochs=6)
    run = tmp_path / "killed"
    run.mkdir()
    out = run / "2-ddp"
    out.mkdir()
    (run / "train_synthetic.py").write_text(SCRIPT)
    cmd = [sys.executable, str(run / "train_synthetic.py"), str(out), "2", "ddp", "6", "1.0"]
    proc = subprocess.Popen(cmd, cwd=run, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = wait_for_epochs(out / "checkpoints/last.ckpt", 2, proc, timeout=300)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= done < 6 and not (out / "model.ckpt").exists(), done
    res = subprocess.run(cmd[:-1] + ["0"], capture_output=True, text=True, timeout=600, cwd=run)
    assert res.returncode == 0, res.stderr[-4000:]
    assert re.search(r"resuming synthetic from \S+last.ckpt \(epoch \d done\)", res.stderr), res.stderr[-3000:]
    wa, wb = (torch.load(m / "model.ckpt", weights_only=True) for m in (whole, out))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_workflow_train_rule_with_two_processes(tmp_path):
    """Snakemake runs the train step's script; Lightning reruns that script for rank 1."""

    def two_devices(cfg, wd):
        cfg["trainer"].update({"devices": 2, "strategy": "ddp", "threads": 2})
        cfg["tasks"] = {"fish_origin": cfg["tasks"]["fish_origin"]}

    wd = make_workdir(tmp_path, two_devices)
    res = subprocess.run(
        SNAKEMAKE
        + ["-s", str(REPO / "Snakefile"), "--directory", str(wd), "--cores", "2", "results/fish_origin/model.json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    meta = json.loads((wd / "results/fish_origin/model.json").read_text())
    assert meta["world_size"] == 2
    history = pd.read_csv(wd / "results/fish_origin/history.tsv", sep="\t")
    # one row per epoch of each cross-fitting fold model
    per_fold = history.groupby("fold").size().tolist()
    assert per_fold == [f["epochs"] for f in meta["crossfit"]["folds"]] and history["train_loss"].notna().all()
    # Rank 0 owns the rule's log (rank 1 opening it would truncate it); rank 1 logs to stderr.
    log = (wd / "results/logs/fish_origin/train.log").read_text()
    assert "train: start" in log and "(2 processes, rank 0)" in log and "[rank 1]" not in log
    assert "[rank 1]: trained" in res.stderr
    assert not (wd / "results/fish_origin/checkpoints").exists()


def test_more_than_one_node_needs_processes_started_by_slurm(tmp_path):
    def two_nodes(cfg, wd):
        cfg["trainer"].update({"devices": 1, "num_nodes": 2, "strategy": "ddp"})
        cfg["tasks"] = {"fish_origin": cfg["tasks"]["fish_origin"]}

    wd = make_workdir(tmp_path, two_nodes)
    res = subprocess.run(
        SNAKEMAKE
        + ["-s", str(REPO / "Snakefile"), "--directory", str(wd), "--cores", "1", "results/fish_origin/model.json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode != 0
    assert "barloc: error: trainer.num_nodes is 2, but this training process was not started by Slurm" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (wd / "results/fish_origin/model.ckpt").exists()
    assert yaml.safe_load((wd / "config/config.yaml").read_text())["trainer"]["num_nodes"] == 2


def test_trainer_settings_pick_who_starts_the_processes(monkeypatch):
    from lightning.fabric.plugins.environments import LightningEnvironment

    from barloc.errors import InputError
    from barloc.training import trainer_settings

    for key in ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    one = trainer_settings({"accelerator": "cpu", "threads": 1})
    assert "plugins" not in one and one["use_distributed_sampler"] is False
    two = trainer_settings({"accelerator": "cpu", "devices": 2, "strategy": "ddp", "threads": 1})
    assert [type(p) for p in two["plugins"]] == [LightningEnvironment]
    # The Slurm plugin's job step: one task, so Lightning still starts the second process.
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert "plugins" in trainer_settings({"accelerator": "cpu", "devices": 2, "threads": 1})
    # srun started one task per device: Lightning's SLURMEnvironment takes over.
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert "plugins" not in trainer_settings({"accelerator": "cpu", "devices": 2, "num_nodes": 2, "threads": 1})
    # More GPUs asked for than the job was given: one line, not Lightning's traceback.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(
        InputError, match=r"trainer.devices is 2, but this job sees 1 GPU\(s\) \(CUDA_VISIBLE_DEVICES=0\)"
    ):
        trainer_settings({"accelerator": "gpu", "devices": 2, "threads": 1})
    assert trainer_settings({"accelerator": "gpu", "devices": 1, "threads": 1})["precision"] == "bf16-mixed"
