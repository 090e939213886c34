"""train: cross-fitting on the non-test records (barloc.training.crossfit): a fold model per
cross-fitting fold scores its fold, and the model refit on all of them calls. Writes the
calling model, the out-of-fold logits and the fold models' training history."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from barloc import extra_heads, soft
from barloc.artifacts import FOLD, ID, SPLIT, parquet_meta, present_columns, write_parquet, write_tsv
from barloc.modelio import save_model
from barloc.runtime import process_rank
from barloc.splits import read_splits
from barloc.training import cross_fit


def run(inputs, outputs, params, threads: int = 1) -> None:
    # group (the BOLD project) keeps the nearest-reference encoder from matching a record's own project.
    records = pd.read_parquet(
        inputs.records,
        columns=soft.parquet_columns(inputs.records, [ID, "sequence", "label"])
        + present_columns(inputs.records, [*extra_heads.heads(params.cfg), "group"]),
    )
    data = records.merge(read_splits(inputs.splits), on=ID)
    data = data[data[SPLIT] != "test"].reset_index(drop=True)
    fitted = cross_fit(
        data,
        data[FOLD].to_numpy(dtype=int),
        params.cfg,
        params.trainer,
        int(params.seed),
        params.task,
        # Not a rule output, so Snakemake keeps it when the job dies; a rerun resumes from it.
        checkpoint_dir=Path(outputs.model).parent / "checkpoints",
    )
    if process_rank() != 0:
        return  # a DDP worker Lightning started by rerunning this script: rank 0 writes
    # Provenance: checksums of the user files that ingest built records.parquet from.
    meta = dataclasses.replace(fitted.meta, inputs=parquet_meta(inputs.records).get("inputs", {}))
    write_parquet(fitted.oof, outputs.oof_logits)
    write_tsv(pd.DataFrame(fitted.history), outputs.history)
    save_model(fitted.model, meta, outputs.model, outputs.meta)
