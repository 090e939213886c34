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
from conftest import REPO, run_post_hoc, run_small_pipeline, small_localization_inputs

from barloc import extra_heads
from barloc.artifacts import ModelMeta
from barloc.config import check_config, rule_config, with_defaults
from barloc.errors import InputError
from barloc.modelio import build_model, load_model

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _meta(extra=("membrane",)) -> ModelMeta:
    return ModelMeta(
        kind="multilabel",
        classes=["a", "b", "c"],
        alphabet="protein",
        encoder={"type": "cnn", "embed_dim": 4, "channels": 4, "kernel_sizes": [3]},
        loss={"type": "bce"},
        train_counts=[3, 3, 3],
        n_train=9,
        train_priors=[1 / 3] * 3,
        extra_heads=list(extra) or None,
    )


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
    ok = {
        "seed": 1,
        "trainer": {"threads": 1},
        "tasks": {"loc": base | {"membrane_head": True, "loss": {"membrane_weight": 0.5}}},
    }
    check_config(ok, SCHEMA)
    with pytest.raises(InputError, match="membrane_head"):
        check_config({**ok, "tasks": {"loc": base | {"membrane_head": "yes"}}}, SCHEMA)


def test_pipeline_writes_membrane_logits_calibration_and_separate_metrics(tmp_path):
    cfg = small_localization_inputs(tmp_path / "inputs")
    cfg |= {
        "membrane_head": True,
        "calibration": {"method": "bcts"},
        "prior_shift": {"method": "none"},
        "train": cfg["train"] | {"max_epochs": 1},
    }
    out = run_small_pipeline(cfg, tmp_path / "run")
    f = {
        n: str(out / n)
        for n in (
            "model.ckpt",
            "model.json",
            "logits.parquet",
            "calibration.json",
            "priors.json",
            "calls.tsv",
            "metrics.json",
        )
    }
    run_post_hoc(out, cfg, "localization", 11)

    model, meta = load_model(f["model.ckpt"], f["model.json"])
    assert meta.extra_heads == ["membrane"] and model.extra_head.out_features == 1
    logits = pd.read_parquet(f["logits.parquet"])
    assert {"extra::membrane", "membrane"} <= set(logits.columns)
    assert sum(c.startswith("logit::") for c in logits.columns) == len(meta.classes)
    calib = json.loads(Path(f["calibration.json"]).read_text())
    assert set(calib["extra_heads"]["membrane"]) == {"temperature", "bias", "threshold", "n_val"}
    assert len(calib["thresholds"]) == len(meta.classes)
    metrics = json.loads(Path(f["metrics.json"]).read_text())
    m = metrics["extra_heads"]["membrane"]
    test = logits[logits["split"] == "test"]
    assert m["n"] == len(test) and m["positives"] == int(test["membrane"].sum())
    assert -1 <= m["mcc"] <= 1 and 0 <= m["accuracy"] <= 1
    assert "membrane" not in metrics["per_class"] and "Membrane" not in metrics["classes"]

    # calls.tsv: each query protein's calibrated P(membrane) from its stored logit, and its call
    params_m = calib["extra_heads"]["membrane"]
    query = logits[logits["split"] == "query"]
    stored = dict(zip(query["id"], query["extra::membrane"]))
    calls = _read_calls(f["calls.tsv"])
    assert len(calls) == len(query) == 40
    _check_membrane_columns(calls, stored, params_m)

    # barloc predict on the same query file: the same columns and, within float noise of
    # other batch sizes, the same values, with and without EM prior estimation
    from barloc.cli import main

    for extra in ([], ["--estimate-priors"]):
        out_tsv = tmp_path / f"predict{len(extra)}.tsv"
        assert (
            main(
                [
                    "predict",
                    "--model",
                    f["model.ckpt"],
                    "--input",
                    cfg["query"],
                    "--out",
                    str(out_tsv),
                    "--chunk-size",
                    "7",
                    "--quiet",
                    *extra,
                ]
            )
            == 0
        )
        got = _read_calls(out_tsv)
        assert list(got.columns) == list(calls.columns) and got["id"].tolist() == calls["id"].tolist()
        _check_membrane_columns(got, stored, params_m, atol=2e-6)
        np.testing.assert_allclose(got["membrane_prob"], calls["membrane_prob"], atol=2e-6)

    # a model folder whose calibration.json lacks the head's calibration is refused
    stale = tmp_path / "stale"
    stale.mkdir()
    for name in ("model.ckpt", "model.json"):
        (stale / name).write_bytes((out / name).read_bytes())
    (stale / "calibration.json").write_text(json.dumps({k: v for k, v in calib.items() if k != "extra_heads"}))
    assert (
        main(
            [
                "predict",
                "--model",
                str(stale / "model.ckpt"),
                "--input",
                cfg["query"],
                "--out",
                str(tmp_path / "x.tsv"),
                "--quiet",
            ]
        )
        == 2
    )
    assert not (tmp_path / "x.tsv").exists()

    # the report shows the head's section with this run's threshold and counts
    from test_report import SETTINGS, run_info

    from barloc.report import build_report

    build_report({"localization": out}, tmp_path / "index.html", run_info(tmp_path), SETTINGS)
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'id="task-localization-membrane"' in html and "Membrane or soluble" in html
    n_mem = int((calls["membrane_call"] == "membrane").sum())
    assert f"{n_mem} of 40 query proteins called membrane" in html
    assert f"{params_m['threshold'] * 100:.1f}%" in html


# --------------------------------------------------------------------------- membrane head in the outputs


def _platt(z: np.ndarray, params: dict) -> np.ndarray:
    """P(membrane) written out by hand: sigmoid(logit / T + b), the head's Platt scaling."""
    return 1 / (1 + np.exp(-(np.asarray(z, dtype=np.float64) / params["temperature"] + params["bias"])))


def _read_calls(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", keep_default_na=False)


def _check_membrane_columns(calls: pd.DataFrame, logits: dict, params: dict, atol: float = 1e-6) -> None:
    """membrane_prob is the calibrated P(membrane) of each row's stored logit (``logits``: id ->
    extra::membrane) and membrane_call follows the calibration's threshold."""
    assert list(calls.columns[-2:]) == ["membrane_prob", "membrane_call"]
    z = np.array([logits[i] for i in calls["id"]])
    p = _platt(z, params)
    np.testing.assert_allclose(calls["membrane_prob"].to_numpy(float), p, atol=atol)
    want = np.where(p >= params["threshold"], "membrane", "soluble")
    assert calls["membrane_call"].tolist() == want.tolist()


def _synthetic_task(where: Path, head: bool) -> NS:
    """model.json, calibration.json and logits.parquet of a 3-label task, by hand."""
    rng = np.random.default_rng(5)
    where.mkdir(parents=True, exist_ok=True)
    classes = ["a", "b", "c"]
    n = {"val": 20, "test": 20, "query": 30}
    split = [s for s, k in n.items() for _ in range(k)]
    df = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(len(split))],
            "split": split,
            "label": [("a;b" if i % 3 else "c") if s != "query" else None for i, s in enumerate(split)],
        }
    )
    for c in classes:
        df["logit::" + c] = rng.normal(0, 2, len(df))
    df["fold"] = np.arange(len(df)) % 2  # the val rows' cross-fitting folds
    meta = {
        "kind": "multilabel",
        "classes": classes,
        "alphabet": "protein",
        "encoder": {"type": "cnn"},
        "train_priors": [0.4, 0.3, 0.3],
    }
    calib = {
        "kind": "multilabel",
        "classes": classes,
        "method": "temperature",
        "offset": [0.0] * 3,
        "temperature": [1.1, 0.9, 1.3],
        "thresholds": [0.4, 0.5, 0.6],
    }
    if head:
        df["extra::membrane"] = rng.normal(0, 3, len(df))
        df["membrane"] = np.where(df["split"] == "query", np.nan, (rng.random(len(df)) < 0.4).astype(float))
        meta["extra_heads"] = ["membrane"]
        calib["extra_heads"] = {"membrane": {"temperature": 1.7, "bias": -0.4, "threshold": 0.45, "n_val": 20}}
    files = NS(
        meta=str(where / "model.json"),
        calibration=str(where / "calibration.json"),
        logits=str(where / "logits.parquet"),
        priors=str(where / "priors.json"),
        calls=str(where / "calls.tsv"),
    )
    Path(files.meta).write_text(json.dumps(meta))
    Path(files.calibration).write_text(json.dumps(calib))
    df.to_parquet(files.logits, index=False)
    return NS(files=files, df=df, meta=meta, calib=calib)


def test_calls_tsv_has_the_membrane_columns_only_with_the_head(tmp_path):
    from barloc.calibrate import apply
    from barloc.calling import calls_table
    from barloc.steps import prior_shift

    task = with_defaults({"kind": "multilabel", "alphabet": "protein", "prior_shift": {"method": "none"}})
    params = NS(task="localization", cfg=rule_config(task, "prior_shift"), seed=3)
    for head in (False, True):
        t = _synthetic_task(tmp_path / str(head), head)
        prior_shift.run(t.files, t.files, params)
        calls = _read_calls(t.files.calls)
        base = ["id", "call", "probability", "alternatives", "uncertain", "p::a", "p::b", "p::c"]
        q = t.df[t.df["split"] == "query"]
        if not head:
            # Exactly the table calls_table makes (what the step wrote before the head existed).
            want = calls_table(
                q["id"].tolist(),
                apply(q[[f"logit::{c}" for c in "abc"]].to_numpy(), "multilabel", t.calib),
                t.meta["classes"],
                "multilabel",
                0.6,
                np.array(t.calib["thresholds"]),
            )
            assert list(calls.columns) == base
            assert Path(t.files.calls).read_text() == want.to_csv(sep="\t", index=False)
            continue
        assert list(calls.columns) == base + ["membrane_prob", "membrane_call"]
        params_m = t.calib["extra_heads"]["membrane"]
        _check_membrane_columns(calls, dict(zip(q["id"], q["extra::membrane"])), params_m)
        assert {"membrane", "soluble"} == set(calls["membrane_call"])  # the threshold splits this query
    # A model with the head but a calibration without it is refused with a message naming the file.
    t = _synthetic_task(tmp_path / "stale", True)
    Path(t.files.calibration).write_text(json.dumps({k: v for k, v in t.calib.items() if k != "extra_heads"}))
    with pytest.raises(InputError, match="no extra_heads.membrane"):
        prior_shift.run(t.files, t.files, params)


def _report_task(where: Path, head: bool) -> None:
    """The report test's synthetic localization artifacts, with the membrane head's added."""
    from test_report import make_synthetic_task

    make_synthetic_task(where, "localization", "multilabel", seed=2, n_query=33)
    if not head:
        return
    meta, calib, metrics = (
        json.loads((where / f).read_text()) for f in ("model.json", "calibration.json", "metrics.json")
    )
    meta["extra_heads"] = ["membrane"]
    calib["extra_heads"] = {"membrane": {"temperature": 1.3, "bias": 0.2, "threshold": 0.375, "n_val": 50}}
    metrics["extra_heads"] = {
        "membrane": {
            "n": 287,
            "positives": 91,
            "threshold": 0.375,
            "mcc": 0.4412,
            "accuracy": 0.7561,
            "f1": 0.6123,
            "nll": 0.5012,
            "ece": 0.0431,
        }
    }
    for name, d in (("model.json", meta), ("calibration.json", calib), ("metrics.json", metrics)):
        (where / name).write_text(json.dumps(d))
    calls = _read_calls(where / "calls.tsv")
    z = np.random.default_rng(4).normal(0, 2, (len(calls), 1))
    extra_heads.add_call_columns(calls, z, calib["extra_heads"], ["membrane"]).to_csv(
        where / "calls.tsv", sep="\t", index=False
    )


def test_report_has_a_membrane_section_only_with_the_head(tmp_path):
    from test_report import SETTINGS, Page, run_info

    from barloc.report import build_report

    pages = {}
    for head in (False, True):
        root = tmp_path / str(head)
        _report_task(root / "localization", head)
        build_report({"localization": root / "localization"}, root / "index.html", run_info(root), SETTINGS)
        pages[head] = (root / "index.html").read_text(encoding="utf-8")
    off, on = Page(pages[False]), Page(pages[True])
    sid = "task-localization-membrane"
    assert sid not in off.ids() and "Membrane or soluble" not in pages[False] and "membrane_prob" not in pages[False]
    assert sid in on.ids() and f'href="#{sid}"' in pages[True]
    text = on.text(sid)
    assert "Membrane or soluble" in text and "37.5%" in text  # the calibration's threshold
    assert "0.441" in text and "0.756" in text and "287" in text  # metrics.json extra_heads.membrane
    calls = _read_calls(tmp_path / "True" / "localization" / "calls.tsv")
    rows = [a for a, ids in on.find("tr", within="membrane-localization")]
    assert len(rows) == len(calls) + 1  # header + one a query sample
    n_mem = int((calls["membrane_call"] == "membrane").sum())
    assert f"{n_mem} of {len(calls)} query proteins called membrane" in text
    first = calls.iloc[0]
    assert f"{first['membrane_prob'] * 100:.1f}%" in text and first["id"] in text


def test_the_softmax_term_reaches_the_model_and_reads_the_location_columns_only():
    """loss.softmax_weight in model.json trains the model with the term; the membrane flag,
    appended after the locations, never enters it."""
    from barloc.losses import label_softmax_loss, make_loss

    meta = _meta()
    meta.loss = {**meta.loss, "softmax_weight": 1.0}
    torch.manual_seed(0)
    model = build_model(meta).eval()
    batch = {"tokens": torch.randint(1, 20, (3, 12))}
    target = torch.tensor([[1, 0, 0, 1.0], [0, 1, 1, 0.0], [0, 0, 0, float("nan")]])
    loss, logits, main = model._loss(batch | {"target": target})
    _, extra = model.forward_all(batch)
    plain = make_loss("multilabel", {"type": "bce"}, np.array([3.0, 3, 3]), 9)(logits, main)
    term = label_softmax_loss(logits, main)
    assert term > 0
    assert torch.allclose(loss, plain + term + extra_heads.masked_bce(extra, target[:, 3:]))
