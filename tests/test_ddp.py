"""Multi-process (DDP) training on the CPU: two processes with the gloo backend stand in for
two GPUs. Lightning starts the second process by rerunning the script, as it does for a
Snakemake step's script, so these tests run scripts in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from barloc.data import BucketBatchSampler
from test_workflow import REPO, SNAKEMAKE, make_workdir

pytestmark = pytest.mark.slow

# Synthetic data (not real barcodes): two classes told apart by their base composition.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np, pandas as pd
    import lightning as L
    from barloc.steps.train import fit
    from barloc.runtime import process_rank
    from barloc.modelio import save_model

    out = sys.argv[1]
    rng = np.random.default_rng(0)
    def synthetic(n, gc):
        return ["".join(rng.choice(list("ACGT"), 60, p=[(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])) for _ in range(n)]
    seqs = synthetic(100, 0.3) + synthetic(101, 0.7)
    df = pd.DataFrame({"sequence": seqs, "label": ["at_rich"] * 100 + ["gc_rich"] * 101})
    train, val = df.iloc[::2].reset_index(drop=True), df.iloc[1::2].reset_index(drop=True)
    cfg = {"kind": "multiclass", "alphabet": "dna", "encoder": {"type": "kmer", "k": 2, "hidden": 8},
           "loss": {"type": "cross_entropy"}, "train": {"max_epochs": 3, "batch_size": 8, "patience": 5}}

    class Seen(L.Callback):
        def __init__(self):
            self.batches = []
        def on_train_batch_start(self, trainer, module, batch, idx):
            self.batches.append([trainer.current_epoch, batch["index"].tolist()])

    seen = Seen()
    trainer_cfg = {"accelerator": "cpu", "devices": int(sys.argv[2]), "strategy": sys.argv[3], "threads": 1}
    model, meta, history = fit(train, val, cfg, trainer_cfg, seed=3, task="synthetic",
                               checkpoint_dir=os.path.join(out, "checkpoints"), callbacks=(seen,))
    rank = process_rank()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump({"batches": seen.batches, "world_size": meta["world_size"]}, fh)
    if rank == 0:
        save_model(model, meta, os.path.join(out, "model.ckpt"), os.path.join(out, "model.json"))
    """
)


def _train(tmp_path: Path, devices: int, strategy: str) -> Path:
    out = tmp_path / f"{devices}-{strategy}"
    out.mkdir()
    script = tmp_path / "train_synthetic.py"
    script.write_text(SCRIPT)
    res = subprocess.run([sys.executable, str(script), str(out), str(devices), strategy],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
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


def test_trains_to_the_same_weights_twice(tmp_path):
    """DDP on the CPU is as reproducible as one process: same seed, same weights."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    ma, mb = _train(a, 2, "ddp"), _train(b, 2, "ddp")
    wa, wb = (torch.load(m / "model.ckpt", weights_only=True) for m in (ma, mb))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.loads((ma / "model.json").read_text())["best_epoch"] == json.loads((mb / "model.json").read_text())["best_epoch"]


def test_workflow_train_rule_with_two_processes(tmp_path):
    """Snakemake runs the train step's script; Lightning reruns that script for rank 1."""

    def two_devices(cfg, wd):
        cfg["trainer"].update({"devices": 2, "strategy": "ddp", "threads": 2})
        cfg["tasks"] = {"fish_origin": cfg["tasks"]["fish_origin"]}

    wd = make_workdir(tmp_path, two_devices)
    res = subprocess.run(SNAKEMAKE + ["-s", str(REPO / "Snakefile"), "--directory", str(wd), "--cores", "2",
                                      "results/fish_origin/model.json"], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    meta = json.loads((wd / "results/fish_origin/model.json").read_text())
    assert meta["world_size"] == 2
    history = pd.read_csv(wd / "results/fish_origin/history.tsv", sep="\t")
    assert len(history) == meta["epochs"] and history["train_loss"].notna().all()
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
    res = subprocess.run(SNAKEMAKE + ["-s", str(REPO / "Snakefile"), "--directory", str(wd), "--cores", "1",
                                      "results/fish_origin/model.json"], capture_output=True, text=True, timeout=900)
    assert res.returncode != 0
    assert "barloc: error: trainer.num_nodes is 2, but this training process was not started by Slurm" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (wd / "results/fish_origin/model.ckpt").exists()
    assert yaml.safe_load((wd / "config/config.yaml").read_text())["trainer"]["num_nodes"] == 2
