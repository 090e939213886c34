"""The loss ablation (class weighting, focal loss) and the report's sentence about it.

The pipeline test uses synthetic barcodes (random DNA with a planted class motif, see
tests/test_soft_targets.py), named so in the file names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace as NS

import pandas as pd
import pytest
import torch
from test_soft_targets import _pipeline, synthetic_cfg, synthetic_inputs

from barloc.report.html import _ablation_section, render_report
from barloc.steps import ablation

WORDS = {"thing": "basin", "things": "basins", "nouns": "barcodes"}


def fake_ablation(ba=(0.47, 0.52, 0.41), ece=(0.085, 0.092, 0.157), rare=(0.20, 0.35, 0.10)) -> dict:
    variants = {}
    for i, name in enumerate(ablation.VARIANTS):
        variants[name] = {
            "balanced_accuracy": ba[i],
            "accuracy": 0.6,
            "ece": ece[i],
            "nll": 1.0,
            "recall": {"Atlantic": 0.8, "Indian": rare[i], "Pacific": 0.5},
        }
    return {
        "variants": variants,
        "n_test": 150,
        "test_support": {"Atlantic": 90, "Indian": 20, "Pacific": 40},
        "differences": {
            "class_weights": {"balanced_accuracy": ba[1] - ba[0], "ci_low": -0.03, "ci_high": 0.12},
            "focal": {"balanced_accuracy": ba[2] - ba[0], "ci_low": -0.14, "ci_high": 0.01},
        },
    }


def test_the_sentence_says_what_each_option_changed():
    sec = _ablation_section(fake_ablation(), WORDS, Path("results/fish_origin/ablation.json"))
    s = sec["sentence"]
    assert s.count(". ") == 0 and s.endswith(".")  # one sentence
    assert (
        "weighting the basins by rarity raised balanced accuracy (the share of each basin's test barcodes called right, "
        "averaged over basins) from 47% to 52%"
    ) in s
    assert "the rarest basin, Indian, went from 20% to 35% of its test barcodes called right" in s
    assert (
        "raised calibration error (the gap between stated confidence and how often calls are right) from 8% to 9%"
    ) in s  # ECE 0.085 -> 0.092, whole percent
    assert "focal loss lowered balanced accuracy to 41% and raised calibration error to 16%" in s
    assert "150 test barcodes" in sec["chance"] and "class weighting -3 to +12 points" in sec["chance"]
    assert "focal loss -14 to +1 points" in sec["chance"]


def test_unchanged_figures_are_called_unchanged():
    s = _ablation_section(fake_ablation(ba=(0.47, 0.471, 0.47), ece=(0.08, 0.08, 0.08)), WORDS, Path("a.json"))[
        "sentence"
    ]
    assert (
        "left balanced accuracy (the share of each basin's test barcodes called right, averaged over basins) at 47%"
        in s
    )
    assert "right) at 8%" in s and "focal loss left balanced accuracy at 47%" in s


def test_missing_or_partial_ablation_is_stated():
    assert _ablation_section(None, WORDS, Path("x/ablation.json"))["state"] == "missing"
    assert _ablation_section({"variants": {"cross_entropy": {}}}, WORDS, Path("x.json"))["state"] == "missing"


def test_variant_losses_follow_the_task():
    v = ablation.variant_losses(
        {"type": "focal", "gamma": 1.5, "class_weights": "effective", "beta": 0.99, "label_smoothing": 0.05}
    )
    assert v["cross_entropy"] == {
        "type": "cross_entropy",
        "class_weights": "none",
        "label_smoothing": 0.05,
        "beta": 0.99,
    }
    assert v["class_weights"]["class_weights"] == "effective" and v["class_weights"]["type"] == "cross_entropy"
    assert v["focal"] == {"type": "focal", "gamma": 1.5, "class_weights": "none", "label_smoothing": 0.05, "beta": 0.99}
    assert ablation.variant_losses({})["class_weights"]["class_weights"] == "inverse"


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """Imbalanced synthetic barcodes (90 / 30 / 15 per class, a short motif) through the
    workflow's steps, then the ablation step on the same split."""
    where = tmp_path_factory.mktemp("synthetic_ablation")
    ref, labels = synthetic_inputs(where, sizes=(90, 30, 15), seed=1, motif_len=6)
    cfg = synthetic_cfg(ref, labels, max_epochs=6)
    cfg["train"]["patience"] = 6
    files = _pipeline(cfg, where)
    params = NS(
        task="synthetic_origin", cfg=cfg, seed=5, trainer={"accelerator": "cpu", "devices": 1, "precision": "32-true"}
    )
    out = where / "ablation.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ablation.run(NS(records=files["records.parquet"], splits=files["splits.tsv"]), NS(ablation=str(out)), params)
    finally:
        torch.set_num_threads(threads)
    return files, json.loads(out.read_text()), where


def test_ablation_step_measures_each_loss(synthetic_run):
    files, result, _ = synthetic_run
    metrics = json.loads(Path(files["metrics.json"]).read_text())
    assert list(result["variants"]) == list(ablation.VARIANTS)
    assert result["n_test"] == metrics["n_test"]
    # One model per variant: the first cross-fitting fold early-stops and calibrates it, the
    # other folds train it, and the workflow's test split scores it.
    splits = pd.read_csv(files["splits.tsv"], sep="\t")
    assert result["n_train"] == int(((splits["split"] == "train") & (splits["fold"] != 0)).sum())
    cw = result["variants"]["class_weights"]
    ce, fo = result["variants"]["cross_entropy"], result["variants"]["focal"]
    assert (ce["nll"], ce["ece"]) != (cw["nll"], cw["ece"]) != (fo["nll"], fo["ece"])  # the options do change the model
    for name in ("class_weights", "focal"):
        d = result["differences"][name]
        assert d["ci_low"] <= d["balanced_accuracy"] <= d["ci_high"]
        assert d["balanced_accuracy"] == pytest.approx(
            result["variants"][name]["balanced_accuracy"] - ce["balanced_accuracy"]
        )


def test_report_shows_the_ablation_sentence(synthetic_run):
    files, result, where = synthetic_run
    html = render_report({"synthetic_origin": where}, {"date": "2025-01-01"})
    m = re.search(
        r'<h4 id="task-synthetic_origin-ablation">What class weighting and focal loss change</h4>\s*'
        r'<p class="plain-sentence">([^<]+)</p>',
        html,
    )
    assert m, "ablation sentence missing from the report"
    sentence = m.group(1)
    assert sentence.startswith(
        "Retrained on this run&#39;s split with only the loss changed, weighting the classes by rarity"
    )
    ce = result["variants"]["cross_entropy"]["balanced_accuracy"]
    assert f"{ce * 100:.0f}%" in sentence and "focal loss" in sentence
    assert "ablation.json" in html


def test_workflow_report_says_what_the_loss_options_change(workflow_run):
    """The real workflow (tests/integration/config.yaml, the bundled tuna barcodes): the
    ablation rule runs for the multiclass task only, and the page carries its sentence."""
    result = json.loads((workflow_run / "results/fish_origin/ablation.json").read_text())
    assert list(result["variants"]) == list(ablation.VARIANTS)
    assert not (workflow_run / "results/localization/ablation.json").exists()
    metrics = json.loads((workflow_run / "results/fish_origin/metrics.json").read_text())
    # The integration config's loss is class-weighted CE: the same model as the train rule's.
    assert result["variants"]["class_weights"]["balanced_accuracy"] == metrics["calibrated"]["balanced_accuracy"]
    html = (workflow_run / "results/report/index.html").read_text()
    assert html.count("What class weighting and focal loss change") == 1
    assert "weighting the basins by rarity" in html and "while focal loss" in html
