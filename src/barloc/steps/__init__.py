"""One module a workflow rule. Each ``run(inputs, outputs, params, threads)`` reads files and
writes files; workflow/scripts/*.py only hand Snakemake's objects to it."""
