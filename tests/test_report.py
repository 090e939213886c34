"""Tests for the HTML report (``barloc.report.build_report``) on synthetic artifacts.

Run ``python tests/test_report.py OUTDIR`` to render the synthetic report for a look.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from barloc.metrics import accuracy_coverage, coverage_at
from barloc.report import build_report, plots
from barloc.report import html as report_html

MULTICLASS = ["Atlantic", "Indian", "Mediterranean", "Pacific"]
MULTILABEL = ["Cytoplasm", "Nucleus", "Extracellular", "Mitochondrion", "Cell membrane"]


# --------------------------------------------------------------------------- synthetic data


def _reliability(rng: np.random.Generator, n_bins: int, bias: float) -> dict:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    conf = (edges[:-1] + edges[1:]) / 2 + rng.uniform(-0.02, 0.02, n_bins)
    acc = np.clip(conf - bias * conf * (1 - conf) * 2 + rng.normal(0, 0.015, n_bins), 0, 1)
    count = rng.integers(20, 200, n_bins)
    count[0] = 0  # an empty bin, as written for unpopulated ranges
    conf_l, acc_l = conf.round(4).tolist(), acc.round(4).tolist()
    conf_l[0], acc_l[0] = None, None
    return {
        "bin_lower": edges[:-1].round(4).tolist(),
        "bin_upper": edges[1:].round(4).tolist(),
        "confidence": conf_l,
        "accuracy": acc_l,
        "count": count.tolist(),
    }


def make_synthetic_task(
    task_dir: Path,
    name: str,
    kind: str,
    *,
    seed: int = 0,
    n_query: int = 40,
    priors_method: str = "em",
    decision: dict | None = None,
    applied: bool | None = True,
    reason: str = "",
) -> dict:
    """Write SYNTHETIC artifacts for one task under ``task_dir`` in the formats of
    docs/artifacts.md (records.parquet, splits.tsv, model.json, history.tsv,
    calibration.json, priors.json, calls.tsv, metrics.json; no logits.parquet: the page
    never reads it).

    priors.json gets ``decision`` (default: ``applied``, or ``not_requested`` for method none)
    and ``applied``/``reason``; ``applied=None`` writes a file from before both (no decision).
    The numbers are random draws from ``numpy.random.default_rng(seed)`` and mean nothing;
    they only exercise the report. Returns what the tests need to check the page.
    """
    rng = np.random.default_rng(seed)
    task_dir.mkdir(parents=True, exist_ok=True)
    classes = MULTICLASS if kind == "multiclass" else MULTILABEL
    k = len(classes)

    # records.parquet: reference (some unlabelled) + query
    n_ref = 200
    if kind == "multiclass":
        ref_labels = [classes[i] for i in rng.choice(k, n_ref, p=[0.4, 0.2, 0.1, 0.3])]
    else:
        ref_labels = []
        for _ in range(n_ref):
            chosen = [c for c in classes if rng.random() < 0.3] or [classes[int(rng.integers(k))]]
            ref_labels.append(";".join(chosen))
    ref_labels = [None if i % 25 == 0 else lab for i, lab in enumerate(ref_labels)]
    ids = [f"{name[:3].upper()}{i:05d}" for i in range(n_ref + n_query)]
    alphabet = "ACGT" if kind == "multiclass" else "ACDEFGHIKLMNPQRSTVWY"
    records = pd.DataFrame(
        {
            "id": ids,
            "sequence": ["".join(rng.choice(list(alphabet), 30)) for _ in ids],
            "label": ref_labels + [None] * n_query,
            "group": [f"G{i % 7}" for i in range(len(ids))],
            "role": ["reference"] * n_ref + ["query"] * n_query,
            "country": ["Spain"] * len(ids),
        }
    )
    records.to_parquet(task_dir / "records.parquet", index=False)
    labelled = [i for i in ids[:n_ref] if ref_labels[ids.index(i)] is not None]
    splits = rng.choice(["train", "val", "test"], len(labelled), p=[0.7, 0.15, 0.15])
    pd.DataFrame({"id": labelled, "split": splits}).to_csv(task_dir / "splits.tsv", sep="\t", index=False)

    train_priors = rng.dirichlet(np.ones(k) * 3) if kind == "multiclass" else rng.uniform(0.1, 0.5, k)
    (task_dir / "model.json").write_text(
        json.dumps(
            {
                "task": name,
                "kind": kind,
                "classes": classes,
                "alphabet": alphabet,
                "encoder": {"type": "cnn", "channels": 64},
                "loss": {"type": "cross_entropy" if kind == "multiclass" else "bce"},
                "train_priors": train_priors.round(4).tolist(),
                "seed": seed,
                "device": "cpu",
                "train_seconds": 123.4 if kind == "multiclass" else 4521.0,
                "epochs": 12,
                "val_metric": "balanced_accuracy" if kind == "multiclass" else "micro_f1",
                "versions": {"torch": "2.4.0", "barloc": "0.1.0"},
            }
        )
    )

    epochs = np.arange(1, 13)
    pd.DataFrame(
        {
            "epoch": epochs,
            "train_loss": (1.4 * np.exp(-epochs / 4) + 0.3).round(4),
            "val_loss": (1.3 * np.exp(-epochs / 5) + 0.45 + rng.normal(0, 0.02, 12)).round(4),
            "val_metric": (0.9 - 0.5 * np.exp(-epochs / 3)).round(4),
        }
    ).to_csv(task_dir / "history.tsv", sep="\t", index=False)

    # test logits, calibrated with T = 1.73: the accuracy-vs-coverage curve evaluate stores
    test_ids = labelled[: len(labelled) // 3]
    z = np.column_stack([rng.normal(0, 2, len(test_ids) + n_query) for _ in classes])[: len(test_ids)] / 1.73
    probs_t = np.exp(z - z.max(axis=1, keepdims=True))
    probs_t /= probs_t.sum(axis=1, keepdims=True)
    truth = np.array([classes.index(ref_labels[ids.index(i)]) if kind == "multiclass" else 0 for i in test_ids])
    coverage = accuracy_coverage(probs_t.max(axis=1), probs_t.argmax(axis=1) == truth)

    cal = {
        "kind": kind,
        "classes": classes,
        "method": "temperature" if kind == "multiclass" else "bcts",  # as in config/config.yaml
        "temperature": 1.73 if kind == "multiclass" else rng.uniform(0.8, 2.0, k).round(3).tolist(),
        "val": {"nll_before": 0.91, "nll_after": 0.78, "ece_before": 0.12, "ece_after": 0.03},
        "reliability": {"before": _reliability(rng, 10, 0.35), "after": _reliability(rng, 10, 0.02)},
    }
    if kind == "multilabel":
        cal["thresholds"] = rng.uniform(0.2, 0.6, k).round(3).tolist()
        cal["call_ratio"] = 0.45
    (task_dir / "calibration.json").write_text(json.dumps(cal))

    query_priors = rng.dirichlet(np.ones(k) * 2) if kind == "multiclass" else rng.uniform(0.05, 0.6, k)
    priors = {
        "method": priors_method,
        "kind": kind,
        "classes": classes,
        "train_priors": train_priors.round(4).tolist(),
    }
    if priors_method != "none":
        priors.update(
            {
                "query_priors": query_priors.round(4).tolist(),
                "ci_low": np.clip(query_priors - 0.05, 0, 1).round(4).tolist(),
                "ci_high": np.clip(query_priors + 0.06, 0, 1).round(4).tolist(),
                "converged": True,
                "iterations": 17,
                "n_query": n_query,
                "test": {
                    "true_priors": train_priors.round(4).tolist(),
                    "estimated_priors": np.clip(train_priors + rng.normal(0, 0.02, k), 0, 1).round(4).tolist(),
                },
            }
        )
    if applied is not None:
        code = "applied" if applied else "check_failed"
        if priors_method == "none":
            code = "not_requested"
        elif n_query == 0:
            code = "no_query"
        priors.update({"applied": applied, "reason": reason, "decision": decision or {"code": code}})
    (task_dir / "priors.json").write_text(json.dumps(priors))

    # calls.tsv
    probs = rng.dirichlet(np.ones(k) * 0.6, n_query) if kind == "multiclass" else rng.uniform(0, 1, (n_query, k))
    rows = []
    for i in range(n_query):
        p = probs[i]
        order = np.argsort(-p)
        if kind == "multiclass":
            call = classes[order[0]]
            alts = "; ".join(f"{classes[j]} ({p[j]:.2f})" for j in order[1:3])
            uncertain = bool(p[order[0]] < 0.6)
        else:
            thr = np.array(cal["thresholds"])
            above = [j for j in order if p[j] >= thr[j]]
            uncertain = not above
            above = [j for j in above if p[j] >= cal["call_ratio"] * p[order[0]]]
            called = above or [order[0]]
            call = ";".join(classes[j] for j in called)
            alts = "; ".join([f"{classes[j]} ({p[j]:.2f})" for j in order if j not in called][:2])
        rows.append(
            {
                "id": ids[n_ref + i],
                "call": call,
                "probability": round(float(p[order[0]]), 4),
                "alternatives": alts,
                "uncertain": uncertain,
                **{f"p::{c}": round(float(p[j]), 4) for j, c in enumerate(classes)},
            }
        )
    calls = pd.DataFrame(
        rows, columns=["id", "call", "probability", "alternatives", "uncertain", *[f"p::{c}" for c in classes]]
    )
    calls.to_csv(task_dir / "calls.tsv", sep="\t", index=False)

    # metrics.json
    n_test = 312 if kind == "multiclass" else 287
    if kind == "multiclass":

        def m(acc: float) -> dict:
            return {
                "accuracy": acc,
                "balanced_accuracy": acc - 0.07,
                "macro_f1": acc - 0.09,
                "nll": 0.8,
                "ece": 0.03,
                "brier": 0.41,
            }

        matrix = rng.integers(0, 15, (k, k)) + np.diag(rng.integers(40, 90, k))
        metrics = {
            "task": name,
            "kind": kind,
            "n_test": n_test,
            "classes": classes,
            "uncalibrated": {**m(0.7115), "ece": 0.14, "nll": 0.95},
            "calibrated": {**m(0.7115), "ece_floor": 0.041},
            "prior_corrected": m(0.7342),
            "per_class": {
                c: {
                    "precision": float(rng.uniform(0.5, 0.9)),
                    "recall": float(rng.uniform(0.5, 0.9)),
                    "f1": float(rng.uniform(0.5, 0.9)),
                    "support": int(matrix[j].sum()),
                }
                for j, c in enumerate(classes)
            },
            "confusion": {"classes": classes, "matrix": matrix.tolist()},
            "coverage": coverage,
        }
        headline = 0.7115
    else:

        def m(em: float) -> dict:
            return {"exact_match": em, "jaccard": 0.61, "micro_f1": 0.68, "macro_f1": 0.55, "nll": 0.31, "ece": 0.02}

        metrics = {
            "task": name,
            "kind": kind,
            "n_test": n_test,
            "classes": classes,
            "uncalibrated": m(0.4826),
            "calibrated": m(0.4826),
            "prior_corrected": m(0.4951),
            "per_class": {
                c: {
                    "mcc": float(rng.uniform(-0.1, 0.8)),
                    "threshold": cal["thresholds"][j],
                    "support": int(rng.integers(10, 120)),
                }
                for j, c in enumerate(classes)
            },
        }
        headline = 0.4826
    (task_dir / "metrics.json").write_text(json.dumps(metrics))

    return {
        "n_calls": n_query,
        "uncertain_ids": {r["id"] for r in rows if r["uncertain"]},
        "headline": headline,
        "n_test": n_test,
        "classes": classes,
    }


def run_info(tmp: Path) -> dict:
    return {
        "date": "2025-11-23 10:40 UTC",
        "version": "0.1.0",
        "git_commit": "e805be7c0ffee1234567890abcdef1234567890a",
        "inputs": [
            {"task": "fish_origin", "path": "resources/tuna_bold.tsv", "records": 1234, "sha256": "a" * 64},
            {"task": "localization", "path": "resources/deeploc.fasta", "records": 240, "sha256": "b" * 64},
        ],
        "device": "cpu (test)",
    }


#: The report's settings of the demo tasks, as the report rule passes them (params.tasks).
SETTINGS = {
    "fish_origin": {
        "title": "Fish origin",
        "description": "Ocean basin of origin of tuna from their DNA barcodes.",
        "nouns": {
            "sample": "barcode",
            "samples": "barcodes",
            "class": "basin",
            "classes": "basins",
            "group": "project",
            "groups": "projects",
        },
        "uncertain_below": 0.6,
        "inputs": {"reference": "resources/tuna_bold.tsv", "labels": None, "query": None},
    },
    "localization": {
        "title": "Protein localization",
        "description": "Subcellular location(s) of proteins from their amino-acid sequence.",
        "nouns": {
            "sample": "protein",
            "samples": "proteins",
            "class": "location",
            "classes": "locations",
            "group": "partition",
            "groups": "partitions",
        },
        "uncertain_below": 0.5,
        "inputs": {"reference": "resources/deeploc.fasta", "labels": None, "query": None},
    },
}


# --------------------------------------------------------------------------- HTML parsing

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Page(HTMLParser):
    """Elements and text of a page, each with the ids of its enclosing elements."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict]] = []
        self.elements: list[tuple[str, dict, tuple[str, ...], tuple[str, ...]]] = []
        self.texts: list[tuple[str, tuple[str, ...]]] = []
        self.style_text: list[str] = []
        self.feed(text)
        self.close()

    def _ids(self) -> tuple[str, ...]:
        return tuple(a["id"] for _, a in self.stack if a.get("id"))

    def _tags(self) -> tuple[str, ...]:
        return tuple(t for t, _ in self.stack)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        self.elements.append((tag, a, self._ids() + ((a["id"],) if a.get("id") else ()), self._tags()))
        if tag not in VOID:
            self.stack.append((tag, a))

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        self.elements.append((tag, a, self._ids() + ((a["id"],) if a.get("id") else ()), self._tags()))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1][0] == "style":
            self.style_text.append(data)
        self.texts.append((data, self._ids()))

    # queries
    def ids(self) -> set[str]:
        return {a["id"] for _, a, _, _ in self.elements if a.get("id")}

    def find(self, tag: str, within: str | None = None) -> list[tuple[dict, tuple[str, ...]]]:
        return [(a, ids) for t, a, ids, _ in self.elements if t == tag and (within is None or within in ids)]

    def text(self, within: str) -> str:
        return " ".join(" ".join(d for d, ids in self.texts if within in ids).split())

    def heading(self, section_id: str) -> str:
        out = [d for d, ids in self.texts if ids and ids[-1] == section_id]
        return " ".join(" ".join(out).split())

    def calls_rows(self, task: str) -> list[tuple[dict, tuple[str, ...]]]:
        tid = f"calls-{task}"
        return [(a, ids) for t, a, ids, tags in self.elements if t == "tr" and tid in ids and "tbody" in tags]


# --------------------------------------------------------------------------- fixtures

SUBSECTIONS = ["calls", "metrics", "calibration", "priors", "training", "data"]
SUB_HEADINGS = {
    "calls": "Calls on query samples",
    "metrics": "Test-set performance",
    "calibration": "Calibration",
    "priors": "Query-set priors",
    "training": "Training",
    "data": "Reference data",
}


NOT_APPLIED_REASON = (
    "on the labelled test split EM raised NLL from 1.186 to 25.407, so the label-shift "
    "assumption does not hold well enough; calls use calibrated probabilities without prior correction"
)
CHECK_FAILED = {"code": "check_failed", "metric": "nll", "before": 1.186, "after": 25.407}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    expect = {
        "fish_origin": make_synthetic_task(
            root / "fish_origin",
            "fish_origin",
            "multiclass",
            seed=1,
            n_query=57,
            applied=False,
            reason=NOT_APPLIED_REASON,
            decision=CHECK_FAILED,
        ),
        "localization": make_synthetic_task(root / "localization", "localization", "multilabel", seed=2, n_query=33),
    }
    out = root / "report" / "index.html"
    build_report({t: root / t for t in expect}, out, run_info(root), SETTINGS)
    text = out.read_text(encoding="utf-8")
    return {"out": out, "text": text, "page": Page(text), "expect": expect}


# --------------------------------------------------------------------------- tests


def test_report_file_written_atomically(built):
    out = built["out"]
    assert out.is_file() and out.stat().st_size > 10_000
    assert [p.name for p in out.parent.iterdir()] == ["index.html"]  # no temp file left behind
    assert built["text"].lstrip().lower().startswith("<!doctype html>")


def test_sections_and_subsections_present(built):
    page = built["page"]
    ids = page.ids()
    assert {"summary", "how-to-read"} <= ids
    for task in built["expect"]:
        assert f"task-{task}" in ids
        for sub in SUBSECTIONS:
            sid = f"task-{task}-{sub}"
            assert sid in ids, sid
            assert SUB_HEADINGS[sub] in page.text(sid)
        # table of contents links to every task section
        assert any(a.get("href") == f"#task-{task}" for a, _ in page.find("a"))
    how = page.text("how-to-read")
    for phrase in ("Calibrated probability", "uncertain", "Prior-shift correction"):
        assert phrase in how


def test_images_are_inline_and_no_external_urls(built):
    page, text = built["page"], built["text"]
    imgs = page.find("img")
    assert len(imgs) >= 8  # 4 charts per task
    for a, _ in imgs:
        assert a["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(a["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for tag, a, _, _ in page.elements:
        for attr in ("src", "href", "action", "srcset", "poster", "data"):
            value = a.get(attr, "")
            assert not re.search(r"(?i)^\s*(https?:)?//", value), (tag, attr, value[:80])
            assert "http://" not in value and "https://" not in value
        assert "url(" not in a.get("style", "")
    for url in re.findall(r"url\(\s*['\"]?([^'\")]*)", text):
        assert not url.lower().startswith(("http", "//")), url
    assert "@import" not in "".join(page.style_text)
    assert not page.find("link") and not [a for a, _ in page.find("script") if a.get("src")]


def test_run_summary(built):
    page = built["page"]
    summary = page.text("summary")
    for fragment in (
        "2025-11-23",
        "0.1.0",
        "cpu (test)",
        "resources/tuna_bold.tsv",
        "1,234",
        "2 min 3 s",
        "1 h 15 min",
    ):
        assert fragment in summary, fragment
    codes = [a for a, ids in page.find("code", within="summary")]
    assert any(a.get("title") == "a" * 64 for a in codes)  # full sha in the title, shortened text
    assert "a" * 64 not in summary
    assert any(a.get("title", "").startswith("e805be7c0ffee") for a in codes)


def test_calls_table_rows_and_uncertain_badges(built):
    page = built["page"]
    for task, exp in built["expect"].items():
        tables = [a for a, _ in page.find("table", within=f"task-{task}-calls") if "calls" in a.get("class", "")]
        assert len(tables) == 1 and "data-sortable" in tables[0]
        rows = page.calls_rows(task)
        assert len(rows) == exp["n_calls"]
        flagged = [a for a, _ in rows if a.get("data-uncertain") == "1"]
        assert len(flagged) == len(exp["uncertain_ids"]) > 0
        badges = [
            ids
            for a, ids in page.find("span", within=f"calls-{task}")
            if "badge" in a.get("class", "") and "uncertain" in a.get("class", "")
        ]
        assert len(badges) == len(exp["uncertain_ids"])
        # the badge text and the ids of flagged rows
        nouns = "barcodes" if task == "fish_origin" else "proteins"
        assert f"{exp['n_calls']} query {nouns}" in page.text(f"task-{task}-calls")
        text = page.text(f"calls-{task}")
        assert text.count("uncertain") >= len(exp["uncertain_ids"])
        for uid in exp["uncertain_ids"]:
            assert uid in text
        controls = [a for a, _ in page.find("div") if a.get("data-controls-for") == f"calls-{task}"]
        assert controls, "filter controls missing"
    assert any("only-uncertain" in a.get("class", "") for a, _ in page.find("input"))


def test_multilabel_call_lists_each_location_with_probability(tmp_path):
    exp = make_synthetic_task(tmp_path / "loc", "localization", "multilabel", seed=5, n_query=12)
    calls = pd.read_csv(tmp_path / "loc" / "calls.tsv", sep="\t")
    multi = calls[calls["call"].str.contains(";")].iloc[0]
    labels = multi["call"].split(";")
    out = tmp_path / "r.html"
    build_report({"localization": tmp_path / "loc"}, out, run_info(tmp_path), SETTINGS)
    text = out.read_text()
    row = re.search(r"<td class=\"id\">" + re.escape(multi["id"]) + r"</td>\s*<td class=\"call\">(.*?)</td>", text)
    assert row, multi["id"]
    for lab in labels:
        pct = f"{multi['p::' + lab] * 100:.0f}%"
        assert re.search(re.escape(lab) + r" <span class=\"p\">" + re.escape(pct), row.group(1)), (lab, pct)
    assert exp["n_calls"] == 12


def test_calibration_method_named_as_fitted(built):
    page = built["page"]
    fish, loc = page.text("task-fish_origin"), page.text("task-localization")
    assert "Calibrated = after temperature scaling;" in fish and "Platt" not in fish
    assert "Calibrated = after Platt scaling (a temperature and a bias per label);" in loc
    assert "temperature scaling" not in loc


def test_call_ratio_is_stated_where_fitted(built):
    page = built["page"]
    loc, fish = page.text("task-localization"), page.text("task-fish_origin")
    assert (
        "A location is called when its probability reaches its threshold and is at least 45% of the "
        "sample's most likely location's; the most likely one is always called."
    ) in loc
    assert "most likely one is always called" not in fish


def test_a_call_ratio_on_the_logits_is_stated_as_such(tmp_path):
    task = tmp_path / "localization"
    make_synthetic_task(task, "localization", "multilabel", seed=2, n_query=33)
    cal = json.loads((task / "calibration.json").read_text())
    (task / "calibration.json").write_text(json.dumps({**cal, "call_ratio_on": "logits"}))
    out = tmp_path / "report" / "index.html"
    build_report({"localization": task}, out, run_info(tmp_path), SETTINGS)
    loc = Page(out.read_text(encoding="utf-8")).text("task-localization")
    assert (
        "A location is called when its probability reaches its threshold and its share of the model's "
        "softmax over the locations is at least 45% of the top location's; the top one is always called."
    ) in loc
    assert "most likely one is always called" not in loc


def test_plain_language_sentence(built):
    page = built["page"]
    fish = page.text("task-fish_origin-metrics")
    assert "On 312 held-out test barcodes" in fish
    assert "right basin for 71%" in fish
    assert "balanced accuracy 0.64" in fish
    assert re.search(
        r"when it says \d+% it is right about \d+% of the time \(ECE 0\.03; perfectly calibrated "
        r"probabilities would show about 0\.04 on 312 barcodes\)",
        fish,
    )
    assert "Ece floor" not in fish and "ece_floor" not in fish  # a reference for the sentence, not a table row
    loc = page.text("task-localization-metrics")
    assert "On 287 held-out test proteins" in loc
    assert "exact set of locations right for 48%" in loc
    assert "right basin" not in loc
    # metrics table has the three columns
    for col in ("Uncalibrated", "Calibrated", "Prior-corrected"):
        assert col in fish and col in loc


def test_charts_per_kind(built):
    page = built["page"]
    fish_alts = [a["alt"] for a, _ in page.find("img", within="task-fish_origin-metrics")]
    loc_alts = [a["alt"] for a, _ in page.find("img", within="task-localization-metrics")]
    assert any("Confusion" in a for a in fish_alts)
    assert any("Matthews" in a for a in loc_alts)
    assert "T = 1.73" in page.text("task-fish_origin-calibration")
    assert "temperature per label" in page.text("task-localization-calibration")
    for task in built["expect"]:
        assert page.find("img", within=f"task-{task}-priors")
        assert page.find("img", within=f"task-{task}-training")
        assert page.find("img", within=f"task-{task}-calibration")
        priors = page.text(f"task-{task}-priors")
        assert "Converged" in priors and "17" in priors and "Check on the test split" in priors


def test_reference_counts(built, tmp_path):
    page = built["page"]
    text = page.text("task-fish_origin-data")
    records = pd.read_parquet(built["out"].parent.parent / "fish_origin" / "records.parquet")
    ref = records[records["role"] == "reference"]
    for cls, n in ref["label"].value_counts().items():
        assert f"{cls} {n:,}" in text
    assert f"{len(ref):,} reference" in text and "57 query" in text
    assert "Cytoplasm" in page.text("task-localization-data")


def test_priors_none_and_empty_calls(tmp_path):
    make_synthetic_task(tmp_path / "fish_origin", "fish_origin", "multiclass", seed=3, n_query=0, priors_method="none")
    out = tmp_path / "out" / "index.html"
    build_report({"fish_origin": tmp_path / "fish_origin"}, out, {**run_info(tmp_path), "git_commit": None}, SETTINGS)
    page = Page(out.read_text())
    assert not page.find("img", within="task-fish_origin-priors")
    assert "No prior-shift correction" in page.text("task-fish_origin-priors")
    assert "No query samples" in page.text("task-fish_origin-calls")
    assert not page.calls_rows("fish_origin")
    assert "not recorded" in page.text("summary")
    assert page.find("img", within="task-fish_origin-metrics")  # rest of the page still there


def test_missing_optional_files(tmp_path):
    task = tmp_path / "localization"
    make_synthetic_task(task, "localization", "multilabel", seed=4, n_query=5)
    for name in ("priors.json", "calls.tsv", "history.tsv", "records.parquet"):
        (task / name).unlink()
    (task / "calls.tsv").write_text("")  # a zero-byte file counts as no samples
    out = tmp_path / "index.html"
    build_report({"localization": task}, out, run_info(tmp_path), SETTINGS)
    page = Page(out.read_text())
    assert "priors.json" in page.text("task-localization-priors")
    assert "No query samples" in page.text("task-localization-calls")
    assert "history.tsv" in page.text("task-localization-training")
    assert "records.parquet" in page.text("task-localization-data")


def test_calls_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(report_html, "MAX_CALL_ROWS", 10)
    make_synthetic_task(tmp_path / "fish_origin", "fish_origin", "multiclass", seed=6, n_query=25)
    out = tmp_path / "index.html"
    build_report({"fish_origin": tmp_path / "fish_origin"}, out, run_info(tmp_path), SETTINGS)
    page = Page(out.read_text())
    assert len(page.calls_rows("fish_origin")) == 10
    assert "Showing the first 10 of 25" in page.text("task-fish_origin-calls")


def test_html_is_escaped(tmp_path):
    make_synthetic_task(tmp_path / "fish_origin", "fish_origin", "multiclass", seed=7, n_query=3)
    calls = pd.read_csv(tmp_path / "fish_origin" / "calls.tsv", sep="\t")
    calls.loc[0, "id"] = "<script>alert(1)</script>"
    calls.to_csv(tmp_path / "fish_origin" / "calls.tsv", sep="\t", index=False)
    out = tmp_path / "index.html"
    build_report({"fish_origin": tmp_path / "fish_origin"}, out, run_info(tmp_path), SETTINGS)
    text = out.read_text()
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_prior_correction_not_applied_is_said_plainly(built):
    page = built["page"]
    fish = page.text("task-fish_origin-priors")
    assert "Prior correction not applied." in fish
    # worded from priors.json's decision code and figures, not from its reason sentence
    assert (
        "The calls use calibrated probabilities without prior correction, because: On the labelled test split EM "
        "raised NLL from 1.186 to 25.407, so the label-shift assumption does not hold well enough." in fish
    )
    assert fish.count("without prior correction") == 1
    assert "calibrated, without prior correction" in page.text("task-fish_origin-calls")
    assert "it was not applied to the calls" in page.text("task-fish_origin-metrics")
    loc = page.text("task-localization-priors")
    assert "not applied" not in loc and "The calls use probabilities corrected" in loc
    assert "corrected to the estimated class mix" in page.text("task-localization-calls")
    summary = page.text("summary")
    assert "not applied" in summary and "applied" in summary.replace("not applied", "")


def test_decision_code_not_reason_sentence(tmp_path):
    """The page words the code's figures; priors.json's reason is a log line it does not show."""
    make_synthetic_task(
        tmp_path / "fish_origin",
        "fish_origin",
        "multiclass",
        seed=8,
        n_query=4,
        applied=False,
        reason="a sentence for the log",
        decision={**CHECK_FAILED, "before": 0.5, "after": 0.75},
    )
    out = tmp_path / "index.html"
    build_report({"fish_origin": tmp_path / "fish_origin"}, out, run_info(tmp_path), SETTINGS)
    priors = Page(out.read_text()).text("task-fish_origin-priors")
    assert "raised NLL from 0.500 to 0.750" in priors and "sentence for the log" not in priors


def test_no_query_samples_is_its_own_decision(tmp_path):
    make_synthetic_task(tmp_path / "fish_origin", "fish_origin", "multiclass", seed=8, n_query=0)
    out = tmp_path / "index.html"
    build_report({"fish_origin": tmp_path / "fish_origin"}, out, run_info(tmp_path), SETTINGS)
    page = Page(out.read_text())
    assert "No query barcodes, so no query priors were estimated" in page.text("task-fish_origin-priors")
    assert not page.find("img", within="task-fish_origin-priors")


def test_older_priors_json_without_decision(tmp_path):
    """A priors.json from before the decision code: applied/reason are read as they are."""
    make_synthetic_task(tmp_path / "fish_origin", "fish_origin", "multiclass", seed=8, n_query=4)
    path = tmp_path / "fish_origin" / "priors.json"
    priors = json.loads(path.read_text())
    del priors["decision"]
    priors.update({"applied": False, "reason": NOT_APPLIED_REASON})
    path.write_text(json.dumps(priors))
    out = tmp_path / "index.html"
    build_report({"fish_origin": tmp_path / "fish_origin"}, out, run_info(tmp_path), SETTINGS)
    page = Page(out.read_text())
    text = page.text("task-fish_origin-priors")
    assert "Prior correction not applied." in text and "because: On the labelled test split EM raised NLL" in text
    assert "not applied" in page.text("summary")


def test_older_priors_json_without_applied(tmp_path):
    make_synthetic_task(tmp_path / "fish_origin", "fish_origin", "multiclass", seed=8, n_query=4, applied=None)
    out = tmp_path / "index.html"
    build_report({"fish_origin": tmp_path / "fish_origin"}, out, run_info(tmp_path), SETTINGS)
    priors = Page(out.read_text()).text("task-fish_origin-priors")
    assert "not applied" not in priors and "estimated with the EM algorithm" in priors


def test_accuracy_coverage_section_for_multiclass_only(built):
    page = built["page"]
    ids = page.ids()
    assert "task-fish_origin-coverage" in ids and "task-localization-coverage" not in ids
    assert any(a.get("href") == "#task-fish_origin-coverage" for a, _ in page.find("a"))
    text = page.text("task-fish_origin-coverage")
    assert "Accuracy vs coverage" in text and "current" in text
    assert page.find("img", within="task-fish_origin-coverage")
    # The numbers are metrics.json's stored curve, read at the task's uncertain_below (0.6);
    # the page needs no logits (the fixture writes none).
    res = built["out"].parent.parent / "fish_origin"
    assert not (res / "logits.parquet").exists()
    curve = json.loads((res / "metrics.json").read_text())["coverage"]
    cov, acc = coverage_at(curve, 0.6)
    assert f"Measured on the {curve['n']} test barcodes" in text
    assert 0 < cov < 1
    assert (
        f"With the current cut-off of 0.6, {cov * 100:.0f}% of the test barcodes get a confident "
        f"call, and {acc * 100:.0f}% of those are right"
    ) in text
    assert f"accuracy on all of them is {curve['accuracy'][-1] * 100:.0f}%" in text


def test_accuracy_coverage_without_a_stored_curve(tmp_path):
    make_synthetic_task(tmp_path / "fish_origin", "fish_origin", "multiclass", seed=9, n_query=4)
    path = tmp_path / "fish_origin" / "metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["coverage"]  # as an evaluate step from before the curve was stored
    path.write_text(json.dumps(metrics))
    out = tmp_path / "index.html"
    build_report({"fish_origin": tmp_path / "fish_origin"}, out, run_info(tmp_path), SETTINGS)
    text = Page(out.read_text()).text("task-fish_origin-coverage")
    assert "metrics.json holds no accuracy-vs-coverage curve" in text
    assert Page(out.read_text()).find("img", within="task-fish_origin-metrics")  # the rest is still there


def test_task_wording_comes_from_settings(tmp_path):
    """A task the report has never heard of speaks its own settings' words; with none, generic ones."""
    make_synthetic_task(tmp_path / "species_id", "species_id", "multiclass", seed=10, n_query=6)
    species = {
        "title": "Tuna species",
        "description": "Species of tuna from their barcodes.",
        "nouns": {
            "sample": "specimen",
            "samples": "specimens",
            "class": "species",
            "classes": "species",
            "group": "cruise",
            "groups": "cruises",
        },
        "uncertain_below": 0.7,
    }
    out = tmp_path / "index.html"
    build_report({"species_id": tmp_path / "species_id"}, out, run_info(tmp_path), {"species_id": species})
    page = Page(out.read_text())
    assert "Tuna species" in page.text("task-species_id") and "Species of tuna from their barcodes." in out.read_text()
    metrics = page.text("task-species_id-metrics")
    assert "held-out test specimens from cruises the model never saw" in metrics and "right species for" in metrics
    assert "6 query specimens" in page.text("task-species_id-calls")
    assert "current cut-off of 0.7" in page.text("task-species_id-coverage")
    assert "whole cruises are unseen" in page.text("how-to-read")
    for word in ("barcodes", "basin", "proteins", "location"):
        assert word not in metrics, word

    out2 = tmp_path / "plain.html"
    build_report({"species_id": tmp_path / "species_id"}, out2, run_info(tmp_path))
    plain = Page(out2.read_text())
    assert "Species id" in plain.text("task-species_id")  # the name, spaced and capitalised
    assert "held-out test samples from groups the model never saw" in plain.text("task-species_id-metrics")
    assert "current cut-off" not in plain.text("task-species_id-coverage")  # no cut-off given, none marked


def test_task_words():
    words = report_html.task_words("fish_origin", SETTINGS["fish_origin"])
    assert words["title"] == "Fish origin" and words["things"] == "basins" and words["true"] == "True basin"
    assert words["held_out"] == "held-out test barcodes from projects the model never saw"
    assert report_html.task_words("my_task", {"title": "", "nouns": {"samples": "reads"}})["title"] == "My task"
    assert report_html.task_words("my_task", {"nouns": {"samples": "reads"}})["thing"] == "class"


def test_step_reads_only_its_settings(tmp_path, monkeypatch):
    """steps/report.py: run_info and the page from params.tasks alone (no params.config)."""
    from types import SimpleNamespace as NS

    from barloc.steps import report as step

    res = tmp_path / "results"
    for name, kind, seed in (("fish_origin", "multiclass", 11), ("localization", "multilabel", 12)):
        make_synthetic_task(res / name, name, kind, seed=seed, n_query=7)
    ref = tmp_path / "ref.tsv"
    ref.write_text("id\tsequence\n")
    settings = {t: {**s, "inputs": {"reference": str(ref), "labels": None, "query": None}} for t, s in SETTINGS.items()}
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report" / "index.html"
    step.run(NS(metrics=[str(res / t / "metrics.json") for t in settings]), NS(html=str(out)), NS(tasks=settings))
    page = Page(out.read_text())
    summary = page.text("summary")
    assert str(ref) in summary and "200" in summary  # the reference's records in records.parquet
    assert "Config hash" not in summary
    assert "7 query barcodes" in page.text("task-fish_origin-calls")
    info = step.run_info(settings, {"fish_origin": res / "fish_origin"}, tmp_path)
    assert [i["records"] for i in info["inputs"]] == [200] and info["device"] == "cpu"
    assert set(info) == {"date", "version", "git_commit", "inputs", "device"}


def test_plot_functions_return_png_data_uris():
    hist = pd.DataFrame(
        {"epoch": [1, 2, 3], "train_loss": [1.0, 0.7, 0.5], "val_loss": [1.1, 0.8, 0.7], "val_metric": [0.4, 0.6, 0.65]}
    )
    r = {
        "bin_lower": [0, 0.5],
        "bin_upper": [0.5, 1.0],
        "confidence": [0.3, 0.8],
        "accuracy": [0.25, 0.7],
        "count": [10, 30],
    }
    uris = [
        plots.confusion_png([[5, 1], [2, 7]], ["a", "b"]),
        plots.reliability_png(r, r, "t"),
        plots.priors_png(["a", "b"], [0.5, 0.5], [0.3, 0.7], [0.2, 0.6], [0.4, 0.8]),
        plots.priors_png(["a", "b"], [0.5, 0.5], [0.3, 0.7], None, None),
        plots.mcc_png(["a", "b"], [0.5, None]),
        plots.curves_png(hist),
        plots.coverage_png([0.2, 0.6, 1.0], [1.0, 0.8, 0.7], [(0.5, 0.6, 0.8)], (0.6, 0.2, 1.0)),
        plots.coverage_png([], []),
    ]
    for uri in uris:
        assert uri.startswith("data:image/png;base64,")
        assert base64.b64decode(uri.split(",", 1)[1])[:4] == b"\x89PNG"
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []  # nothing left open in pyplot


if __name__ == "__main__":
    outdir = Path(sys.argv[1] if len(sys.argv) > 1 else "report_preview")
    res = outdir / "results"
    make_synthetic_task(res / "fish_origin", "fish_origin", "multiclass", seed=1, n_query=57)
    make_synthetic_task(res / "localization", "localization", "multilabel", seed=2, n_query=33)
    build_report({t: res / t for t in ("fish_origin", "localization")}, outdir / "index.html", run_info(res), SETTINGS)
    print(outdir / "index.html")


def test_calibration_words_name_each_method():
    calibration_words = report_html.calibration_words
    assert calibration_words("temperature", "multiclass") == "temperature scaling"
    assert calibration_words("bcts", "multiclass") == "temperature and bias scaling (BCTS)"
    assert calibration_words("vector", "multiclass") == "vector scaling (a temperature and a bias per class)"
    for method in ("bcts", "vector"):  # a sigmoid head's labels are separate problems: Platt scaling
        assert calibration_words(method, "multilabel").startswith("Platt scaling")
