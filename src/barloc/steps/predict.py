"""predict: logits for the val, test and query records."""

from __future__ import annotations

import numpy as np
import pandas as pd

from barloc import extra_heads, soft
from barloc.data import EncodedDataset, group_ids, predict_logits
from barloc.modelio import load_model
from barloc.runtime import atomic_path, present_columns

LOGIT = "logit::"


def logits_frame(ids, split, labels, logits: np.ndarray, classes: list[str]) -> pd.DataFrame:
    df = pd.DataFrame({"id": list(ids), "split": list(split), "label": list(labels)})
    return pd.concat([df, pd.DataFrame(logits, columns=[LOGIT + c for c in classes])], axis=1)


def read_logits(path, classes: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The frame and its (n, classes) logit matrix, in ``classes`` order."""
    df = pd.read_parquet(path)
    return df, df[[LOGIT + c for c in classes]].to_numpy(dtype=np.float64)


def score_frame(model, meta: dict, data: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """The logits frame of ``data``'s records (columns id, split, label, sequence; group, the
    extra heads' targets and soft targets when present), the extra heads' logits included."""
    extra = meta.get("extra_heads", [])
    data = data.reset_index(drop=True)
    ds = EncodedDataset(data["sequence"].tolist(), meta["encoder"], meta["alphabet"],
                        groups=group_ids(data, meta.get("reference_groups")))
    logits = predict_logits(extra_heads.WithExtraHeads(model) if extra else model, ds, batch_size)
    k = len(meta["classes"])
    out = logits_frame(data["id"], data["split"], data["label"], logits[:, :k], meta["classes"])
    out = extra_heads.logit_columns(out, logits, data, extra, k)
    if soft.SOFT in data:  # so that calibration and evaluation can leave soft targets out
        out.insert(3, soft.SOFT, data[soft.SOFT].where(data[soft.SOFT].notna(), None).to_numpy())
    return out


def run(inputs, outputs, params, threads: int = 1) -> None:
    model, meta = load_model(inputs.model, inputs.meta)
    extra = meta.get("extra_heads", [])
    records = pd.read_parquet(inputs.records, columns=soft.parquet_columns(inputs.records, ["id", "sequence", "label", "role"])
                              + present_columns(inputs.records, [*extra, "group"]))
    splits = pd.read_csv(inputs.splits, sep="\t", dtype=str)
    data = records.merge(splits, on="id", how="left")
    data.loc[data["role"] == "query", "split"] = "query"
    data = data[data["split"].isin(["val", "test", "query"])].reset_index(drop=True)
    batch_size = int(params.cfg.get("train", {}).get("batch_size", 64)) * 2
    # The val rows' logits come from the train step: the model early-stopped on them, which is
    # the model here unless train.refit retrained it on train + val, so calibration is never
    # fitted on records the calling model trained on.
    val = (data["split"] == "val").to_numpy()
    held = pd.read_parquet(inputs.val_logits)
    if held["id"].tolist() != data.loc[val, "id"].tolist():
        raise RuntimeError(f"{inputs.val_logits} does not hold the logits of this split's val records; rerun train")
    out = pd.concat([score_frame(model, meta, data[~val], batch_size), held], ignore_index=True)
    order = np.concatenate([np.flatnonzero(~val), np.flatnonzero(val)])
    out = out.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    with atomic_path(outputs.logits) as tmp:
        out.to_parquet(tmp, index=False)
