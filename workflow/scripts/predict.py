"""Snakemake entry for the predict rule; the logic is barloc.steps.predict."""

from barloc.runtime import run_step
from barloc.steps.predict import run

run_step(snakemake, run)
