"""Snakemake entry for the calibrate rule; the logic is barloc.steps.calibrate."""

from barloc.runtime import run_step
from barloc.steps.calibrate import run

run_step(snakemake, run)
