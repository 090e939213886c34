"""Snakemake entry for the ablation rule; the logic is barloc.steps.ablation."""

from barloc.runtime import run_step
from barloc.steps.ablation import run

run_step(snakemake, run)
