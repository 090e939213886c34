"""Cross-fitting (barloc.training.crossfit): fold models score the records they never trained
on, the calling model is refit on all of them, and the steps fit post-hoc parameters on those
out-of-fold logits only.

Sequences are synthetic (random DNA haplotypes, tests/test_nearest.py) except in the last
test, which runs the steps on the bundled real tuna export.
"""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pytest
import torch
from test_nearest import TRAINER, synthetic_haplotype_records

from barloc.artifacts import FOLD, OOF, ModelMeta
from barloc.calibrate import fit_for_model, fit_temperature, weighting_offset
from barloc.data import EncodedDataset, group_ids, predict_logits
from barloc.errors import InputError
from barloc.modelio import load_model
from barloc.scoring import model_logits
from barloc.splits import assign_splits
from barloc.steps import predict
from barloc.training import cross_fit, fit
from barloc.training.crossfit import to_calling_model


def cfg(encoder: dict | None = None, **train) -> dict:
    return {
        "kind": "multiclass",
        "alphabet": "dna",
        "encoder": encoder or {"type": "kmer", "k": 3, "hidden": 8, "dropout": 0.0},
        "loss": {"type": "cross_entropy", "class_weights": "inverse"},
        "train": {"max_epochs": 5, "batch_size": 16, "lr": 0.01, "patience": 5, **train},
    }


@pytest.fixture(scope="module")
def data():
    df = synthetic_haplotype_records().reset_index(drop=True)
    groups = sorted(df["group"].unique())
    folds = df["group"].map({g: i % 3 for i, g in enumerate(groups)}).to_numpy()
    return df, folds


@pytest.fixture(scope="module")
def fitted(data):
    df, folds = data
    return cross_fit(df, folds, cfg(max_epochs=6, patience=2, monitor="val_loss"), TRAINER, seed=3)


def weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_every_record_is_scored_once_by_the_fold_model_that_never_saw_it(data, fitted):
    df, folds = data
    oof = fitted.oof.set_index("id").loc[df["id"]]
    assert (oof[FOLD].to_numpy() == folds).all() and (oof["split"] == OOF).all()
    cols = [f"logit::{c}" for c in fitted.meta.classes]
    for k, (model, meta) in enumerate(fitted.members):
        held = folds == k
        assert meta.n_train == int((~held).sum())  # trained on the other folds only
        own = model_logits(model, meta, df[held], 64) + to_calling_model(meta, fitted.meta)
        np.testing.assert_allclose(oof.loc[held, cols].to_numpy(), own, atol=1e-5)


def test_the_calling_model_is_refit_on_all_folds_for_their_mean_epochs(data, fitted):
    df, _ = data
    meta = fitted.meta
    kept = [m.best_epoch + 1 for _, m in fitted.members]
    assert meta.crossfit["refit_epochs"] == round(np.mean(kept)) == meta.epochs
    assert meta.n_train == len(df) and meta.crossfit["n_folds"] == 3
    assert [f["best_epoch"] + 1 for f in meta.crossfit["folds"]] == kept
    assert all(not torch.equal(weights(fitted.model), weights(m)) for m, _ in fitted.members)
    assert {r[FOLD] for r in fitted.history} == {0, 1, 2}


def test_out_of_fold_logits_are_moved_to_the_calling_models_mix_and_weighting(fitted):
    """Unweighted logits carry the training mix; inverse class weights take it out again, so
    a fold model's logits need moving only by what its mix and weighting leave."""
    _, meta = fitted.members[0]
    assert not np.allclose(meta.train_priors, fitted.meta.train_priors)  # the folds' mixes differ
    # inverse weights: log prior + weighting offset is the same constant for every model
    np.testing.assert_allclose(to_calling_model(meta, fitted.meta), 0.0, atol=1e-9)
    plain = dataclasses.replace(meta, loss={**meta.loss, "class_weights": "none"})
    calling = dataclasses.replace(fitted.meta, loss={**fitted.meta.loss, "class_weights": "none"})
    expected = np.log(calling.priors) - np.log(plain.priors)
    np.testing.assert_allclose(to_calling_model(plain, calling), expected - expected.mean(), atol=1e-12)


def test_a_class_a_fold_model_never_saw_keeps_its_logit():
    """Its log prior would be clipped and its class weight counted as 1: no shift for it."""

    def trained_on(counts: list[int]) -> ModelMeta:
        loss = {"type": "cross_entropy", "class_weights": "inverse"}
        n = sum(counts)
        return ModelMeta(
            kind="multiclass", classes=list("abc"), loss=loss, train_counts=counts, n_train=n,
            train_priors=[c / n for c in counts],
        )  # fmt: skip

    shift = to_calling_model(trained_on([30, 10, 0]), trained_on([40, 20, 5]))
    assert np.isfinite(shift).all() and abs(shift[2] - shift[:2].mean()) < 1.0


def test_without_early_stopping_every_model_trains_max_epochs(data):
    df, folds = data
    out = cross_fit(df, folds, cfg(early_stopping=False, max_epochs=2), TRAINER, seed=3)
    assert out.meta.epochs == 2 and all(m.epochs == 2 for _, m in out.members)


def test_one_fold_is_refused(data):
    df, _ = data
    with pytest.raises(InputError, match="at least 2 folds"):
        cross_fit(df, np.zeros(len(df), dtype=int), cfg(), TRAINER, seed=3)


def test_nearest_references_of_the_refit_are_all_records_once(data):
    df, folds = data
    c = cfg({"type": "nearest", "k": 3, "hidden": 0}, early_stopping=False, max_epochs=2, lr=0.03)
    out = cross_fit(df, folds, c, TRAINER, seed=3)
    assert out.meta.n_reference == len(df) and len(out.model.encoder.ref_class) == len(df)
    assert sorted(out.meta.reference_groups) == sorted(df["group"].unique())


def test_early_stopping_off_keeps_the_last_of_max_epochs(data):
    df, folds = data
    train, val = df[folds != 0], df[folds == 0]
    # patience 1 would stop a run whose val metric stalls; without early stopping all 5 epochs run.
    _, meta, history = fit(train, val, cfg(early_stopping=False, patience=1), TRAINER, seed=3)
    assert meta.epochs == 5 and len(history) == 5 and meta.best_epoch == 4 and meta.monitor is None
    assert all(np.isfinite(r["val_loss"]) for r in history)  # val is still scored, for the history


def test_calibration_undoes_the_models_own_weighting():
    rng = np.random.default_rng(0)
    zv, yv = rng.normal(size=(200, 2)) * 2, rng.integers(0, 2, 200)
    loss = {"type": "cross_entropy", "class_weights": "inverse"}
    meta = ModelMeta(
        kind="multiclass", classes=["a", "b"], loss=loss, train_counts=[10, 30], n_train=40, train_priors=[0.25, 0.75]
    )
    out = fit_for_model(meta, "temperature", zv, yv)
    offset = weighting_offset("multiclass", loss, np.array([10, 30]), 40)
    np.testing.assert_allclose(out["offset"], offset)
    # the temperature scales the logits, then the offset puts the training prior back
    assert out["temperature"] == pytest.approx(fit_temperature(zv, yv, offset))
    assert out["offset_after_temperature"]


def test_splits_give_every_non_test_record_a_fold():
    records = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(40)],
            "label": ["a", "b"] * 20,
            "group": [f"g{i % 8}" for i in range(40)],
            "role": "reference",
        }
    )
    grouped = assign_splits(records, {"method": "grouped", "n_folds": 4, "test_fold": 0}, seed=1)
    train = grouped[grouped["split"] == "train"]
    assert grouped.loc[grouped["split"] == "test", FOLD].isna().all()
    assert sorted(train[FOLD].unique()) == [0, 1, 2]
    # given: each non-test group its own fold while there are at most n_folds - 1 of them
    given = assign_splits(records, {"method": "given", "n_folds": 8, "test_groups": ["g0"]}, seed=1)
    rest = given[given["split"] == "train"].merge(records, on="id")
    assert rest.groupby("group")[FOLD].nunique().eq(1).all() and rest[FOLD].nunique() == 7
    # ... and grouped folds of them when there are more
    fewer = assign_splits(records, {"method": "given", "n_folds": 4, "test_groups": ["g0"]}, seed=1)
    rest = fewer[fewer["split"] == "train"].merge(records, on="id")
    assert rest[FOLD].nunique() == 3 and rest.groupby("group")[FOLD].nunique().eq(1).all()
    with pytest.raises(InputError, match="at least 2 groups"):
        assign_splits(records, {"method": "given", "n_folds": 4, "test_groups": [f"g{i}" for i in range(7)]}, 1)


def test_workflow_steps_fit_post_hoc_on_out_of_fold_logits(tmp_path):
    """Real data: the bundled tuna export through the steps. logits.parquet's val rows are the
    fold models' (oof_logits.parquet), its test rows the calling model's, calibration.json says
    which method auto chose, and an oof_logits.parquet from another split is refused."""
    from conftest import run_small_pipeline, small_fish_origin_inputs

    task = small_fish_origin_inputs(tmp_path)
    task["train"] = {**task["train"], "early_stopping": False, "max_epochs": 2}
    task["calibration"] = {"method": "auto"}
    run_small_pipeline(task, tmp_path, to_evaluate=True)
    model, meta = load_model(tmp_path / "model.ckpt", tmp_path / "model.json")
    assert meta.crossfit["refit_epochs"] == 2 and meta.crossfit["n_folds"] == 4
    logits = pd.read_parquet(tmp_path / "logits.parquet")
    held = pd.read_parquet(tmp_path / "oof_logits.parquet")
    cols = [f"logit::{c}" for c in meta.classes]
    val_rows = logits[logits["split"] == OOF].reset_index(drop=True)
    pd.testing.assert_frame_equal(val_rows[held.columns], held, check_dtype=False)
    records = pd.read_parquet(tmp_path / "records.parquet")
    test = logits[logits["split"] == "test"]
    seqs = records.set_index("id").loc[test["id"]].reset_index()
    own = predict_logits(
        model,
        EncodedDataset(seqs["sequence"].tolist(), meta.encoder, "dna", groups=group_ids(seqs, meta.reference_groups)),
        64,
    )
    assert np.allclose(test[cols].to_numpy(), own, atol=1e-5)
    # The calling model trained on the out-of-fold records: its logits for them differ.
    vseq = records.set_index("id").loc[held["id"]].reset_index()
    again = predict_logits(model, EncodedDataset(vseq["sequence"].tolist(), meta.encoder, "dna"), 64)
    assert not np.allclose(held[cols].to_numpy(), again, atol=1e-3)
    calib = json.loads((tmp_path / "calibration.json").read_text())
    choice = calib["choice"]
    assert choice["configured"] == "auto" and calib["method"] == choice["chosen"]
    assert set(choice["candidates"]) == {"none", "temperature", "bcts", "vector"}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["calibration_choice"]["chosen"] == calib["method"]
    priors = json.loads((tmp_path / "priors.json").read_text())
    assert priors["heldout"]["metric"] == "accuracy" and len(priors["heldout"]["folds"]) == 4
    stale = tmp_path / "stale.parquet"
    held.iloc[1:].to_parquet(stale)
    with pytest.raises(InputError, match="rerun train"):
        predict.run(
            NS(
                records=str(tmp_path / "records.parquet"),
                splits=str(tmp_path / "splits.tsv"),
                model=str(tmp_path / "model.ckpt"),
                meta=str(tmp_path / "model.json"),
                oof_logits=str(stale),
            ),
            NS(logits=str(tmp_path / "out.parquet")),
            NS(task="fish_origin", cfg={"train": {"batch_size": 32}}),
        )


def test_workflow_steps_call_by_the_logits_with_the_softmax_term(tmp_path):
    """Real proteins through the steps with loss.softmax_weight: calibration.json says the call
    ratio compares the logits; calls.tsv holds the calls that rule makes of the query's logits
    and metrics.json scores the same rule (prior correction's move: tests/test_calling.py).
    The tiny model's probabilities and logits rank alike, so its calibration is then given a
    bias that puts the commonest location last, and the steps rerun: the two rules now differ."""
    from conftest import STEP_FILES, run_small_pipeline, small_localization_inputs

    from barloc.artifacts import Calibration
    from barloc.calibrate import apply
    from barloc.calling import Caller, split_arrays
    from barloc.config import rule_config, with_defaults
    from barloc.metrics import multilabel_metrics
    from barloc.steps import evaluate, prior_shift

    task = small_localization_inputs(tmp_path / "in")
    task["loss"] = {**task["loss"], "softmax_weight": 1.0}
    task["prior_shift"] = {"method": "none"}
    run_small_pipeline(task, tmp_path, to_evaluate=True)
    meta, calib = ModelMeta.load(tmp_path / "model.json"), Calibration.load(tmp_path / "calibration.json")
    assert calib.call_ratio_on == "logits" and calib.method == "bcts"
    common = int(np.argmax(meta.priors))
    bias = np.asarray(calib.bias, dtype=float)
    bias[common] -= 4.0
    calib = dataclasses.replace(calib, bias=bias.tolist(), call_ratio=0.5)
    calib.save(tmp_path / "calibration.json")
    f = {name: str(tmp_path / name) for name in STEP_FILES}
    full = with_defaults(task)
    ins = NS(
        meta=f["model.json"], calibration=f["calibration.json"], logits=f["logits.parquet"], priors=f["priors.json"]
    )
    prior_shift.run(
        ins,
        NS(priors=f["priors.json"], calls=f["calls.tsv"]),
        NS(task="localization", cfg=rule_config(full, "prior_shift"), seed=1),
    )
    evaluate.run(ins, NS(metrics=f["metrics.json"]), NS(task="localization", cfg=rule_config(full, "evaluate"), seed=1))

    logits = pd.read_parquet(tmp_path / "logits.parquet")
    query = logits[logits["split"] == "query"]
    zq = query[[f"logit::{c}" for c in meta.classes]].to_numpy()
    got = pd.read_csv(tmp_path / "calls.tsv", sep="\t", keep_default_na=False)["call"].tolist()
    assert got == Caller(meta, calib, 0.5).call(query["id"], zq)["call"].tolist()
    by_probs = Caller(meta, dataclasses.replace(calib, call_ratio_on=None), 0.5)
    assert got != by_probs.call(query["id"], zq)["call"].tolist()
    zt, yt = split_arrays(logits, meta, "test")
    cal = apply(zt, "multilabel", calib.params())
    scored = json.loads((tmp_path / "metrics.json").read_text())["calibrated"]["micro_f1"]
    thr, ratio = calib.call_rule(len(meta.classes))
    assert scored == pytest.approx(multilabel_metrics(cal, yt, thr, 15, ratio, zt)["micro_f1"])
    assert scored != pytest.approx(multilabel_metrics(cal, yt, thr, 15, ratio)["micro_f1"])
