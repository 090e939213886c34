"""Figures for the HTML report.

Every function takes plain Python/numpy inputs and returns a ``data:image/png;base64,...``
URI, so the page embeds its images and makes no network requests. Figures are drawn on a
bare :class:`matplotlib.figure.Figure` with the Agg canvas: no pyplot state, no GUI
backend, safe to call from a Snakemake job or a thread.
"""

from __future__ import annotations

import base64
import functools
import io
import math
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110

BEFORE = "#9a9a9a"
AFTER = "#1f6fb2"
TRAIN = "#7a7a7a"
QUERY = "#1f6fb2"
ACCENT = "#d9822b"

_RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _to_data_uri(fig: Figure) -> str:
    """Render ``fig`` to PNG, free it, and return a data URI."""
    buf = io.BytesIO()
    try:
        # No "Software" metadata: identical inputs give identical bytes.
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    finally:
        fig.clear()
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _floats(values: Sequence | None) -> np.ndarray:
    """Array of floats with ``None`` (JSON null) turned into NaN."""
    if values is None:
        return np.array([], dtype=float)
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _style(fn):
    """Draw ``fn``'s figure with the report's rc settings, leaving global state alone."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_RC):
            return fn(*args, **kwargs)

    return wrapper


def _label_width(labels: Sequence[str]) -> int:
    return max((len(str(s)) for s in labels), default=1)


@_style
def confusion_png(
    matrix: Sequence[Sequence[float]],
    classes: Sequence[str],
    *,
    true_label: str = "True class",
    pred_label: str = "Predicted class",
) -> str:
    """Confusion-matrix heatmap: rows are the true class, columns the predicted class.

    Cells are coloured by the row-normalised fraction (so small classes stay visible) and
    annotated with raw counts.
    """
    m = np.asarray(matrix, dtype=float).reshape(len(classes), len(classes))
    n = len(classes)
    row_sums = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, row_sums, out=np.zeros_like(m), where=row_sums > 0)

    side = min(9.0, 2.4 + 0.55 * n + 0.06 * _label_width(classes))
    fig = _figure(side + 1.0, side)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal")
    ax.set_xticks(range(n), labels=classes, rotation=35 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax.set_yticks(range(n), labels=classes)
    ax.set_xlabel(pred_label)
    ax.set_ylabel(true_label)
    ax.spines[:].set_visible(False)
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    fontsize = 9 if n <= 8 else 7
    for i in range(n):
        for j in range(n):
            count = m[i, j]
            text = f"{round(count):,}" if math.isfinite(count) else "–"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if frac[i, j] > 0.55 else "#222222",
                fontweight="bold" if i == j else "normal",
            )
    cbar = fig.colorbar(im, ax=ax, shrink=0.8)
    cbar.set_label("Share of the true class (%)")
    cbar.set_ticks([0, 0.25, 0.5, 0.75, 1.0], labels=["0", "25", "50", "75", "100"])
    return _to_data_uri(fig)


@_style
def reliability_png(before: Mapping, after: Mapping, title: str = "", *, ylabel: str = "Observed accuracy (%)") -> str:
    """Reliability diagram (confidence vs observed accuracy, in %) before and after
    temperature scaling, with the number of predictions per bin as a histogram below.

    ``before`` and ``after`` are the ``R`` dicts of ``calibration.json``: ``bin_lower``,
    ``bin_upper``, ``confidence``, ``accuracy``, ``count``. Empty bins are skipped.
    """
    fig = _figure(6.0, 5.4)
    grid = fig.add_gridspec(2, 1, height_ratios=[3.0, 1.0])
    ax = fig.add_subplot(grid[0])
    hx = fig.add_subplot(grid[1], sharex=ax)

    ax.plot([0, 100], [0, 100], color="#444444", linestyle=":", linewidth=1, label="Perfect calibration")
    series = [(before, "Before scaling", BEFORE, "s", "--"), (after, "After scaling", AFTER, "o", "-")]
    width_scale = []
    for r, label, colour, marker, ls in series:
        if not r:
            continue
        lower, upper = _floats(r.get("bin_lower")), _floats(r.get("bin_upper"))
        conf, acc = _floats(r.get("confidence")), _floats(r.get("accuracy"))
        count = np.nan_to_num(_floats(r.get("count")))
        ok = (count > 0) & np.isfinite(conf) & np.isfinite(acc)
        ax.plot(
            conf[ok] * 100,
            acc[ok] * 100,
            marker=marker,
            linestyle=ls,
            color=colour,
            label=label,
            markersize=5,
            linewidth=1.6,
        )
        width_scale.append((lower, upper, count, label, colour))

    for k, (lower, upper, count, label, colour) in enumerate(width_scale):
        if lower.size == 0 or upper.size != lower.size:
            continue
        widths = (upper - lower) * 100
        n_series = len(width_scale)
        bar_w = widths / max(n_series, 1)
        left = lower * 100 + k * bar_w
        hx.bar(left, count, width=bar_w * 0.92, align="edge", color=colour, label=label)

    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_ylabel(ylabel)
    ax.tick_params(labelbottom=False)
    ax.grid(color="#e5e5e5", linewidth=0.6)
    ax.legend(loc="upper left", frameon=False)
    if title:
        ax.set_title(title)
    hx.set_xlabel("Predicted probability / confidence (%)")
    hx.set_ylabel("Predictions")
    hx.grid(axis="y", color="#e5e5e5", linewidth=0.6)
    return _to_data_uri(fig)


@_style
def priors_png(
    classes: Sequence[str],
    train: Sequence[float],
    query: Sequence[float],
    lo: Sequence[float] | None = None,
    hi: Sequence[float] | None = None,
    *,
    ylabel: str = "Share of samples (%)",
) -> str:
    """Grouped bars: training priors vs estimated query priors (in %), with the bootstrap
    95% interval ``[lo, hi]`` as error bars on the query bars when given."""
    n = len(classes)
    x = np.arange(n)
    train_v = _floats(train) * 100
    query_v = _floats(query) * 100
    width = 0.38
    fig = _figure(min(10.0, 3.0 + 0.75 * n), 3.8)
    ax = fig.add_subplot()
    ax.bar(x - width / 2, train_v, width, color=TRAIN, label="Training data")
    yerr = None
    lo_v, hi_v = _floats(lo), _floats(hi)
    if lo_v.size == n and hi_v.size == n and n:
        lower = np.clip(query_v - lo_v * 100, 0, None)
        upper = np.clip(hi_v * 100 - query_v, 0, None)
        yerr = np.vstack([np.nan_to_num(lower), np.nan_to_num(upper)])
    ax.bar(
        x + width / 2,
        query_v,
        width,
        color=QUERY,
        label="Query samples (estimated)",
        yerr=yerr,
        capsize=3,
        error_kw={"elinewidth": 1, "ecolor": "#222222"},
    )
    rotate = n > 4 or _label_width(classes) > 12
    ax.set_xticks(x, labels=classes, rotation=35 if rotate else 0, ha="right" if rotate else "center")
    ax.set_ylabel(ylabel)
    top = np.nanmax(np.concatenate([train_v, query_v, hi_v * 100 if hi_v.size else np.array([0.0])]))
    ax.set_ylim(0, min(100.0, max(5.0, float(top) * 1.15)) if math.isfinite(top) else 100.0)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    fig.legend(frameon=False, loc="outside upper center", ncol=2)
    return _to_data_uri(fig)


@_style
def mcc_png(labels: Sequence[str], mcc: Sequence[float]) -> str:
    """Horizontal bars of the Matthews correlation coefficient per label (-1 to 1)."""
    values = _floats(mcc)
    n = len(labels)
    fig = _figure(6.0, 1.0 + 0.32 * max(n, 1))
    ax = fig.add_subplot()
    y = np.arange(n)
    colours = [AFTER if (math.isfinite(v) and v >= 0) else ACCENT for v in values]
    ax.barh(y, np.nan_to_num(values), color=colours, height=0.65)
    ax.set_yticks(y, labels=labels)
    ax.invert_yaxis()
    low = min(0.0, float(np.nanmin(values)) - 0.1) if n and np.isfinite(values).any() else 0.0
    ax.set_xlim(max(-1.0, low), 1.08)
    ax.axvline(0, color="#444444", linewidth=0.8)
    for yi, v in zip(y, values):
        text = f"{v:.2f}" if math.isfinite(v) else "n/a"
        ax.text(max(v, 0) + 0.01 if math.isfinite(v) else 0.01, yi, text, va="center", fontsize=8)
    ax.set_xlabel("MCC on the test set (1 = perfect, 0 = no better than chance)")
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    return _to_data_uri(fig)


@_style
def curves_png(history_df, metric_name: str = "validation metric") -> str:
    """Training and validation loss per epoch (left axis) and the validation metric
    (right axis) from ``history.tsv``."""
    epoch = _floats(list(history_df["epoch"])) if "epoch" in history_df else np.arange(len(history_df), dtype=float)
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    handles = []
    for col, label, colour, ls in (
        ("train_loss", "Training loss", TRAIN, "-"),
        ("val_loss", "Validation loss", AFTER, "-"),
    ):
        if col in history_df:
            (h,) = ax.plot(
                epoch,
                _floats(list(history_df[col])),
                color=colour,
                linestyle=ls,
                label=label,
                marker="o" if len(epoch) <= 30 else None,
                markersize=3,
            )
            handles.append(h)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss")
    ax.grid(color="#e5e5e5", linewidth=0.6)
    if "val_metric" in history_df:
        ax2 = ax.twinx()
        ax2.spines["right"].set_visible(True)
        (h,) = ax2.plot(
            epoch,
            _floats(list(history_df["val_metric"])),
            color=ACCENT,
            linestyle="--",
            label=f"Validation {metric_name}",
            marker="s" if len(epoch) <= 30 else None,
            markersize=3,
        )
        ax2.set_ylabel(f"Validation {metric_name}")
        handles.append(h)
    if len(epoch) and np.all(np.isfinite(epoch)) and len(epoch) <= 20:
        ax.set_xticks(epoch)
    if handles:
        fig.legend(handles=handles, frameon=False, loc="outside upper center", ncol=len(handles))
    return _to_data_uri(fig)


def _cutoff(t: float) -> str:
    return f"{t:.3f}".rstrip("0").rstrip(".")


@_style
def coverage_png(
    coverage: Sequence[float],
    accuracy: Sequence[float],
    marks: Sequence[tuple[float, float, float]] = (),
    current: tuple[float, float, float] | None = None,
) -> str:
    """Accuracy among the samples kept (y) against the share kept (x, coverage), both in %,
    as the cut-off on the calibrated top probability rises from 0 (keep all) to 1.

    ``marks`` are (cut-off, coverage, accuracy) points labelled with their cut-off;
    ``current`` is the configured uncertain cut-off, drawn in the accent colour.
    """
    cov, acc = _floats(coverage) * 100, _floats(accuracy) * 100
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
    ok = np.isfinite(cov) & np.isfinite(acc)
    ax.plot(cov[ok], acc[ok], color=AFTER, linewidth=1.8, label="Calibrated model")
    if ok.any():
        full = acc[ok][np.argmax(cov[ok])]
        ax.axhline(full, color=TRAIN, linestyle=":", linewidth=1, label=f"Accuracy on all samples ({full:.0f}%)")
    for t, c, a in marks:
        if math.isfinite(c) and math.isfinite(a) and c > 0:
            ax.plot([c * 100], [a * 100], "o", color=AFTER, markersize=4)
            ax.annotate(
                _cutoff(t), (c * 100, a * 100), textcoords="offset points", xytext=(4, 4), fontsize=7, color="#333333"
            )
    if current is not None and math.isfinite(current[1]) and math.isfinite(current[2]) and current[1] > 0:
        ax.plot(
            [current[1] * 100],
            [current[2] * 100],
            "D",
            color=ACCENT,
            markersize=7,
            label=f"Current cut-off {_cutoff(current[0])}",
        )
    ax.set_xlim(0, 102)
    low = float(np.nanmin(acc[ok])) if ok.any() else 0.0
    ax.set_ylim(max(0.0, min(low - 5, 50.0)), 101)
    ax.set_xlabel("Coverage: share of test samples called with confidence (%)")
    ax.set_ylabel("Accuracy among them (%)")
    ax.grid(color="#e5e5e5", linewidth=0.6)
    ax.legend(loc="lower left", frameon=False)
    return _to_data_uri(fig)
