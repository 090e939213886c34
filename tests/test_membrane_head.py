"""The optional membrane/soluble head (membrane_head: true): trained beside the location heads,
calibrated and scored on its own, never mixed into the location metrics."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pytest
import torch

from barloc import extra_heads
from barloc.config import check_config
from barloc.errors import InputError
from barloc.modelio import build_model, load_model
from conftest import REPO, run_small_pipeline, small_localization_inputs

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _meta(extra=("membrane",)):
    return {"kind": "multilabel", "classes": ["a", "b", "c"], "alphabet": "protein",
            "encoder": {"type": "cnn", "embed_dim": 4, "channels": 4, "kernel_sizes": [3]},
            "loss": {"type": "bce"}, "train_counts": [3, 3, 3], "n_train": 9, "extra_heads": list(extra)}


def test_unknown_flags_are_left_out_of_the_membrane_loss():
    z = torch.tensor([[2.0], [-1.0], [5.0], [-7.0]])
    y = torch.tensor([[1.0], [0.0], [float("nan")], [float("nan")]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(z[:2], y[:2])
    assert torch.allclose(extra_heads.masked_bce(z, y), expected)
    assert extra_heads.masked_bce(z, torch.full_like(y, float("nan"))) == 0

    torch.manual_seed(0)
    model = build_model(_meta()).eval()
    batch = {"tokens": torch.randint(1, 20, (4, 12))}
    target = torch.tensor([[1, 0, 0, 1.0], [0, 1, 0, 0.0], [0, 0, 1, float("nan")], [1, 1, 0, float("nan")]])
    loss, logits, main = model._loss(batch | {"target": target})
    _, extra = model.forward_all(batch)
    assert logits.shape == (4, 3) and torch.equal(main, target[:, :3])
    assert torch.allclose(loss, model.loss_fn(logits, main) + extra_heads.masked_bce(extra, target[:, 3:]))
    loss.backward()
    assert model.extra_head.weight.grad.abs().sum() > 0
    # forward() stays the location logits; the view adds the membrane logit from the same pass
    both = extra_heads.WithExtraHeads(model)(batch)
    assert both.shape == (4, 4) and torch.allclose(both[:, :3], model(batch))


def test_without_the_head_the_model_is_unchanged():
    model = build_model(_meta(extra=()))
    assert model.extra_head is None and not any(k.startswith("extra_head") for k in model.state_dict())


def test_membrane_head_needs_a_multilabel_task_and_flags():
    with pytest.raises(InputError, match="only multilabel"):
        extra_heads.heads({"kind": "multiclass", "membrane_head": True})
    with pytest.raises(InputError, match="no record has a membrane flag"):
        extra_heads.check_columns(pd.DataFrame({"membrane": [np.nan, np.nan]}), ["membrane"], "x")
    base = {"kind": "multilabel", "alphabet": "protein", "reference": "x.csv", "format": "deeploc"}
    ok = {"seed": 1, "trainer": {"threads": 1}, "tasks": {"loc": base | {"membrane_head": True, "loss": {"membrane_weight": 0.5}}}}
    check_config(ok, SCHEMA)
    with pytest.raises(InputError, match="membrane_head"):
        check_config({**ok, "tasks": {"loc": base | {"membrane_head": "yes"}}}, SCHEMA)


def test_pipeline_writes_membrane_logits_calibration_and_separate_metrics(tmp_path):
    from barloc.steps import calibrate, evaluate, prior_shift

    cfg = small_localization_inputs(tmp_path / "inputs")
    cfg |= {"membrane_head": True, "calibration": {"method": "bcts"}, "prior_shift": {"method": "none"},
            "train": cfg["train"] | {"max_epochs": 1}}
    out = run_small_pipeline(cfg, tmp_path / "run")
    f = {n: str(out / n) for n in ("model.ckpt", "model.json", "logits.parquet", "calibration.json", "priors.json",
                                   "calls.tsv", "metrics.json")}
    params = NS(task="localization", cfg=cfg, seed=11)
    calibrate.run(NS(meta=f["model.json"], logits=f["logits.parquet"]), NS(calibration=f["calibration.json"]), params)
    prior_shift.run(NS(meta=f["model.json"], calibration=f["calibration.json"], logits=f["logits.parquet"]),
                    NS(priors=f["priors.json"], calls=f["calls.tsv"]), params)
    evaluate.run(NS(meta=f["model.json"], calibration=f["calibration.json"], logits=f["logits.parquet"],
                    priors=f["priors.json"]), NS(metrics=f["metrics.json"]), params)

    model, meta = load_model(f["model.ckpt"], f["model.json"])
    assert meta["extra_heads"] == ["membrane"] and model.extra_head.out_features == 1
    logits = pd.read_parquet(f["logits.parquet"])
    assert {"extra::membrane", "membrane"} <= set(logits.columns)
    assert sum(c.startswith("logit::") for c in logits.columns) == len(meta["classes"])
    calib = json.loads(Path(f["calibration.json"]).read_text())
    assert set(calib["extra_heads"]["membrane"]) == {"temperature", "bias", "threshold", "n_val"}
    assert len(calib["thresholds"]) == len(meta["classes"])
    metrics = json.loads(Path(f["metrics.json"]).read_text())
    m = metrics["extra_heads"]["membrane"]
    test = logits[logits["split"] == "test"]
    assert m["n"] == len(test) and m["positives"] == int(test["membrane"].sum())
    assert -1 <= m["mcc"] <= 1 and 0 <= m["accuracy"] <= 1
    assert "membrane" not in metrics["per_class"] and "Membrane" not in metrics["classes"]
