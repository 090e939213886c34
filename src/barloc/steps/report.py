"""report: one self-contained HTML page over every task's results.

``params.tasks`` holds, per task, only what the page reads (``title``, ``description``,
``nouns``, ``uncertain_below`` and the ``inputs`` paths), so a change to any other config key
does not rerun the report. The page shows no config hash: a hash of these settings alone
would not identify the run's configuration.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

import barloc
from barloc.artifacts import ROLE, parquet_meta, read_json
from barloc.report import build_report
from barloc.runtime import sha256

log = logging.getLogger(__name__)

#: The input files run_info lists, each with the records.parquet role whose records it holds
#: (a labels sheet holds no records of its own).
INPUT_ROLES = (("reference", "reference"), ("labels", None), ("query", "query"))


def git_commit(where: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_info(tasks: Mapping[str, Mapping], task_dirs: Mapping[str, Path], workdir: Path) -> dict:
    """The run summary: date, version, git commit, the device(s) trained on, and each task's
    input files (``tasks[task]["inputs"]``) with their checksum and record count."""
    inputs = []
    for task, tdir in task_dirs.items():
        paths = tasks[task].get("inputs") or {}
        records = tdir / "records.parquet"
        roles = pd.read_parquet(records, columns=[ROLE])[ROLE].value_counts()
        # The checksums ingest took of the bytes it read: what the models were trained on,
        # even if a file has changed since.
        read = parquet_meta(records).get("inputs", {})
        for key, role in INPUT_ROLES:
            if paths.get(key):
                inputs.append(
                    {
                        "task": task,
                        "path": paths[key],
                        "sha256": read.get(str(paths[key])) or sha256(paths[key]),
                        "records": int(roles.get(role, 0)) if role else None,
                    }
                )
    devices = sorted({read_json(d / "model.json", "model.json").get("device") or "cpu" for d in task_dirs.values()})
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "version": barloc.__version__,
        "git_commit": git_commit(workdir),
        "inputs": inputs,
        "device": ", ".join(devices),
    }


def run(inputs, outputs, params, threads: int = 1) -> None:
    tasks = dict(params.tasks)
    task_dirs = {t: Path(p).parent for t, p in zip(tasks, inputs.metrics)}
    build_report(task_dirs, Path(outputs.html), run_info(tasks, task_dirs, Path.cwd()), tasks)
    log.info("report on %d task(s) (%s) written to %s", len(task_dirs), ", ".join(task_dirs), outputs.html)
