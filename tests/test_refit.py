"""train.refit and train.early_stopping: the calling model retrains on train + val, and
calibration is fitted on the val logits of the first model, which never trained on them.

Sequences are synthetic (random DNA haplotypes, tests/test_nearest.py) except in the last
test, which runs the steps on the bundled real tuna export.
"""

from __future__ import annotations

import json
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pytest
import torch
from test_nearest import TRAINER, synthetic_haplotype_records

from barloc.artifacts import ModelMeta
from barloc.calibrate import fit_for_model, fit_temperature, offsets, weighting_offset
from barloc.data import EncodedDataset, group_ids, predict_logits
from barloc.errors import InputError
from barloc.modelio import load_model
from barloc.steps import predict
from barloc.training import fit, train_for_calls


def cfg(encoder: dict | None = None, **train) -> dict:
    return {
        "kind": "multiclass",
        "alphabet": "dna",
        "encoder": encoder or {"type": "kmer", "k": 3, "hidden": 8, "dropout": 0.0},
        "loss": {"type": "cross_entropy", "class_weights": "inverse"},
        "train": {"max_epochs": 5, "batch_size": 16, "lr": 0.01, "patience": 5, **train},
    }


@pytest.fixture(scope="module")
def parts():
    df = synthetic_haplotype_records()
    held = df["group"].isin(["PROJ9", "PROJ10", "PROJ11", "PROJ8"])
    return df[~held], df[held]


def weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_without_refit_the_calling_model_is_the_validated_one(parts):
    train, val = parts
    trained = train_for_calls(train, val, cfg(), TRAINER, seed=3)
    assert trained.model is trained.val_model and trained.meta.refit is None
    assert trained.meta.n_train == len(train)


def test_early_stopping_off_keeps_the_last_of_max_epochs(parts):
    train, val = parts
    # patience 1 would stop a run whose val metric stalls; without early stopping all 5 epochs run.
    _, meta, history = fit(train, val, cfg(early_stopping=False, patience=1), TRAINER, seed=3)
    assert meta.epochs == 5 and len(history) == 5 and meta.best_epoch == 4 and meta.monitor is None
    assert all(np.isfinite(r["val_loss"]) for r in history)  # val is still scored, for the history


def test_refit_retrains_on_train_and_val_for_the_first_fits_epochs(parts):
    train, val = parts
    c = cfg(refit=True, max_epochs=8, patience=2, monitor="val_loss")
    trained = train_for_calls(train, val, c, TRAINER, seed=3)
    first, first_meta, _ = fit(train, val, c, TRAINER, seed=3)
    # The val model is the plain fit, bit for bit; the calling model is another one.
    assert torch.equal(weights(trained.val_model), weights(first))
    assert not torch.equal(weights(trained.model), weights(first))
    meta = trained.meta
    assert meta.refit["epochs"] == first_meta.best_epoch + 1 == meta.epochs
    assert meta.n_train == len(train) + len(val) and meta.refit["heldout"]["n_train"] == len(train)
    counts = pd.concat([train, val])["label"].value_counts().reindex(meta.classes).tolist()
    assert meta.train_counts == counts


def test_refit_model_can_score_val_itself(parts):
    train, val = parts
    c = cfg(refit=True, early_stopping=False, max_epochs=2) | {"calibration": {"val_scored_by": "refit_model"}}
    trained = train_for_calls(train, val, c, TRAINER, seed=3)
    assert trained.val_model is trained.model and trained.meta.refit["val_scored_by"] == "refit_model"
    fit_offset, offset = offsets(trained.meta)
    assert np.array_equal(fit_offset, offset)  # one model: one class weighting to undo


def test_refit_nearest_references_are_not_doubled(parts):
    train, val = parts
    c = cfg({"type": "nearest", "k": 3, "hidden": 0}, refit=True, early_stopping=False, max_epochs=3, lr=0.03)
    trained = train_for_calls(train, val, c, TRAINER, seed=3)
    assert trained.meta.n_reference == len(train) + len(val)
    assert trained.model.encoder.ref.shape[0] == len(train) + len(val)
    assert sorted(trained.meta.reference_groups) == sorted(pd.concat([train, val])["group"].unique())


def test_calibration_undoes_the_first_models_weighting_and_stores_the_calling_models():
    rng = np.random.default_rng(0)
    zv, yv = rng.normal(size=(200, 2)) * 2, rng.integers(0, 2, 200)
    loss = {"type": "cross_entropy", "class_weights": "inverse"}
    meta = ModelMeta(
        kind="multiclass",
        classes=["a", "b"],
        alphabet="dna",
        encoder={},
        loss=loss,
        train_counts=[10, 30],
        n_train=40,
        train_priors=[0.25, 0.75],
        refit={"heldout": {"train_counts": [5, 25], "n_train": 30, "train_priors": [1 / 6, 5 / 6]}},
    )
    out = fit_for_model(meta, "temperature", zv, yv)
    held = weighting_offset("multiclass", loss, np.array([5, 25]), 30)
    assert np.allclose(out["offset"], weighting_offset("multiclass", loss, np.array([10, 30]), 40))
    assert not np.allclose(out["offset"], held)
    assert out["temperature"] == pytest.approx(fit_temperature(zv + held, yv))
    meta.refit["val_scored_by"] = "refit_model"
    assert fit_for_model(meta, "temperature", zv, yv)["temperature"] == pytest.approx(
        fit_temperature(zv + out["offset"], yv)
    )


def test_workflow_steps_calibrate_on_the_first_models_val_logits(tmp_path):
    """Real data: the bundled tuna export through the steps with refit on. logits.parquet's val
    rows are the first model's (val_logits.parquet), its test rows the calling model's, and a
    val_logits.parquet from another split is refused."""
    from conftest import run_small_pipeline, small_fish_origin_inputs

    task = small_fish_origin_inputs(tmp_path)
    task["train"] = {**task["train"], "refit": True, "early_stopping": False, "max_epochs": 2}
    run_small_pipeline(task, tmp_path, to_evaluate=True)
    model, meta = load_model(tmp_path / "model.ckpt", tmp_path / "model.json")
    assert meta.refit["epochs"] == 2
    logits = pd.read_parquet(tmp_path / "logits.parquet")
    held = pd.read_parquet(tmp_path / "val_logits.parquet")
    cols = [f"logit::{c}" for c in meta.classes]
    val_rows = logits[logits["split"] == "val"].reset_index(drop=True)
    pd.testing.assert_frame_equal(val_rows, held)
    records = pd.read_parquet(tmp_path / "records.parquet")
    test = logits[logits["split"] == "test"]
    seqs = records.set_index("id").loc[test["id"]].reset_index()
    own = predict_logits(
        model,
        EncodedDataset(seqs["sequence"].tolist(), meta.encoder, "dna", groups=group_ids(seqs, meta.reference_groups)),
        64,
    )
    assert np.allclose(test[cols].to_numpy(), own, atol=1e-5)
    # The val logits scored by the calling model differ: it trained on those records.
    vseq = records.set_index("id").loc[held["id"]].reset_index()
    again = predict_logits(model, EncodedDataset(vseq["sequence"].tolist(), meta.encoder, "dna"), 64)
    assert not np.allclose(held[cols].to_numpy(), again, atol=1e-3)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # ~150 test barcodes: perfectly calibrated probabilities would still show a few hundredths.
    assert 0.01 < metrics["calibrated"]["ece_floor"] < 0.3
    stale = tmp_path / "stale.parquet"
    held.iloc[1:].to_parquet(stale)
    with pytest.raises(InputError, match="rerun train"):
        predict.run(
            NS(
                records=str(tmp_path / "records.parquet"),
                splits=str(tmp_path / "splits.tsv"),
                model=str(tmp_path / "model.ckpt"),
                meta=str(tmp_path / "model.json"),
                val_logits=str(stale),
            ),
            NS(logits=str(tmp_path / "again.parquet")),
            NS(cfg=task),
        )
    assert not (tmp_path / "again.parquet").exists()
