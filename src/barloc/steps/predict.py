"""predict: the logits table of the task: the calling model's logits for the test and query
records, and the cross-fitting fold models' out-of-fold logits (split val) for the rest."""

from __future__ import annotations

import pandas as pd

from barloc import soft
from barloc.artifacts import GROUP, ID, LABEL, QUERY, ROLE, SEQUENCE, SPLIT, present_columns, write_parquet
from barloc.errors import InputError
from barloc.modelio import load_model
from barloc.scoring import score_frame
from barloc.splits import read_splits


def run(inputs, outputs, params, threads: int = 1) -> None:
    model, meta = load_model(inputs.model, inputs.meta)
    records = pd.read_parquet(
        inputs.records,
        columns=soft.parquet_columns(inputs.records, [ID, SEQUENCE, LABEL, ROLE])
        + present_columns(inputs.records, [*meta.heads, GROUP]),
    )
    splits = read_splits(inputs.splits)
    data = records.merge(splits[[ID, SPLIT]], on=ID, how="left")
    data.loc[data[ROLE] == QUERY, SPLIT] = QUERY
    data = data[data[SPLIT].isin(["test", QUERY])].reset_index(drop=True)
    oof = pd.read_parquet(inputs.oof_logits)
    if sorted(oof[ID]) != sorted(splits.loc[splits[SPLIT] != "test", ID]):
        raise InputError(inputs.oof_logits, "does not hold the logits of this split's non-test records; rerun train")
    batch_size = int(params.cfg["train"]["batch_size"]) * 2
    scored = score_frame(model, meta, data, batch_size)
    write_parquet(pd.concat([oof, scored], ignore_index=True), outputs.logits)
