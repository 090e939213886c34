"""train: fit the classifier on the train split, early-stopped on val (barloc.training), and
write the model, its val logits and the training history."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from barloc import extra_heads, soft
from barloc.artifacts import parquet_meta, present_columns, write_parquet, write_tsv
from barloc.modelio import save_model
from barloc.runtime import process_rank
from barloc.scoring import score_frame
from barloc.training import train_for_calls


def run(inputs, outputs, params, threads: int = 1) -> None:
    # group (the BOLD project) keeps the nearest-reference encoder from matching a record's own project.
    records = pd.read_parquet(
        inputs.records,
        columns=soft.parquet_columns(inputs.records, ["id", "sequence", "label"])
        + present_columns(inputs.records, [*extra_heads.heads(params.cfg), "group"]),
    )
    splits = pd.read_csv(inputs.splits, sep="\t", dtype=str)
    data = records.merge(splits, on="id")
    val = data[data["split"] == "val"]
    trained = train_for_calls(
        data[data["split"] == "train"],
        val,
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
    meta = dataclasses.replace(trained.meta, inputs=parquet_meta(inputs.records).get("inputs", {}))
    batch_size = int(params.cfg["train"]["batch_size"]) * 2
    write_parquet(score_frame(trained.val_model, meta, val, batch_size), outputs.val_logits)
    write_tsv(pd.DataFrame(trained.history), outputs.history)
    save_model(trained.model, meta, outputs.model, outputs.meta)
