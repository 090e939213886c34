"""End to end: the real workflow on the bundled real data with a tiny config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import STEP_FILES

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

pytestmark = pytest.mark.slow


def make_workdir(tmp: Path, edit=None) -> Path:
    """A work directory whose config/config.yaml is the tiny config with absolute paths."""
    cfg = yaml.safe_load((REPO / "tests/integration/config.yaml").read_text())
    cfg["geo_table"] = str(REPO / cfg["geo_table"])
    for task in cfg["tasks"].values():
        for key in ("reference", "query", "labels"):
            if key in task:
                task[key] = str(REPO / task[key])
    if edit:
        edit(cfg, tmp)
    (tmp / "config").mkdir(parents=True, exist_ok=True)
    (tmp / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = SNAKEMAKE + ["-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def run_dir(workflow_run) -> Path:
    return workflow_run


def test_every_step_wrote_its_outputs(run_dir):
    for task in ("fish_origin", "localization"):
        for name in STEP_FILES:  # every file a task's steps write
            assert (run_dir / "results" / task / name).stat().st_size > 0, (task, name)
        for step in ("ingest", "split", "train", "predict", "calibrate", "prior_shift", "evaluate"):
            assert (run_dir / "results/logs" / task / f"{step}.log").exists()


def test_fish_origin_outputs_are_real(run_dir):
    res = run_dir / "results/fish_origin"
    splits = pd.read_csv(res / "splits.tsv", sep="\t")
    records = pd.read_parquet(res / "records.parquet")
    groups = records.merge(splits, on="id").groupby("group")["split"].nunique()
    assert (groups == 1).all(), "a BOLD project straddles two splits"
    metrics = json.loads((res / "metrics.json").read_text())
    assert metrics["kind"] == "multiclass" and metrics["n_test"] > 50
    assert 0.0 <= metrics["calibrated"]["balanced_accuracy"] <= 1.0
    assert metrics["calibrated"]["nll"] <= metrics["uncalibrated"]["nll"] + 0.05
    calls = pd.read_csv(res / "calls.tsv", sep="\t")
    n_query = sum(1 for line in open(REPO / "resources/barcodes/market_samples.fasta") if line.startswith(">"))
    assert len(calls) == n_query
    p = calls.filter(like="p::").to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-4)
    assert set(calls["call"]) <= set(metrics["classes"])
    assert (calls["uncertain"] == (calls["probability"] < 0.6)).all()
    calib = json.loads((res / "calibration.json").read_text())
    assert calib["method"] == "vector" and len(calib["temperature"]) == len(calib["bias"]) == len(metrics["classes"])
    assert all(t > 0 for t in calib["temperature"])
    priors = json.loads((res / "priors.json").read_text())
    assert priors["method"] == "em" and abs(sum(priors["query_priors"]) - 1) < 1e-6
    assert all(lo <= q <= hi for lo, q, hi in zip(priors["ci_low"], priors["query_priors"], priors["ci_high"]))


def test_localization_outputs_are_real(run_dir):
    res = run_dir / "results/localization"
    splits = pd.read_csv(res / "splits.tsv", sep="\t")
    assert set(splits["split"]) == {"train", "test"} and (splits["split"] == "test").sum() == 400
    # the four non-test DeepLoc partitions are the cross-fitting folds
    assert sorted(splits.loc[splits["split"] == "train", "fold"].unique()) == [0, 1, 2, 3]
    metrics = json.loads((res / "metrics.json").read_text())
    assert len(metrics["classes"]) == 10
    for key in ("exact_match", "jaccard", "micro_f1", "macro_f1"):
        assert 0.0 <= metrics["calibrated"][key] <= 1.0
    calib = json.loads((res / "calibration.json").read_text())
    assert len(calib["temperature"]) == len(calib["thresholds"]) == 10
    assert 0.0 <= calib["call_ratio"] <= 1.0
    calls = pd.read_csv(res / "calls.tsv", sep="\t")
    assert len(calls) == 300 and calls["call"].str.len().gt(0).all()


def test_report_shows_both_tasks(run_dir):
    html = (run_dir / "results/report/index.html").read_text()
    assert 'id="task-fish_origin"' in html and 'id="task-localization"' in html
    assert "vector scaling" in html and "Fitted temperature per class" in html
    assert "Chosen automatically" in html  # localization: calibration.method auto
    assert "the mean over the 4 cross-fitting fold models" in html
    assert "On held-out data (each cross-fitting fold taken as a query)" in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_rerun_is_a_no_op(run_dir):
    res = snakemake(run_dir, "-n")
    assert res.returncode == 0 and "Nothing to be done" in (res.stdout + res.stderr)


def _scheduled(workdir: Path) -> set[tuple[str, str]]:
    """(rule, task) of every job a dry run schedules ("report" has no task)."""
    res = snakemake(workdir, "-n")
    assert res.returncode == 0, res.stderr[-3000:]
    jobs, rule = set(), None
    for line in (res.stdout + res.stderr).splitlines():
        line = line.strip()
        if line.startswith("rule ") and line.endswith(":"):
            rule = line[5:-1]
            if rule == "report":
                jobs.add((rule, ""))
        elif rule and line.startswith("wildcards:") and "task=" in line:
            jobs.add((rule, line.split("task=")[1].split(",")[0].strip()))
            rule = None
    return jobs


AFTER_CALIBRATION = {"prior_shift", "evaluate", "report"}


@pytest.mark.parametrize(
    "edit, reruns",
    [
        # a reporting cut-off: the calls and the page, no retrain
        (
            ("fish_origin", "uncertain_below", 0.7),
            {("prior_shift", "fish_origin"), ("evaluate", "fish_origin"), ("report", "")},
        ),
        # calibrate reads prior_shift.method too: auto judges calibrations by the calls made under known priors
        (
            ("fish_origin", "prior_shift.method", "none"),
            {("calibrate", "fish_origin"), ("prior_shift", "fish_origin"), ("evaluate", "fish_origin"), ("report", "")},
        ),
        (
            ("fish_origin", "prior_shift.bootstrap", 10),
            {("prior_shift", "fish_origin"), ("evaluate", "fish_origin"), ("report", "")},
        ),
        (
            ("localization", "calibration.method", "temperature"),
            {
                ("calibrate", "localization"),
                ("prior_shift", "localization"),
                ("evaluate", "localization"),
                ("report", ""),
            },
        ),
        (
            ("fish_origin", "train.lr", 0.002),
            {(r, "fish_origin") for r in ("train", "ablation", "predict", "calibrate", *AFTER_CALIBRATION - {"report"})}
            | {("report", "")},
        ),
        (
            ("fish_origin", "encoder.k", 3),
            {(r, "fish_origin") for r in ("train", "ablation", "predict", "calibrate", *AFTER_CALIBRATION - {"report"})}
            | {("report", "")},
        ),
        (("localization", "description", "Where proteins sit."), {("report", "")}),
    ],
)
def test_a_changed_key_reruns_its_readers_only(run_dir, edit, reruns):
    """Each rule gets only the config keys it reads, so a change reruns the rules from its first
    reader on and nothing upstream (Snakemake's params trigger)."""
    task, key, value = edit
    path = run_dir / "config/config.yaml"
    original = path.read_text()
    cfg = yaml.safe_load(original)
    block, _, sub = key.partition(".")
    if sub:
        cfg["tasks"][task].setdefault(block, {})[sub] = value
    else:
        cfg["tasks"][task][block] = value
    try:
        path.write_text(yaml.safe_dump(cfg))
        assert _scheduled(run_dir) == reruns
    finally:
        path.write_text(original)


def test_bad_query_stops_at_ingest_without_outputs(tmp_path):
    def bad_query(cfg, wd):
        bad = wd / "bad.fasta"
        bad.write_text(">ok1\nACGTACGTAC\n>broken2\nACGT!!ACGT\n")
        cfg["tasks"] = {"fish_origin": {**cfg["tasks"]["fish_origin"], "query": str(bad)}}

    wd = make_workdir(tmp_path, bad_query)
    res = snakemake(wd)
    assert res.returncode != 0
    log = (wd / "results/logs/fish_origin/ingest.log").read_text()
    assert "bad.fasta" in log and "broken2" in log and "position 5" in log
    assert not (wd / "results/fish_origin/records.parquet").exists()
    assert not list((wd / "results/fish_origin").glob(".*tmp")) if (wd / "results/fish_origin").exists() else True


def test_config_typo_is_refused(tmp_path):
    def typo(cfg, wd):
        cfg["tasks"]["fish_origin"]["encodr"] = cfg["tasks"]["fish_origin"].pop("encoder")

    wd = make_workdir(tmp_path, typo)
    res = snakemake(wd, "-n")
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "tasks.fish_origin: unknown key 'encodr' (did you mean 'encoder'?)" in out
