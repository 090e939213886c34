"""benchmarks/scale.py: its SYNTHETIC references read as a BOLD export the workflow labels, in
projects of their own, and its growth exponents are log-log slopes."""

from __future__ import annotations

import importlib.util
import math

import pytest
from conftest import REPO

from barloc.io.bold import read_bold


def _bench():
    spec = importlib.util.spec_from_file_location("bench_scale", REPO / "benchmarks" / "scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_synthetic_references_are_a_bold_export_in_projects(tmp_path):
    scale = _bench()
    ref = scale.synthetic_references(300, seed=1)
    path = tmp_path / "synthetic.tsv"
    ref.to_csv(path, sep="\t", index=False)
    rec = read_bold(path)
    assert len(rec) == 300 and rec["id"].str.startswith("SYN").all()
    # BOLD's project code is the processid before its first digit: one per synthetic project.
    assert rec["group"].str.fullmatch(r"SYN[A-Z]{4}").all() and 2 <= rec["group"].nunique() < 300
    lengths = rec["sequence"].str.len()
    assert lengths.min() >= 100 and lengths.std() > 5  # trimmed ends spread the lengths
    # Each project varies around its haplotypes: no two records of a big project all alike.
    big = rec.groupby("group")["sequence"].agg(["size", "nunique"]).query("size >= 5")
    assert (big["nunique"] > 1).all()
    _, labels = scale.labelled_sources()
    assert set(labels) <= {"Atlantic", "Pacific", "Indian", "Mediterranean"}


def test_growth_exponent_is_the_log_log_slope():
    scale = _bench()
    points = {"10000": {"s": 2.0}, "100000": {"s": 20.0 * 10**0.1}}
    assert scale.slope(points, "s") == pytest.approx(1.1, abs=1e-3)
    assert scale.slope({"10000": {"s": 1.0}}, "s") is None
    assert math.isclose(scale.slope({"10000": {"s": 3.0}, "100000": {"s": 3.0}}, "s"), 0.0)


def test_the_plot_is_drawn_from_a_result_and_skips_a_failed_size(tmp_path):
    """--plot-only draws the committed figures; a size recorded as failed has no point."""
    import json

    scale = _bench()
    result = json.loads((REPO / "benchmarks" / "results" / "scale.json").read_text())
    result["workflow"]["1000000"] = {"failed": "snakemake failed (rc 137)"}
    scale.plot(result, tmp_path / "scale.png")
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
