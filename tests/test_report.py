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
    applied: bool | None = True,
    reason: str = "",
) -> dict:
    """Write SYNTHETIC artifacts for one task under ``task_dir`` in the formats of
    docs/artifacts.md (records.parquet, splits.tsv, model.json, history.tsv,
    logits.parquet, calibration.json, priors.json, calls.tsv, metrics.json).

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
    records = pd.DataFrame({
        "id": ids,
        "sequence": ["".join(rng.choice(list(alphabet), 30)) for _ in ids],
        "label": ref_labels + [None] * n_query,
        "group": [f"G{i % 7}" for i in range(len(ids))],
        "role": ["reference"] * n_ref + ["query"] * n_query,
        "country": ["Spain"] * len(ids),
    })
    records.to_parquet(task_dir / "records.parquet", index=False)
    labelled = [i for i in ids[:n_ref] if ref_labels[ids.index(i)] is not None]
    splits = rng.choice(["train", "val", "test"], len(labelled), p=[0.7, 0.15, 0.15])
    pd.DataFrame({"id": labelled, "split": splits}).to_csv(task_dir / "splits.tsv", sep="\t", index=False)

    train_priors = rng.dirichlet(np.ones(k) * 3) if kind == "multiclass" else rng.uniform(0.1, 0.5, k)
    (task_dir / "model.json").write_text(json.dumps({
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
    }))

    epochs = np.arange(1, 13)
    pd.DataFrame({
        "epoch": epochs,
        "train_loss": (1.4 * np.exp(-epochs / 4) + 0.3).round(4),
        "val_loss": (1.3 * np.exp(-epochs / 5) + 0.45 + rng.normal(0, 0.02, 12)).round(4),
        "val_metric": (0.9 - 0.5 * np.exp(-epochs / 3)).round(4),
    }).to_csv(task_dir / "history.tsv", sep="\t", index=False)

    logit_ids = labelled[: len(labelled) // 3] + ids[n_ref:]
    logits = pd.DataFrame({
        "id": logit_ids,
        "split": ["test"] * (len(logit_ids) - n_query) + ["query"] * n_query,
        "label": [ref_labels[ids.index(i)] for i in logit_ids[: len(logit_ids) - n_query]] + [None] * n_query,
    })
    for c in classes:
        logits[f"logit::{c}"] = rng.normal(0, 2, len(logit_ids))
    logits.to_parquet(task_dir / "logits.parquet", index=False)

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
        priors.update({
            "query_priors": query_priors.round(4).tolist(),
            "ci_low": np.clip(query_priors - 0.05, 0, 1).round(4).tolist(),
            "ci_high": np.clip(query_priors + 0.06, 0, 1).round(4).tolist(),
            "converged": True,
            "iterations": 17,
            "n_query": n_query,
            "test": {"true_priors": train_priors.round(4).tolist(),
                     "estimated_priors": np.clip(train_priors + rng.normal(0, 0.02, k), 0, 1).round(4).tolist()},
        })
    if applied is not None:
        priors.update({"applied": applied, "reason": reason})
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
        rows.append({"id": ids[n_ref + i], "call": call, "probability": round(float(p[order[0]]), 4),
                     "alternatives": alts, "uncertain": uncertain,
                     **{f"p::{c}": round(float(p[j]), 4) for j, c in enumerate(classes)}})
    calls = pd.DataFrame(rows, columns=["id", "call", "probability", "alternatives", "uncertain",
                                        *[f"p::{c}" for c in classes]])
    calls.to_csv(task_dir / "calls.tsv", sep="\t", index=False)

    # metrics.json
    n_test = 312 if kind == "multiclass" else 287
    if kind == "multiclass":
        def m(acc: float) -> dict:
            return {"accuracy": acc, "balanced_accuracy": acc - 0.07, "macro_f1": acc - 0.09,
                    "nll": 0.8, "ece": 0.03, "brier": 0.41}

        matrix = rng.integers(0, 15, (k, k)) + np.diag(rng.integers(40, 90, k))
        metrics = {
            "task": name, "kind": kind, "n_test": n_test, "classes": classes,
            "uncalibrated": {**m(0.7115), "ece": 0.14, "nll": 0.95},
            "calibrated": {**m(0.7115), "ece_floor": 0.041},
            "prior_corrected": m(0.7342),
            "per_class": {c: {"precision": float(rng.uniform(0.5, 0.9)), "recall": float(rng.uniform(0.5, 0.9)),
                              "f1": float(rng.uniform(0.5, 0.9)), "support": int(matrix[j].sum())}
                          for j, c in enumerate(classes)},
            "confusion": {"classes": classes, "matrix": matrix.tolist()},
        }
        headline = 0.7115
    else:
        def m(em: float) -> dict:
            return {"exact_match": em, "jaccard": 0.61, "micro_f1": 0.68, "macro_f1": 0.55, "nll": 0.31, "ece": 0.02}

        metrics = {
            "task": name, "kind": kind, "n_test": n_test, "classes": classes,
            "uncalibrated": m(0.4826), "calibrated": m(0.4826), "prior_corrected": m(0.4951),
            "per_class": {c: {"mcc": float(rng.uniform(-0.1, 0.8)), "threshold": cal["thresholds"][j],
                              "support": int(rng.integers(10, 120))} for j, c in enumerate(classes)},
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
        "config_hash": "9f2c1e0a7b3d5c4e6f8a9b0c1d2e3f4a",
        "inputs": [
            {"task": "fish_origin", "path": "resources/tuna_bold.tsv", "records": 1234,
             "sha256": "a" * 64},
            {"task": "localization", "path": "resources/deeploc.fasta", "records": 240,
             "sha256": "b" * 64},
        ],
        "device": "cpu (test)",
        "uncertain_below": {"fish_origin": 0.6, "localization": 0.5},
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
        return [(a, ids) for t, a, ids, tags in self.elements
                if t == "tr" and tid in ids and "tbody" in tags]


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


NOT_APPLIED_REASON = ("on the labelled test split EM raised NLL from 1.186 to 25.407, so the label-shift "
                      "assumption does not hold well enough; calls use calibrated probabilities without prior correction")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    expect = {
        "fish_origin": make_synthetic_task(root / "fish_origin", "fish_origin", "multiclass", seed=1, n_query=57,
                                           applied=False, reason=NOT_APPLIED_REASON),
        "localization": make_synthetic_task(root / "localization", "localization", "multilabel", seed=2,
                                            n_query=33),
    }
    out = root / "report" / "index.html"
    build_report({t: root / t for t in expect}, out, run_info(root))
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
    for fragment in ("2025-11-23", "0.1.0", "cpu (test)", "resources/tuna_bold.tsv", "1,234", "2 min 3 s",
                     "1 h 15 min"):
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
        badges = [ids for a, ids in page.find("span", within=f"calls-{task}")
                  if "badge" in a.get("class", "") and "uncertain" in a.get("class", "")]
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
    build_report({"localization": tmp_path / "loc"}, out, run_info(tmp_path))
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
    assert ("A location is called when its probability reaches its threshold and is at least 45% of the "
            "sample's most likely location's; the most likely one is always called.") in loc
    assert "most likely one is always called" not in fish


def test_plain_language_sentence(built):
    page = built["page"]
    fish = page.text("task-fish_origin-metrics")
    assert "On 312 held-out test barcodes" in fish
    assert "right basin for 71%" in fish
    assert "balanced accuracy 0.64" in fish
    assert re.search(r"when it says \d+% it is right about \d+% of the time \(ECE 0\.03; perfectly calibrated "
                     r"probabilities would show about 0\.04 on 312 barcodes\)", fish)
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
    make_synthetic_task(tmp_path / "fish_origin", "fish_origin", "multiclass", seed=3, n_query=0,
                        priors_method="none")
    out = tmp_path / "out" / "index.html"
    build_report({"fish_origin": tmp_path / "fish_origin"}, out, {**run_info(tmp_path), "git_commit": None})
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
    build_report({"localization": task}, out, run_info(tmp_path))
    page = Page(out.read_text())
    assert "priors.json" in page.text("task-localization-priors")
    assert "No query samples" in page.text("task-localization-calls")
    assert "history.tsv" in page.text("task-localization-training")
    assert "records.parquet" in page.text("task-localization-data")


def test_calls_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(report_html, "MAX_CALL_ROWS", 10)
    make_synthetic_task(tmp_path / "fish_origin", "fish_origin", "multiclass", seed=6, n_query=25)
    out = tmp_path / "index.html"
    build_report({"fish_origin": tmp_path / "fish_origin"}, out, run_info(tmp_path))
    page = Page(out.read_text())
    assert len(page.calls_rows("fish_origin")) == 10
    assert "Showing the first 10 of 25" in page.text("task-fish_origin-calls")


def test_html_is_escaped(tmp_path):
    make_synthetic_task(tmp_path / "fish_origin", "fish_origin", "multiclass", seed=7, n_query=3)
    calls = pd.read_csv(tmp_path / "fish_origin" / "calls.tsv", sep="\t")
    calls.loc[0, "id"] = "<script>alert(1)</script>"
    calls.to_csv(tmp_path / "fish_origin" / "calls.tsv", sep="\t", index=False)
    out = tmp_path / "index.html"
    build_report({"fish_origin": tmp_path / "fish_origin"}, out, run_info(tmp_path))
    text = out.read_text()
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_prior_correction_not_applied_is_said_plainly(built):
    page = built["page"]
    fish = page.text("task-fish_origin-priors")
    assert "Prior correction not applied." in fish
    assert "The calls use calibrated probabilities without prior correction, because: On the labelled test split EM " \
           "raised NLL from 1.186 to 25.407, so the label-shift assumption does not hold well enough." in fish
    assert fish.count("without prior correction") == 1  # the reason's own closing clause is not repeated
    assert "calibrated, without prior correction" in page.text("task-fish_origin-calls")
    assert "it was not applied to the calls" in page.text("task-fish_origin-metrics")
    loc = page.text("task-localization-priors")
    assert "not applied" not in loc and "The calls use probabilities corrected" in loc
    assert "corrected to the estimated class mix" in page.text("task-localization-calls")
    summary = page.text("summary")
    assert "not applied" in summary and "applied" in summary.replace("not applied", "")


def test_older_priors_json_without_applied(tmp_path):
    make_synthetic_task(tmp_path / "fish_origin", "fish_origin", "multiclass", seed=8, n_query=4, applied=None)
    out = tmp_path / "index.html"
    build_report({"fish_origin": tmp_path / "fish_origin"}, out, run_info(tmp_path))
    priors = Page(out.read_text()).text("task-fish_origin-priors")
    assert "not applied" not in priors and "estimated with the EM algorithm" in priors


def test_accuracy_coverage_curve():
    conf = np.array([0.9, 0.8, 0.8, 0.6, 0.4])
    right = np.array([1, 1, 0, 1, 0])
    curve = report_html.accuracy_coverage(conf, right)
    assert curve["threshold"] == [0.9, 0.8, 0.6, 0.4]  # the tie at 0.8 is one point
    np.testing.assert_allclose(curve["coverage"], [0.2, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(curve["accuracy"], [1.0, 2 / 3, 0.75, 0.6])
    assert report_html.coverage_at(curve, 0.7) == pytest.approx((0.6, 2 / 3))
    assert report_html.coverage_at(curve, 0.0) == pytest.approx((1.0, 0.6))
    cov, acc = report_html.coverage_at(curve, 0.95)
    assert cov == 0.0 and np.isnan(acc)
    assert report_html.accuracy_coverage(np.array([]), np.array([]))["n"] == 0


def test_accuracy_coverage_section_for_multiclass_only(built):
    page = built["page"]
    ids = page.ids()
    assert "task-fish_origin-coverage" in ids and "task-localization-coverage" not in ids
    assert any(a.get("href") == "#task-fish_origin-coverage" for a, _ in page.find("a"))
    text = page.text("task-fish_origin-coverage")
    assert "Accuracy vs coverage" in text and "current" in text
    assert page.find("img", within="task-fish_origin-coverage")
    # The numbers come from the test rows of logits.parquet through calibration.json.
    from barloc.calibrate import apply

    res = built["out"].parent.parent / "fish_origin"
    df = pd.read_parquet(res / "logits.parquet")
    df = df[df["split"] == "test"]
    cal = json.loads((res / "calibration.json").read_text())
    probs = apply(df[[f"logit::{c}" for c in MULTICLASS]].to_numpy(), "multiclass", cal)
    y = df["label"].map(MULTICLASS.index).to_numpy()
    kept = probs.max(axis=1) >= 0.6
    assert f"Measured on the {len(df)} test barcodes" in text
    assert 0 < kept.mean() < 1
    acc = (probs.argmax(axis=1) == y)[kept].mean()
    assert (f"With the current cut-off of 0.6, {kept.mean() * 100:.0f}% of the test barcodes get a confident "
            f"call, and {acc * 100:.0f}% of those are right") in text


def test_accuracy_coverage_without_logits(tmp_path):
    make_synthetic_task(tmp_path / "fish_origin", "fish_origin", "multiclass", seed=9, n_query=4)
    (tmp_path / "fish_origin" / "logits.parquet").unlink()
    out = tmp_path / "index.html"
    build_report({"fish_origin": tmp_path / "fish_origin"}, out, run_info(tmp_path))
    assert "logits.parquet" in Page(out.read_text()).text("task-fish_origin-coverage")


def test_plot_functions_return_png_data_uris():
    hist = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.7, 0.5], "val_loss": [1.1, 0.8, 0.7],
                         "val_metric": [0.4, 0.6, 0.65]})
    r = {"bin_lower": [0, 0.5], "bin_upper": [0.5, 1.0], "confidence": [0.3, 0.8], "accuracy": [0.25, 0.7],
         "count": [10, 30]}
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
    build_report({t: res / t for t in ("fish_origin", "localization")}, outdir / "index.html", run_info(res))
    print(outdir / "index.html")


def test_calibration_words_name_each_method():
    calibration_words = report_html.calibration_words
    assert calibration_words("temperature", "multiclass") == "temperature scaling"
    assert calibration_words("bcts", "multiclass") == "temperature and bias scaling (BCTS)"
    assert calibration_words("vector", "multiclass") == "vector scaling (a temperature and a bias per class)"
    for method in ("bcts", "vector"):  # a sigmoid head's labels are separate problems: Platt scaling
        assert calibration_words(method, "multilabel").startswith("Platt scaling")
