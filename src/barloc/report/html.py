"""Render ``results/report/index.html``: one self-contained page for lab analysts.

The page reads the per-task artifacts described in ``docs/artifacts.md`` and renders them;
what it shows is computed and stored by the steps (evaluate stores the accuracy-vs-coverage
curve, prior_shift a decision code), and each task's wording comes from its settings
(``title``, ``description``, ``nouns``). It embeds everything (CSS, a little vanilla JS, PNG
images as data URIs), so it can be mailed or opened offline and makes no network requests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from barloc import artifacts
from barloc.config import task_default
from barloc.errors import InputError
from barloc.metrics import COVERAGE_CUTOFFS, coverage_at
from barloc.report import plots

HERE = Path(__file__).resolve().parent
TEMPLATE = "template.html.j2"
STYLESHEET = "style.css"

#: Rows of calls.tsv rendered per task; the rest stay in the TSV.
MAX_CALL_ROWS = 5000

#: The nouns of a task's ``nouns`` setting; a page rendered without settings says these.
GENERIC_NOUNS: dict[str, str] = task_default("nouns")  # the schema's: sample(s), class(es), group(s)


def task_words(name: str, settings: Mapping | None = None) -> dict[str, str]:
    """The page's words for task ``name`` from its settings: ``title`` (empty: the name with
    spaces, capitalised), ``description`` and ``nouns`` (a sample, a class, a split group)."""
    settings = settings or {}
    n = {**GENERIC_NOUNS, **(settings.get("nouns") or {})}
    return {
        "title": settings.get("title") or name.replace("_", " ").capitalize(),
        "blurb": settings.get("description") or "",
        "noun": n["sample"],
        "nouns": n["samples"],
        "thing": n["class"],
        "things": n["classes"],
        "groups": n["groups"],
        "held_out": f"held-out test {n['samples']} from {n['groups']} the model never saw",
        "true": f"True {n['class']}",
        "pred": f"Predicted {n['class']}",
    }


#: Metric keys of metrics.json in display order: (key, label, higher is better).
METRIC_LABELS: dict[str, tuple[str, bool]] = {
    "accuracy": ("Accuracy", True),
    "balanced_accuracy": ("Balanced accuracy", True),
    "exact_match": ("Exact-match accuracy", True),
    "jaccard": ("Jaccard index", True),
    "micro_f1": ("Micro F1", True),
    "macro_f1": ("Macro F1", True),
    "nll": ("Log loss (NLL)", False),
    "ece": ("Calibration error (ECE)", False),
    "brier": ("Brier score", False),
}
#: metrics.json keys that are references for a metric, not metrics: the sentence above the table
#: states them (ece_floor: the ECE perfectly calibrated probabilities would show on this many records).
REFERENCE_KEYS = {"ece_floor"}
METRIC_COLUMNS = [
    ("uncalibrated", "Uncalibrated"),
    ("calibrated", "Calibrated"),
    ("prior_corrected", "Prior-corrected"),
]


# --------------------------------------------------------------------------- formatting


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def fmt_pct(x: Any, digits: int = 0) -> str:
    """0.713 -> '71%'; None/NaN -> '–'."""
    if not _finite(x):
        return "–"
    return f"{float(x) * 100:.{digits}f}%"


def fmt_num(x: Any, digits: int = 3) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if not _finite(x):
        return "–" if x is None or isinstance(x, float) else str(x)
    return f"{float(x):.{digits}f}"


def fmt_int(x: Any) -> str:
    if not _finite(x):
        return "–"
    return f"{round(float(x)):,}"


def fmt_seconds(x: Any) -> str:
    """4521.3 -> '1 h 15 min'; 73 -> '1 min 13 s'."""
    if not _finite(x):
        return "–"
    s = float(x)
    if s < 60:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    m, sec = divmod(round(s), 60)
    if m < 60:
        return f"{m} min {sec} s"
    h, m = divmod(m, 60)
    return f"{h} h {m} min"


def shorten(value: Any, n: int = 12) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= n else text[:n] + "…"


_FRACTION_IN_PARENS = re.compile(r"\((\d*\.?\d+(?:[eE][-+]?\d+)?)\)")


def _alternatives_pct(text: str) -> str:
    """'Pacific (0.12); Indian (0.05)' -> 'Pacific (12%); Indian (5%)' (other text as is)."""

    def repl(m: re.Match) -> str:
        v = float(m.group(1))
        return f"({fmt_pct(v)})" if 0.0 <= v <= 1.0 else m.group(0)

    return _FRACTION_IN_PARENS.sub(repl, text)


def _truthy(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return _finite(value) and float(value) != 0.0
    return str(value).strip().lower() in {"true", "1", "yes", "y", "t"}


# --------------------------------------------------------------------------- reading


def _read_json(path: Path) -> dict | None:
    """An artifact's JSON object, or None when the file is absent (the page says so)."""
    return artifacts.read_json(path, path.name) if path.is_file() else None


def _read_tsv(path: Path) -> pd.DataFrame | None:
    """A TSV as strings (no NA guessing), or None when the file is absent."""
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _numeric(df: pd.DataFrame, col: str) -> list[float]:
    return pd.to_numeric(df[col].replace("", np.nan), errors="coerce").astype(float).tolist()


def _record_counts(path: Path, kind: str | None, classes: list[str]) -> dict | None:
    """Counts per role and per reference label from records.parquet (two columns only)."""
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    names = set(pq.read_schema(path).names)
    cols = [c for c in ("role", "label") if c in names]
    if not cols:
        return None
    df = pd.read_parquet(path, columns=cols)
    n = len(df)
    roles = df["role"].astype("string").fillna("(none)") if "role" in df else pd.Series(["reference"] * n)
    role_counts = {str(k): int(v) for k, v in roles.value_counts().sort_index().items()}
    out: dict[str, Any] = {"total": n, "roles": role_counts, "labels": [], "unlabelled": 0}
    if "label" not in df:
        return out
    ref = df.loc[(roles == "reference").to_numpy(), "label"].astype("string")
    labelled = ref.dropna()
    labelled = labelled[labelled.str.strip() != ""]
    out["unlabelled"] = int(len(ref) - len(labelled))
    if kind == "multilabel":
        exploded = labelled.str.split(";").explode().str.strip()
        counts = exploded[exploded != ""].value_counts()
    else:
        counts = labelled.value_counts()
    denom = len(labelled)
    order = list(dict.fromkeys(classes)) + sorted(str(c) for c in counts.index if c not in classes)
    for c in order:
        k = int(counts.get(c, 0))
        out["labels"].append(
            {"label": str(c), "count": k, "share": k / denom if denom else None, "known": c in classes}
        )
    out["n_labelled"] = len(labelled)
    return out


# --------------------------------------------------------------------------- sections


def _calls_section(df: pd.DataFrame | None, kind: str, classes: list[str], path: Path) -> dict:
    if df is None:
        return {"state": "missing", "file": str(path)}
    if df.empty or "id" not in df.columns:
        return {"state": "empty", "n": 0, "rows": []}
    n = len(df)
    shown = df.iloc[:MAX_CALL_ROWS]
    prob = _numeric(shown, "probability") if "probability" in shown else [float("nan")] * len(shown)
    pcols = {c: _numeric(shown, f"p::{c}") for c in classes if f"p::{c}" in shown}
    uncertain_all = [_truthy(v) for v in df["uncertain"]] if "uncertain" in df else [False] * n
    rows = []
    for i in range(len(shown)):
        call = str(shown["call"].iat[i]) if "call" in shown else ""
        parts = []
        labels = [s.strip() for s in call.split(";") if s.strip()] if kind == "multilabel" else ([call] if call else [])
        for lab in labels:
            p = pcols.get(lab, [None] * (i + 1))[i]
            if kind != "multilabel":
                p = None  # the probability column already shows it
            parts.append({"label": lab, "p": fmt_pct(p) if _finite(p) else None})
        alt = str(shown["alternatives"].iat[i]) if "alternatives" in shown else ""
        rows.append(
            {
                "id": str(shown["id"].iat[i]),
                "call": call,
                "parts": parts,
                "prob": prob[i],
                "prob_text": fmt_pct(prob[i], 1),
                "prob_sort": f"{prob[i]:.6f}" if _finite(prob[i]) else "-1",
                "alternatives": _alternatives_pct(alt),
                "uncertain": uncertain_all[i],
            }
        )
    return {
        "state": "ok",
        "n": n,
        "rows": rows,
        "truncated": n > MAX_CALL_ROWS,
        "max_rows": MAX_CALL_ROWS,
        "n_uncertain": int(sum(uncertain_all)),
    }


#: The membrane head's test metrics (metrics.json extra_heads.membrane) in display order.
MEMBRANE_METRICS = [
    ("mcc", "Matthews correlation (MCC)", True),
    ("accuracy", "Accuracy", True),
    ("f1", "F1 of the membrane call", True),
    ("nll", "Log loss (NLL)", False),
    ("ece", "Calibration error (ECE)", False),
]


def _membrane_section(
    model: dict | None, metrics: dict | None, calibration: dict | None, calls: pd.DataFrame | None, words: dict
) -> dict:
    """The membrane/soluble head (``membrane_head: true``): its test metrics and, per query
    sample, the calibrated P(membrane) and call that calls.tsv holds. Not applicable (and
    not on the page) when the model has no such head."""
    heads = (model or {}).get("extra_heads") or list((calibration or {}).get("extra_heads") or {})
    if "membrane" not in heads:
        return {"state": "not_applicable"}
    params = ((calibration or {}).get("extra_heads") or {}).get("membrane") or {}
    m = ((metrics or {}).get("extra_heads") or {}).get("membrane") or {}
    threshold = params.get("threshold", m.get("threshold"))
    out: dict[str, Any] = {
        "state": "ok",
        "threshold": fmt_pct(threshold, 1),
        "sentence": "",
        "metrics": [],
        "rows": [],
        "n": 0,
        "n_membrane": 0,
        "truncated": False,
        "max_rows": MAX_CALL_ROWS,
        "has_calls": False,
    }
    if m:
        n, pos = m.get("n"), m.get("positives")
        out["sentence"] = (
            f"Of {fmt_int(n)} held-out test {words['nouns']} with a known flag ({fmt_int(pos)} membrane), calling "
            f"“membrane” at a calibrated probability of {fmt_pct(threshold, 1)} or more is right for "
            f"{fmt_pct(m.get('accuracy'))} of them (MCC {fmt_num(m.get('mcc'), 2)})."
        )
        out["metrics"] = [
            {"label": label, "value": fmt_num(m.get(key)), "better": "higher" if hi else "lower"}
            for key, label, hi in MEMBRANE_METRICS
            if key in m
        ]
    if calls is not None and not calls.empty and {"id", "membrane_prob", "membrane_call"} <= set(calls.columns):
        shown = calls.iloc[:MAX_CALL_ROWS]
        prob = _numeric(shown, "membrane_prob")
        out["rows"] = [
            {"id": str(i), "prob_text": fmt_pct(p, 1), "prob_sort": f"{p:.6f}" if _finite(p) else "-1", "call": str(c)}
            for i, p, c in zip(shown["id"], prob, shown["membrane_call"])
        ]
        out["n"] = len(calls)
        out["n_membrane"] = int((calls["membrane_call"] == "membrane").sum())
        out["truncated"] = len(calls) > MAX_CALL_ROWS
        out["has_calls"] = True
    return out


def _pick_reliability_bin(r: Mapping | None, target: float = 0.8) -> tuple[float, float] | None:
    """(confidence, accuracy) of the populated bin whose confidence is nearest ``target``."""
    if not r:
        return None
    conf = r.get("confidence") or []
    acc = r.get("accuracy") or []
    count = r.get("count") or []
    total = sum(c for c in count if _finite(c))
    best = None
    for c, a, k in zip(conf, acc, count):
        if not (_finite(c) and _finite(a) and _finite(k)) or k <= 0:
            continue
        if total and k < max(5, 0.01 * total):
            continue
        d = abs(float(c) - target)
        if best is None or d < best[0]:
            best = (d, float(c), float(a))
    return None if best is None else (best[1], best[2])


def _plain_sentence(kind: str, words: dict, metrics: dict, reliability_after: Mapping | None) -> str:
    n = metrics.get("n_test")
    row = metrics.get("calls_row") or "calibrated"  # the figures of the calls the report shows
    m = metrics.get(row) or metrics.get("calibrated") or metrics.get("uncalibrated") or {}
    model = "calibrated, prior-corrected model" if row == "prior_corrected" else "calibrated model"
    n_text = f"{int(n):,} " if _finite(n) else ""
    # calibration.json's reliability bins are the calibrated probabilities': not the corrected ones
    pick = _pick_reliability_bin(reliability_after) if row != "prior_corrected" else None
    ece = m.get("ece")
    if kind == "multilabel":
        first = (
            f"On {n_text}{words['held_out']}, the {model} gets the exact set of "
            f"{words['things']} right for {fmt_pct(m.get('exact_match'))}"
        )
        extra = []
        if _finite(m.get("jaccard")):
            extra.append(f"on average {fmt_pct(m.get('jaccard'))} overlap between called and true {words['things']}")
        if _finite(m.get("micro_f1")):
            extra.append(f"micro F1 {float(m['micro_f1']):.2f}")
        first += f" ({'; '.join(extra)})" if extra else ""
        if pick:
            second = (
                f"when it gives a {words['thing']} {pick[0] * 100:.0f}%, that {words['thing']} is "
                f"present about {pick[1] * 100:.0f}% of the time"
            )
        else:
            second = ""
    else:
        first = (
            f"On {n_text}{words['held_out']}, the {model} calls the right "
            f"{words['thing']} for {fmt_pct(m.get('accuracy'))}"
        )
        if _finite(m.get("balanced_accuracy")):
            first += f" (balanced accuracy {float(m['balanced_accuracy']):.2f})"
        second = f"when it says {pick[0] * 100:.0f}% it is right about {pick[1] * 100:.0f}% of the time" if pick else ""
    ece_text = f"ECE {float(ece):.2f}" if _finite(ece) else ""
    if ece_text and _finite(m.get("ece_floor")):
        # Binned ECE is biased upwards on a small test set: say how far even perfect calibration gets.
        ece_text += (
            f"; perfectly calibrated probabilities would show about {float(m['ece_floor']):.2f} "
            f"on {n_text}{words['nouns']}"
        )
    if second:
        return f"{first}; {second}" + (f" ({ece_text})." if ece_text else ".")
    return first + (f" (calibration error: {ece_text})." if ece_text else ".")


def _metrics_section(
    metrics: dict | None, kind: str, classes: list[str], words: dict, calibration: dict | None, path: Path
) -> dict:
    if metrics is None:
        return {"state": "missing", "file": str(path)}
    present = [(k, label) for k, label in METRIC_COLUMNS if isinstance(metrics.get(k), Mapping)]
    keys: list[str] = []
    for k, _ in present:
        for key in metrics[k]:
            if key not in keys and key not in REFERENCE_KEYS:
                keys.append(key)
    ordered = [k for k in METRIC_LABELS if k in keys] + [k for k in keys if k not in METRIC_LABELS]
    rows = []
    for key in ordered:
        label, higher = METRIC_LABELS.get(key, (key.replace("_", " ").capitalize(), None))
        rows.append(
            {
                "label": label,
                "key": key,
                "better": {True: "higher", False: "lower"}.get(higher, ""),
                "values": [fmt_num(metrics[k].get(key)) for k, _ in present],
            }
        )
    rel_after = ((calibration or {}).get("reliability") or {}).get("after")
    out: dict[str, Any] = {
        "state": "ok",
        "columns": [label for _, label in present],
        "rows": rows,
        "sentence": _plain_sentence(kind, words, metrics, rel_after),
        "n_test": metrics.get("n_test"),
        "chart": None,
        "chart_alt": "",
        "per_class": None,
    }
    per_class = metrics.get("per_class") or {}
    if per_class:
        pc_keys: list[str] = []
        for v in per_class.values():
            for key in v or {}:
                if key not in pc_keys:
                    pc_keys.append(key)
        out["per_class"] = {
            "columns": pc_keys,
            "rows": [
                {"label": c, "values": [fmt_int(v.get(k)) if k == "support" else fmt_num(v.get(k)) for k in pc_keys]}
                for c, v in per_class.items()
            ],
        }
    if kind == "multilabel":
        labels = [c for c in (classes or list(per_class)) if c in per_class]
        if labels and any("mcc" in (per_class[c] or {}) for c in labels):
            out["chart"] = plots.mcc_png(labels, [per_class[c].get("mcc") for c in labels])
            out["chart_kind"] = "mcc"
            out["chart_alt"] = f"Matthews correlation coefficient per {words['thing']} on the test set"
    else:
        conf = metrics.get("confusion") or {}
        if conf.get("matrix"):
            cls = conf.get("classes") or classes
            out["chart"] = plots.confusion_png(conf["matrix"], cls, true_label=words["true"], pred_label=words["pred"])
            out["chart_kind"] = "confusion"
            out["chart_alt"] = (
                f"Confusion matrix on the test set: rows are the true {words['thing']}, columns the prediction"
            )
    return out


def calibration_words(method: str, kind: str) -> str:
    """What calibration.json's method fitted, in the analyst's words."""
    if method in ("bcts", "vector") and kind == "multilabel":
        return "Platt scaling (a temperature and a bias per label)"
    if method == "bcts":
        return "temperature and bias scaling (BCTS)"
    if method == "vector":
        return "vector scaling (a temperature and a bias per class)"
    if method == "none":
        return "no rescaling (the class weighting undone only)"
    return "temperature scaling (one temperature per label)" if kind == "multilabel" else "temperature scaling"


def _calibration_section(cal: dict | None, kind: str, classes: list[str], path: Path) -> dict:
    if cal is None:
        return {"state": "missing", "file": str(path)}
    temp = cal.get("temperature")
    if isinstance(temp, list):
        names = cal.get("classes") or classes
        temps = [{"label": lab, "t": fmt_num(t, 2)} for lab, t in zip(names, temp)]
        caption_t = (
            f"Fitted temperature per {'label' if kind == 'multilabel' else 'class'}: "
            + ", ".join(f"{d['label']} {d['t']}" for d in temps)
            + "."
        )
    elif _finite(temp):
        temps = [{"label": "all classes", "t": fmt_num(temp, 2)}]
        caption_t = f"Fitted temperature T = {float(temp):.2f}"
        caption_t += (
            " (T > 1 softens over-confident probabilities)."
            if float(temp) > 1
            else " (T < 1 sharpens under-confident probabilities)."
            if float(temp) < 1
            else "."
        )
    else:
        temps, caption_t = [], "No temperature recorded."
    rel = cal.get("reliability") or {}
    image = None
    if rel.get("before") or rel.get("after"):
        multilabel = kind == "multilabel"
        image = plots.reliability_png(
            rel.get("before") or {},
            rel.get("after") or {},
            "Test split" + (" (all sample-label pairs)" if multilabel else ""),
            ylabel="Observed frequency of the label (%)" if multilabel else "Observed accuracy (%)",
        )
    val = cal.get("val") or {}
    val_rows = (
        [
            {
                "label": "Log loss (NLL)",
                "before": fmt_num(val.get("nll_before")),
                "after": fmt_num(val.get("nll_after")),
            },
            {
                "label": "Calibration error (ECE)",
                "before": fmt_num(val.get("ece_before")),
                "after": fmt_num(val.get("ece_after")),
            },
        ]
        if val
        else []
    )
    thresholds = cal.get("thresholds")
    return {
        "state": "ok",
        "method_words": calibration_words(cal.get("method", "temperature"), kind),
        "choice_sentence": _choice_sentence(cal.get("choice"), kind),
        "image": image,
        "caption": caption_t,
        "temps": temps,
        "val_rows": val_rows,
        "thresholds": (
            [{"label": lab, "t": fmt_pct(t)} for lab, t in zip(cal.get("classes") or classes, thresholds)]
            if isinstance(thresholds, list)
            else None
        ),
        "call_ratio": fmt_pct(cal["call_ratio"]) if cal.get("call_ratio") else None,
        "call_ratio_on_logits": cal.get("call_ratio_on") == "logits",
    }


def _choice_sentence(choice: Mapping | None, kind: str) -> str:
    """How calibration.method auto chose, from calibration.json's ``choice``."""
    if not isinstance(choice, Mapping) or not choice.get("candidates"):
        return ""
    metric = str(choice.get("metric", "")).replace("_", " ")
    table = choice["candidates"]
    scores = "; ".join(
        f"{calibration_words(m, kind)}: NLL {fmt_num(v.get('nll'))}"
        + (f", ECE {fmt_num(v['ece'])}" if _finite(v.get("ece")) else "")
        + f", {metric} {fmt_num(v.get(choice.get('metric')))}"
        for m, v in table.items()
    )
    chosen = calibration_words(str(choice.get("chosen")), kind)
    if choice.get("configured") != "auto":
        return f"The configuration names {chosen}. Cross-validated on the out-of-fold records: {scores}."
    return (
        f"Chosen automatically: {chosen}, {choice.get('reason', '')}. Each method was fitted on all but one "
        f"cross-fitting fold and scored on the one left out ({choice.get('n_folds')} folds, "
        f"{choice.get('n')} records): {scores}."
    )


#: priors.json heldout metrics in the page's words
HELDOUT_METRICS = {
    "accuracy": "accuracy",
    "micro_f1": "micro-F1",
    "balanced_accuracy": "balanced accuracy",
    "accuracy_at_target_priors": "accuracy at the configured class mix (each class's recall weighted by its prior)",
}


def _heldout_sentence(check: Mapping | None, method: str) -> str:
    """What prior correction did to the calls on held-out folds, with its bootstrap interval."""
    if not isinstance(check, Mapping) or not _finite(check.get("change")):
        return ""
    metric = HELDOUT_METRICS.get(str(check.get("metric")), str(check.get("metric")).replace("_", " "))
    redraws = check.get("redraws") or {}
    if method == "known":
        lead = "On held-out data (the cross-fitting folds' out-of-fold records), correcting to the configured priors changed"
    else:
        lead = f"On held-out data (each cross-fitting fold taken as a query), {method.upper()} changed"
    text = (
        f"{lead} the calls' {metric} from {float(check['before']):.3f} to {float(check['after']):.3f} "
        f"({float(check['change']):+.3f}; 95% bootstrap interval {float(check['ci_low']):+.3f} to "
        f"{float(check['ci_high']):+.3f})"
    )
    if redraws.get("n") and _finite(redraws.get("mean_change")):
        text += (
            f", and by {float(redraws['mean_change']):+.3f} on average over {int(redraws['n'])} re-drawn class "
            f"mixes ({fmt_pct(redraws.get('share_improved'))} of them improved)"
        )
    return text + "."


def _not_applied_why(decision: Mapping, method: str, reason: Any) -> str:
    """Why the calls are not prior-corrected, in the page's words; for a code the page does not
    know (or a file from before the codes), priors.json's own sentence."""
    before, after = decision.get("before"), decision.get("after")
    if decision.get("code") == "check_failed" and decision.get("split") == "heldout":
        return "it did not improve the calls on held-out data (below), so the label-shift assumption does not hold well enough."
    if decision.get("code") == "check_failed" and _finite(before) and _finite(after):
        metric = str(decision.get("metric") or "nll").upper()
        return (
            f"On the labelled test split {method.upper()} raised {metric} from {float(before):.3f} to "
            f"{float(after):.3f}, so the label-shift assumption does not hold well enough."
        )
    text = " ".join(str(reason or "").split())
    return text[:1].upper() + text[1:] if text else ""


def _priors_section(pri: dict | None, kind: str, classes: list[str], words: dict, path: Path) -> dict:
    if pri is None:
        return {"state": "missing", "file": str(path), "mix_word": "estimated"}
    method = str(pri.get("method") or "none")
    names = pri.get("classes") or classes
    train = pri.get("train_priors") or []
    query = pri.get("query_priors") or []
    decision = artifacts.decision_of(pri)
    code = decision["code"]
    out: dict[str, Any] = {
        "state": "ok",
        "method": method,
        "code": code,
        "image": None,
        "converged": pri.get("converged"),
        "iterations": pri.get("iterations"),
        "n_query": pri.get("n_query"),
        "test_rows": [],
        "rows": [],
        "shift_sentence": "",
        # applied: the calls are corrected; False: estimated but not applied (why says why); None: not recorded
        "applied": None if code is None else code == "applied",
        "why": "" if code in (None, "applied") else _not_applied_why(decision, method, pri.get("reason")),
        "heldout_sentence": _heldout_sentence(pri.get("heldout"), method),
        "mix_word": "configured" if method == "known" else "estimated",
    }
    if code in ("not_requested", "no_query") or not query or len(query) != len(names):
        out["state"] = "none"
        return out
    lo, hi = pri.get("ci_low"), pri.get("ci_high")
    have_ci = isinstance(lo, list) and isinstance(hi, list) and len(lo) == len(hi) == len(names)
    out["image"] = plots.priors_png(
        names,
        train,
        query,
        lo if have_ci else None,
        hi if have_ci else None,
        ylabel=f"Share with the {words['thing']} (%)" if kind == "multilabel" else f"Share of {words['nouns']} (%)",
    )
    for i, c in enumerate(names):
        out["rows"].append(
            {
                "label": c,
                "train": fmt_pct(train[i] if i < len(train) else None, 1),
                "query": fmt_pct(query[i], 1),
                "ci": f"{fmt_pct(lo[i], 1)} – {fmt_pct(hi[i], 1)}" if have_ci else "–",
            }
        )
    diffs = [
        (abs(float(q) - float(t)), c, t, q, i)
        for i, (c, t, q) in enumerate(zip(names, train, query))
        if _finite(t) and _finite(q)
    ]
    if diffs:
        _, c, t, q, i = max(diffs)
        ci = f" (95% interval {fmt_pct(lo[i])}–{fmt_pct(hi[i])})" if have_ci else ""
        out["shift_sentence"] = (
            f"The biggest difference from the training data is {c}: {fmt_pct(t)} of training "
            f"{words['nouns']} versus {'' if method == 'known' else 'an estimated '}{fmt_pct(q)} of the query "
            f"{words['nouns']}{ci}."
        )
    test = pri.get("test") or {}
    tp, ep = test.get("true_priors") or [], test.get("estimated_priors") or []
    if tp and ep:
        for c, t, e in zip(names, tp, ep):
            diff = (float(e) - float(t)) * 100 if _finite(t) and _finite(e) else None
            out["test_rows"].append(
                {
                    "label": c,
                    "true": fmt_pct(t, 1),
                    "est": fmt_pct(e, 1),
                    "diff": f"{diff:+.1f} pts" if diff is not None else "–",
                }
            )
    return out


#: Points of the stored accuracy-vs-coverage curve drawn at most (the table reads them all).
_MAX_CURVE_POINTS = 400


def _cutoff_text(t: float) -> str:
    return f"{t:.3f}".rstrip("0").rstrip(".") if t < 1 else "1"


def _table_cutoffs(curve: dict, current: float | None) -> list[float]:
    """Round cut-offs that keep someone, plus cut-offs keeping about 90/75/50/25% of the test
    samples (a weak model never reaches 0.6), plus the current one; one row per coverage."""
    conf = curve["threshold"]  # descending, one per distinct confidence
    cov = curve["coverage"]
    spread = []
    for target in (0.9, 0.75, 0.5, 0.25):
        i = next((k for k, c in enumerate(cov) if c >= target), None)
        if i is not None:
            spread.append(math.floor(conf[i] * 1000) / 1000)  # round down: keeps at least that share
    out, seen = [], set()
    for t in sorted(set(COVERAGE_CUTOFFS) | set(spread)):
        c = coverage_at(curve, t)[0]
        if c > 0 and round(c, 9) not in seen:
            out.append(t)
            seen.add(round(c, 9))
    if current is not None and current not in out:
        out.append(current)
    return sorted(out)


def _coverage_section(metrics: dict | None, kind: str, cutoff: float | None, words: dict, path: Path) -> dict:
    """The accuracy-vs-coverage curve that evaluate stored in metrics.json (``coverage``: the
    calibrated top probability of the test samples), with the configured cut-off marked."""
    if kind != "multiclass":
        return {"state": "not_applicable"}
    curve = (metrics or {}).get("coverage")
    if not isinstance(curve, Mapping) or not curve.get("n") or not curve.get("coverage"):
        return {"state": "missing", "file": str(path)}
    rows, marks = [], []
    for t in _table_cutoffs(curve, float(cutoff) if _finite(cutoff) else None):
        cov, acc = coverage_at(curve, t)
        current = _finite(cutoff) and abs(t - float(cutoff)) < 1e-9
        marks.append((t, cov, acc))
        rows.append(
            {
                "cutoff": _cutoff_text(t),
                "coverage": fmt_pct(cov),
                "accuracy": fmt_pct(acc) if cov else "–",
                "n": fmt_int(cov * curve["n"]),
                "current": current,
            }
        )
    step = max(1, len(curve["coverage"]) // _MAX_CURVE_POINTS)
    cov_pts = curve["coverage"][::step] + curve["coverage"][-1:]
    acc_pts = curve["accuracy"][::step] + curve["accuracy"][-1:]
    current = None
    sentence = ""
    if _finite(cutoff):
        cov, acc = coverage_at(curve, float(cutoff))
        current = (float(cutoff), cov, acc)
        if cov > 0:
            sentence = (
                f"With the current cut-off of {_cutoff_text(float(cutoff))}, {fmt_pct(cov)} of the test "
                f"{words['nouns']} get a confident call, and {fmt_pct(acc)} of those are right; "
                f"the other {fmt_pct(1 - cov)} are flagged uncertain."
            )
        else:
            sentence = (
                f"With the current cut-off of {_cutoff_text(float(cutoff))}, no test {words['nouns']} "
                f"reach it: every call would be flagged uncertain."
            )
    return {
        "state": "ok",
        "image": plots.coverage_png(cov_pts, acc_pts, marks, current),
        "rows": rows,
        "n": curve["n"],
        "sentence": sentence,
        "cutoff_text": _cutoff_text(float(cutoff)) if _finite(cutoff) else None,
        "overall": fmt_pct(curve["accuracy"][-1]),
    }


def _moved(metric: str, a: Any, b: Any, to_only: bool = False) -> str:
    """'raised balanced accuracy from 47% to 52%' (or 'to 52%'), 'left ... at 47%'."""
    pa, pb = fmt_pct(a), fmt_pct(b)
    if pa == pb:
        return f"left {metric} at {pa}"
    verb = "raised" if float(b) > float(a) else "lowered"
    return f"{verb} {metric} " + (f"to {pb}" if to_only else f"from {pa} to {pb}")


def _points(x: Any) -> str:
    return f"{float(x) * 100:+.0f}" if _finite(x) else "–"


def _ablation_section(ablation: dict | None, words: dict, path: Path) -> dict:
    """What class weighting and focal loss each change, from this run's ablation.json: one
    sentence for the analyst, a note on chance, and the figures behind both."""
    if ablation is None:
        return {"state": "missing", "file": str(path)}
    v = ablation.get("variants") or {}
    if not all(isinstance(v.get(k), Mapping) for k in ("cross_entropy", "class_weights", "focal")):
        return {"state": "missing", "file": str(path)}
    ce, cw, fo = v["cross_entropy"], v["class_weights"], v["focal"]
    support = {c: n for c, n in (ablation.get("test_support") or {}).items() if n}
    rare = min(support, key=lambda c: (support[c], c)) if support else None
    rare_text = ""
    if rare is not None and _finite(ce["recall"].get(rare)) and _finite(cw["recall"].get(rare)):
        rare_text = (
            f" (the rarest {words['thing']}, {rare}, went from {fmt_pct(ce['recall'][rare])} to "
            f"{fmt_pct(cw['recall'][rare])} of its test {words['nouns']} called right)"
        )
    ba = "balanced accuracy"
    ba_gloss = f"balanced accuracy (the share of each {words['thing']}'s test {words['nouns']} called right, averaged over {words['things']})"
    ece_gloss = "calibration error (the gap between stated confidence and how often calls are right)"
    sentence = (
        f"Retrained on this run's split with only the loss changed, weighting the {words['things']} by rarity "
        f"{_moved(ba_gloss, ce['balanced_accuracy'], cw['balanced_accuracy'])}{rare_text} and "
        f"{_moved(ece_gloss, ce['ece'], cw['ece'])}, while focal loss "
        f"{_moved(ba, ce['balanced_accuracy'], fo['balanced_accuracy'], to_only=True)} and "
        f"{_moved('calibration error', ce['ece'], fo['ece'], to_only=True)}, each compared with plain cross-entropy."
    )
    diffs = ablation.get("differences") or {}
    ci = []
    for name, label in (("class_weights", "class weighting"), ("focal", "focal loss")):
        d = diffs.get(name) or {}
        if _finite(d.get("ci_low")) and _finite(d.get("ci_high")):
            ci.append(f"{label} {_points(d['ci_low'])} to {_points(d['ci_high'])} points")
    chance = ""
    if ci:
        chance = (
            f"Each option was trained once and scored on {fmt_int(ablation.get('n_test'))} test {words['nouns']}; "
            f"95% bootstrap intervals of the change in balanced accuracy ({'; '.join(ci)}) show how much of it "
            "chance alone could make."
        )
    rows = []
    for key, label in (
        ("cross_entropy", "Plain cross-entropy"),
        ("class_weights", "Class-weighted cross-entropy"),
        ("focal", "Focal loss"),
    ):
        r = v[key]
        rows.append(
            {
                "label": label,
                "balanced_accuracy": fmt_num(r.get("balanced_accuracy")),
                "accuracy": fmt_num(r.get("accuracy")),
                "rare_recall": fmt_num((r.get("recall") or {}).get(rare)),
                "ece": fmt_num(r.get("ece")),
                "nll": fmt_num(r.get("nll")),
            }
        )
    return {"state": "ok", "sentence": sentence, "chance": chance, "rows": rows, "rare": rare, "file": str(path)}


def _training_section(model: dict | None, history: pd.DataFrame | None, path: Path) -> dict:
    if history is None:
        return {"state": "missing", "file": str(path)}
    if history.empty:
        return {"state": "empty"}
    df = pd.DataFrame({c: _numeric(history, c) for c in history.columns})
    n_folds = None
    if "fold" in df and "epoch" in df:  # cross-fitting: one run per fold; the page draws their mean
        n_folds = int(df["fold"].nunique())
        df = df.drop(columns="fold").groupby("epoch", as_index=False).mean()
    key = str((model or {}).get("val_metric") or "metric")
    label = METRIC_LABELS.get(key, (key.replace("_", " "), None))[0]
    metric = label[:1].lower() + label[1:]
    best = None
    if "val_loss" in df and df["val_loss"].notna().any():
        i = int(df["val_loss"].idxmin())
        best = {
            "epoch": fmt_int(df["epoch"].iat[i]) if "epoch" in df else str(i + 1),
            "val_loss": fmt_num(df["val_loss"].iat[i]),
        }
    return {
        "state": "ok",
        "image": plots.curves_png(df, metric_name=metric),
        "n_epochs": len(df),
        "metric": metric,
        "best": best,
        "n_folds": n_folds,
        "refit_epochs": ((model or {}).get("crossfit") or {}).get("refit_epochs"),
    }


def _task_context(name: str, task_dir: Path, settings: Mapping | None = None) -> dict:
    """Everything the template shows for one task, from its artifacts in ``task_dir`` and its
    settings (wording and ``uncertain_below``)."""
    task_dir = Path(task_dir)
    settings = settings or {}
    model = _read_json(task_dir / "model.json")
    calibration = _read_json(task_dir / "calibration.json")
    priors = _read_json(task_dir / "priors.json")
    metrics = _read_json(task_dir / "metrics.json")
    kind = next((d.get("kind") for d in (model, metrics, calibration, priors) if d and d.get("kind")), "multiclass")
    classes = next((list(d["classes"]) for d in (model, metrics, calibration, priors) if d and d.get("classes")), [])
    words = task_words(name, settings)
    calls_df = _read_tsv(task_dir / "calls.tsv")
    history = _read_tsv(task_dir / "history.tsv")
    model = model or {}
    return {
        "name": name,
        "anchor": f"task-{name}",
        "title": words["title"],
        "blurb": words["blurb"],
        "words": words,
        "kind": kind,
        "classes": classes,
        "n_classes": len(classes),
        "model": {
            "present": bool(model),
            "device": model.get("device") or "–",
            "epochs": fmt_int(model.get("epochs")),
            "train_time": fmt_seconds(model.get("train_seconds")),
        },
        "calls": _calls_section(calls_df, kind, classes, task_dir / "calls.tsv"),
        "metrics": _metrics_section(metrics, kind, classes, words, calibration, task_dir / "metrics.json"),
        "ablation": (
            _ablation_section(_read_json(task_dir / "ablation.json"), words, task_dir / "ablation.json")
            if kind == "multiclass"
            else {"state": "not_applicable"}
        ),
        "membrane": _membrane_section(model, metrics, calibration, calls_df, words),
        "calibration": _calibration_section(calibration, kind, classes, task_dir / "calibration.json"),
        "priors": _priors_section(priors, kind, classes, words, task_dir / "priors.json"),
        "coverage": _coverage_section(metrics, kind, settings.get("uncertain_below"), words, task_dir / "metrics.json"),
        "training": _training_section(model, history, task_dir / "history.tsv"),
        "data": _record_counts(task_dir / "records.parquet", kind, classes),
    }


def _prior_correction_word(priors: dict) -> str:
    """The run summary's one word on a task's prior correction."""
    if priors.get("state") == "missing":
        return "–"
    if priors.get("state") == "none":
        return "none"
    if priors.get("applied") is None:
        return priors.get("method", "–")
    return "applied" if priors["applied"] else "not applied"


def _summary_context(run_info: Mapping, tasks: list[dict]) -> dict:
    inputs = []
    for item in run_info.get("inputs") or []:
        sha = item.get("sha256")
        inputs.append(
            {
                "task": item.get("task", ""),
                "path": str(item.get("path", "")),
                "records": fmt_int(item.get("records")),
                "sha_short": shorten(sha, 12) if sha else "–",
                "sha": sha or "",
            }
        )
    commit = run_info.get("git_commit")
    groups = list(dict.fromkeys(t["words"]["groups"] for t in tasks)) or [GENERIC_NOUNS["groups"]]
    return {
        "date": str(run_info.get("date") or "–"),
        "version": str(run_info.get("version") or "–"),
        "commit_short": shorten(commit, 10) if commit else "not recorded (not a git checkout)",
        "commit": commit or "",
        "device": str(run_info.get("device") or "–"),
        # what a split group is, over every task: "projects or partitions"
        "groups": " or ".join([", ".join(groups[:-1]), groups[-1]] if len(groups) > 1 else groups),
        "inputs": inputs,
        "tasks": [
            {
                "name": t["name"],
                "title": t["title"],
                "anchor": t["anchor"],
                "kind": t["kind"],
                "n_classes": t["n_classes"],
                **t["model"],
                "n_query": t["calls"].get("n", 0) if t["calls"]["state"] != "missing" else None,
                "n_uncertain": t["calls"].get("n_uncertain"),
                "prior_correction": _prior_correction_word(t["priors"]),
            }
            for t in tasks
        ],
    }


# --------------------------------------------------------------------------- rendering


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(HERE)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = fmt_pct
    env.filters["num"] = fmt_num
    env.filters["int"] = fmt_int
    return env


def render_report(
    task_dirs: Mapping[str, Path], run_info: Mapping, settings: Mapping[str, Mapping] | None = None
) -> str:
    """The report's HTML as a string (see :func:`build_report`)."""
    settings = settings or {}
    tasks = [_task_context(name, Path(d), settings.get(name)) for name, d in task_dirs.items()]
    css = (HERE / STYLESHEET).read_text(encoding="utf-8")
    if "</style" in css.lower():
        raise InputError(HERE / STYLESHEET, "the stylesheet must not contain '</style'")
    template = _environment().get_template(TEMPLATE)
    return template.render(
        css=Markup(css),
        run=_summary_context(run_info, tasks),
        tasks=tasks,
    )


def build_report(
    task_dirs: Mapping[str, Path], out_html: Path, run_info: Mapping, settings: Mapping[str, Mapping] | None = None
) -> None:
    """Write the self-contained HTML report for ``task_dirs`` (task name -> results/{task})
    to ``out_html``, atomically.

    ``run_info`` holds ``date``, ``version``, ``git_commit`` (may be None), ``inputs`` (dicts
    with ``task``, ``path``, ``records``, ``sha256``) and ``device``. ``settings`` maps a task
    to the settings the page reads: ``title``, ``description``, ``nouns`` (see
    :func:`task_words`) and ``uncertain_below`` (marked on the accuracy-vs-coverage curve).
    Missing optional artifacts are stated on the page instead of failing.
    """
    html = render_report(task_dirs, run_info, settings)
    with artifacts.atomic_path(out_html) as tmp:
        tmp.write_text(html, encoding="utf-8")
