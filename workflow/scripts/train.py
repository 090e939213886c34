"""Snakemake entry for the train rule; the logic is barloc.steps.train."""

from barloc.runtime import run_step
from barloc.steps.train import run

run_step(snakemake, run)
