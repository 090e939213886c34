"""The self-contained HTML report (``results/report/index.html``)."""

from barloc.report.html import build_report, render_report

__all__ = ["build_report", "render_report"]
