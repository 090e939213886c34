"""report: one self-contained HTML page over every task's results."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import subprocess
from pathlib import Path

import pandas as pd

import barloc
from barloc.report import build_report
from barloc.runtime import read_json, sha256

log = logging.getLogger(__name__)


def git_commit(where: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(where), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_info(config: dict, task_dirs: dict[str, Path], workdir: Path) -> dict:
    inputs = []
    for task, tdir in task_dirs.items():
        cfg = config["tasks"][task]
        roles = pd.read_parquet(tdir / "records.parquet", columns=["role"])["role"].value_counts()
        for key, role in (("reference", "reference"), ("labels", None), ("query", "query")):
            if cfg.get(key):
                inputs.append({"task": task, "path": cfg[key], "sha256": sha256(cfg[key]),
                               "records": int(roles.get(role, 0)) if role else None})
    devices = sorted({read_json(d / "model.json").get("device", "cpu") for d in task_dirs.values()})
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": barloc.__version__, "git_commit": git_commit(workdir),
        "config_hash": config_hash(config), "inputs": inputs, "device": ", ".join(devices),
        "uncertain_below": {t: float(config["tasks"][t].get("uncertain_below", 0.6)) for t in task_dirs},
    }


def run(inputs, outputs, params, threads: int = 1) -> None:
    task_dirs = {t: Path(p).parent for t, p in zip(params.tasks, inputs.metrics)}
    build_report(task_dirs, Path(outputs.html), run_info(params.config, task_dirs, Path.cwd()))
    log.info("report on %d task(s) (%s) written to %s", len(task_dirs), ", ".join(task_dirs), outputs.html)
