"""predict: logits for the val, test and query records."""

from __future__ import annotations

import numpy as np
import pandas as pd

from barloc import soft
from barloc.artifacts import GROUP, ID, LABEL, QUERY, ROLE, SEQUENCE, SPLIT, present_columns, write_parquet
from barloc.errors import InputError
from barloc.modelio import load_model
from barloc.scoring import score_frame


def run(inputs, outputs, params, threads: int = 1) -> None:
    model, meta = load_model(inputs.model, inputs.meta)
    records = pd.read_parquet(
        inputs.records,
        columns=soft.parquet_columns(inputs.records, [ID, SEQUENCE, LABEL, ROLE])
        + present_columns(inputs.records, [*meta.heads, GROUP]),
    )
    splits = pd.read_csv(inputs.splits, sep="\t", dtype=str)
    data = records.merge(splits, on=ID, how="left")
    data.loc[data[ROLE] == QUERY, SPLIT] = QUERY
    data = data[data[SPLIT].isin(["val", "test", QUERY])].reset_index(drop=True)
    batch_size = int(params.cfg["train"]["batch_size"]) * 2
    # The val rows' logits come from the train step: the model early-stopped on them, which is
    # the model here unless train.refit retrained it on train + val, so calibration is never
    # fitted on records the calling model trained on.
    val = (data[SPLIT] == "val").to_numpy()
    held = pd.read_parquet(inputs.val_logits)
    if held[ID].tolist() != data.loc[val, ID].tolist():
        raise InputError(inputs.val_logits, "does not hold the logits of this split's val records; rerun train")
    out = pd.concat([score_frame(model, meta, data[~val], batch_size), held], ignore_index=True)
    order = np.concatenate([np.flatnonzero(~val), np.flatnonzero(val)])
    out = out.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    write_parquet(out, outputs.logits)
