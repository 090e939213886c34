"""A trained model's logits for a table of records, as the logits table (docs/artifacts.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from barloc import extra_heads, soft
from barloc.artifacts import ID, LABEL, SEQUENCE, SPLIT, ModelMeta, logit_columns
from barloc.data import EncodedDataset, group_ids, predict_logits


def logits_frame(ids, split, labels, logits: np.ndarray, classes: list[str]) -> pd.DataFrame:
    df = pd.DataFrame({ID: list(ids), SPLIT: list(split), LABEL: list(labels)})
    return pd.concat([df, pd.DataFrame(logits, columns=logit_columns(classes))], axis=1)


#: records encoded and scored at a time, so a large test or query set's profiles never all sit in memory
SCORE_CHUNK = 20_000


def model_logits(model, meta: ModelMeta, data: pd.DataFrame, batch_size: int, device: str = "cpu") -> np.ndarray:
    """(n, classes + extra heads) logits of ``data``'s sequences, in row order, ``SCORE_CHUNK``
    records at a time; a nearest-reference model never scores a record against references of
    its own group (column ``group``)."""
    net = extra_heads.WithExtraHeads(model) if meta.heads else model
    groups = group_ids(data, meta.reference_groups)
    seqs = data[SEQUENCE].tolist()
    parts = [
        predict_logits(
            net,
            EncodedDataset(
                seqs[a : a + SCORE_CHUNK],
                meta.encoder,
                meta.alphabet,
                groups=None if groups is None else groups[a : a + SCORE_CHUNK],
            ),
            batch_size,
            device,
        )
        for a in range(0, len(seqs), SCORE_CHUNK)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, net.head.out_features), dtype=np.float32)


def score_frame(model, meta: ModelMeta, data: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """The logits table of ``data``'s records (columns id, split, label, sequence; group, the
    extra heads' targets and soft targets when present), the extra heads' logits included."""
    data = data.reset_index(drop=True)
    logits = model_logits(model, meta, data, batch_size)
    k = len(meta.classes)
    out = logits_frame(data[ID], data[SPLIT], data[LABEL], logits[:, :k], meta.classes)
    out = extra_heads.logit_columns(out, logits, data, meta.heads, k)
    if soft.SOFT in data:  # so that calibration and evaluation can leave soft targets out
        out.insert(3, soft.SOFT, data[soft.SOFT].where(data[soft.SOFT].notna(), None).to_numpy())
    return out
