"""split: labelled reference records -> train/val/test, never splitting a group."""

from __future__ import annotations

import pandas as pd

from barloc.artifacts import GROUP, ID, LABEL, ROLE, write_tsv
from barloc.splits import assign_splits


def run(inputs, outputs, params, threads: int = 1) -> None:
    records = pd.read_parquet(inputs.records, columns=[ID, LABEL, GROUP, ROLE])
    write_tsv(assign_splits(records, params.cfg["split"], int(params.seed)), outputs.splits)
