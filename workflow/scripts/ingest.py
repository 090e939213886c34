"""Snakemake entry for the ingest rule; the logic is barloc.steps.ingest."""

from barloc.runtime import run_step
from barloc.steps.ingest import run

run_step(snakemake, run)
