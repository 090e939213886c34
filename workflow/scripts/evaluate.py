"""Snakemake entry for the evaluate rule; the logic is barloc.steps.evaluate."""

from barloc.runtime import run_step
from barloc.steps.evaluate import run

run_step(snakemake, run)
