"""Snakemake entry for the report rule; the logic is barloc.steps.report."""

from barloc.runtime import run_step
from barloc.steps.report import run

run_step(snakemake, run)
