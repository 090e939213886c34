"""Snakemake entry for the prior_shift rule; the logic is barloc.steps.prior_shift."""

from barloc.runtime import run_step
from barloc.steps.prior_shift import run

run_step(snakemake, run)
