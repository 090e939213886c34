"""Same seed, same inputs, same CPU: split, train and predict give bit-for-bit the same files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from barloc.artifacts import LOGIT


def test_records_and_splits_are_byte_identical(small_runs):
    one, two, _ = small_runs
    for name in ("records.parquet", "splits.tsv"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_model_weights_are_identical(small_runs):
    one, two, _ = small_runs
    a = torch.load(one / "model.ckpt", weights_only=True)
    b = torch.load(two / "model.ckpt", weights_only=True)
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_logits_are_bit_for_bit_identical(small_runs):
    one, two, _ = small_runs
    la, lb = pd.read_parquet(one / "logits.parquet"), pd.read_parquet(two / "logits.parquet")
    cols = [c for c in la.columns if c.startswith(LOGIT)]
    assert len(cols) >= 3 and set(la["split"]) == {"val", "test", "query"}
    za, zb = la[cols].to_numpy(), lb[cols].to_numpy()
    assert za.dtype == np.float32 or za.dtype == np.float64
    # Exact equality of the bits, not closeness: -0.0 vs 0.0 or a NaN payload would show here.
    assert za.tobytes() == zb.tobytes()
    assert la.drop(columns=cols).equals(lb.drop(columns=cols))
    assert (one / "logits.parquet").read_bytes() == (two / "logits.parquet").read_bytes()


def test_history_is_identical(small_runs):
    one, two, _ = small_runs
    assert (one / "history.tsv").read_bytes() == (two / "history.tsv").read_bytes()


def test_a_different_seed_changes_the_model(small_runs, tmp_path):
    """The check above is not vacuous: the seed does reach the initialisation."""
    from conftest import run_small_pipeline

    one, _, cfg = small_runs
    cfg = {**cfg, "train": {**cfg["train"], "max_epochs": 1}}
    other = run_small_pipeline(cfg, tmp_path, seed=12)
    a = torch.load(one / "model.ckpt", weights_only=True)
    b = torch.load(other / "model.ckpt", weights_only=True)
    assert any(not torch.equal(a[k], b[k]) for k in a)
