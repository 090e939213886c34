"""Lint as CI runs it: ruff (lint and format), snakefmt and snakemake --lint stay clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = ["src", "tests", "benchmarks", "workflow/scripts"]


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize(
    "cmd",
    [
        ("ruff", "check", *PYTHON),
        ("ruff", "format", "--check", *PYTHON),
        ("snakefmt", "--check", "Snakefile", "workflow/rules"),
    ],
    ids=["ruff-check", "ruff-format", "snakefmt"],
)
def test_clean(cmd):
    res = run(sys.executable, "-m", *cmd)
    assert res.returncode == 0, (
        f"{' '.join(cmd)} is not clean (fix with the same command without --check):\n"
        f"{res.stdout[-4000:]}{res.stderr[-2000:]}"
    )


def test_snakemake_lint():
    res = run(sys.executable, "-m", "snakemake", "--lint", "--directory", str(REPO))
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "Congratulations" in out, out[-4000:]
