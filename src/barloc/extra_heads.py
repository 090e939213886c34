"""Extra sigmoid heads: outputs trained beside a task's own head on the same encoding, with
their own calibration, threshold and metrics, never mixed into the task's classes.

The one there is: DeepLoc 2.0's membrane/soluble flag (the CSV's ``Membrane`` column, which
ingest keeps as the ``membrane`` column of records.parquet), switched on with
``membrane_head: true`` on a multilabel task. It shares the encoder with the location heads
(a membrane protein's hydrophobic stretches are location evidence too) and adds
``loss.membrane_weight`` x its binary cross-entropy to the loss; records whose flag is
unknown (NaN) are left out of that term.

Its target rides as an extra column after the class columns of each record's target row, so
the data module needs no second target; its logit is written to logits.parquet as
``extra::membrane`` beside the record's flag (``membrane``); calibration.json holds its
Platt scaling and MCC-optimal threshold under ``extra_heads``, metrics.json its test metrics
under ``extra_heads``. The calls tables (the workflow's calls.tsv and ``barloc predict``'s)
get its calibrated probability and call as ``membrane_prob`` and ``membrane_call``
(:func:`add_call_columns`).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score, matthews_corrcoef
from torch import nn

from barloc import calibrate as cal
from barloc.errors import InputError
from barloc.metrics import mcc_thresholds

EXTRA = "extra::"
#: config key -> head name (= the record column that holds its 0/1 target)
HEADS = {"membrane_head": "membrane"}
#: head name -> its call at or above the head's threshold, and below it
CALL_WORDS = {"membrane": ("membrane", "soluble")}


def heads(cfg: dict) -> list[str]:
    """The extra heads a task configures, in a fixed order."""
    names = [name for key, name in HEADS.items() if cfg.get(key)]
    if names and cfg.get("kind") != "multilabel":
        raise InputError(None, f"{', '.join(k for k in HEADS if cfg.get(k))}: only multilabel tasks take extra heads")
    return names


def check_columns(records: pd.DataFrame, names: list[str], source) -> None:
    for name in names:
        if name not in records.columns or not records[name].notna().any():
            raise InputError(
                source,
                f"{name}_head is set but no record has a {name} flag "
                "(the DeepLoc CSV's Membrane column; other formats have none)",
            )


def append_targets(Y: np.ndarray, part: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Class target rows with each extra head's 0/1 flag (NaN = unknown) appended."""
    if not names:
        return Y
    cols = [pd.to_numeric(part[n], errors="coerce").to_numpy(np.float32)[:, None] for n in names]
    return np.concatenate([Y.astype(np.float32), *cols], axis=1)


def masked_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the known (non-NaN) targets; 0 when none is known. Every
    logit takes part in the graph, so DDP sees the head used in every step."""
    known = ~torch.isnan(target)
    bce = nn.functional.binary_cross_entropy_with_logits(
        logits.float(), torch.nan_to_num(target.float()), reduction="none"
    )
    return (bce * known).sum() / known.sum().clamp_min(1)


class WithExtraHeads(nn.Module):
    """A classifier whose forward returns its class logits followed by its extra heads'
    logits, from one pass of the encoder (for :func:`barloc.data.predict_logits`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = SimpleNamespace(out_features=model.head.out_features + model.extra_head.out_features)

    def forward(self, batch: dict) -> torch.Tensor:
        logits, extra = self.model.forward_all(batch)
        return torch.cat([logits, extra], dim=1)


def logit_columns(out: pd.DataFrame, logits: np.ndarray, data: pd.DataFrame, names: list[str], k: int) -> pd.DataFrame:
    """Add each extra head's logit (``extra::name``) and the records' flag (``name``) to a
    logits frame whose first ``k`` logit columns are the classes'."""
    for j, name in enumerate(names):
        out[EXTRA + name] = logits[:, k + j]
        out[name] = pd.to_numeric(data[name], errors="coerce").to_numpy(np.float64)
    return out


def _split(df: pd.DataFrame, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    m = (df["split"] == split).to_numpy() & df[name].notna().to_numpy()
    return df.loc[m, EXTRA + name].to_numpy(np.float64)[:, None], df.loc[m, name].to_numpy(np.float64)[:, None]


def fit_calibration(df: pd.DataFrame, names: list[str]) -> dict:
    """Per head: Platt scaling (temperature and bias) and the MCC-optimal threshold, on val."""
    out = {}
    for name in names:
        z, y = _split(df, name, "val")
        if len(y) == 0 or y.min() == y.max():
            raise InputError(None, f"the val split needs both values of {name} to calibrate the {name} head")
        t, b = cal.fit_platt(z, y)
        params = {"temperature": float(t[0]), "bias": float(b[0])}
        out[name] = {**params, "threshold": float(mcc_thresholds(probabilities(z, params), y)[0]), "n_val": int(len(y))}
    return out


def probabilities(z: np.ndarray, params: dict) -> np.ndarray:
    """Calibrated P(flag) from an extra head's logits (its loss is unweighted: no offset)."""
    return cal.apply(z, "multilabel", {"temperature": params["temperature"], "bias": params["bias"]})


def add_call_columns(
    table: pd.DataFrame, z: np.ndarray, calibration: dict, names: list[str], source: object = None
) -> pd.DataFrame:
    """A calls table with each extra head's ``{name}_prob`` (calibrated P(flag), rounded as the
    ``p::`` columns are) and ``{name}_call`` (``CALL_WORDS[name]``: the first at or above the
    head's calibrated threshold, the second below it) appended; ``z`` holds the rows' extra
    logits in ``names`` order and ``calibration`` is calibration.json's ``extra_heads``."""
    z = np.asarray(z, dtype=np.float64).reshape(len(table), len(names))
    for j, name in enumerate(names):
        params = (calibration or {}).get(name)
        if not params:
            raise InputError(
                source,
                f"the model has a {name} head but calibration.json has no "
                f"extra_heads.{name} (rerun the calibrate step)",
            )
        p = probabilities(z[:, j : j + 1], params)[:, 0]
        yes, no = CALL_WORDS.get(name, (name, f"not {name}"))
        table[f"{name}_prob"] = np.round(p, 6)
        table[f"{name}_call"] = np.where(p >= params["threshold"], yes, no)
    return table


def binary_metrics(p: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    y, pred = y.astype(bool).ravel(), (p.ravel() >= threshold)
    q = np.clip(p.ravel(), 1e-12, 1 - 1e-12)
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "threshold": float(threshold),
        "mcc": float(matthews_corrcoef(y, pred)) if len(y) else float("nan"),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "nll": float(-(y * np.log(q) + (~y) * np.log(1 - q)).mean()) if len(y) else float("nan"),
        "ece": cal.ece_from_bins(cal.multilabel_reliability(q, y)) if len(y) else float("nan"),
    }


def evaluate(df: pd.DataFrame, calibration: dict) -> dict:
    """Test metrics of each calibrated extra head at its val threshold."""
    out = {}
    for name, params in calibration.items():
        z, y = _split(df, name, "test")
        out[name] = binary_metrics(probabilities(z, params), y, params["threshold"])
    return out
