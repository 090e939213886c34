"""Snakemake entry for the split rule; the logic is barloc.steps.split."""

from barloc.runtime import run_step
from barloc.steps.split import run

run_step(snakemake, run)
