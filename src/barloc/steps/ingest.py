"""ingest: reference (+ labels) and query files -> one validated record table."""

from __future__ import annotations

import logging

import pandas as pd

from barloc.errors import InputError
from barloc.io import read_table
from barloc.runtime import atomic_path

log = logging.getLogger(__name__)


def load_reference(cfg: dict, geo_table: str | None) -> pd.DataFrame:
    """The labelled reference table; BOLD records get their label from a BOLD column or,
    for ``ocean_basin``, from the collection geography."""
    markers = cfg.get("markers", ["COI-5P"])
    df = read_table(
        cfg["reference"], cfg["format"], cfg["alphabet"], labels=cfg.get("labels"),
        markers=None if markers == "all" else markers, allowed_labels=cfg.get("classes"),
    )
    if cfg["format"] == "bold":
        target = cfg.get("label", "ocean_basin")
        if target == "ocean_basin":
            from barloc import geo  # only BOLD geography needs the basin table

            basins = geo.assign_basins(df, geo.load_basin_table(geo_table), cfg.get("basin_level", "basin"))
            df["label"] = basins["basin"].astype(object).where(basins["basin"].notna(), None)
            df["label_rule"] = basins["basin_rule"]
        elif target in df.columns:
            df["label"] = df[target].astype(object).where(df[target].notna() & (df[target] != ""), None)
        else:
            raise InputError(cfg["reference"], f"label column {target!r} is not in this BOLD export")
    return df


def drop_rare_classes(df: pd.DataFrame, kind: str, min_size: int) -> pd.DataFrame:
    """Classes with too few records cannot be split, trained and tested; mark them unknown."""
    if kind != "multiclass" or min_size <= 1:
        return df
    counts = df["label"].value_counts()
    rare = counts[counts < min_size]
    if len(rare):
        log.warning("classes with fewer than %d records left out of training: %s", min_size, dict(rare))
        df.loc[df["label"].isin(rare.index), "label"] = None
    return df


def run(inputs, outputs, params, threads: int = 1) -> None:
    cfg = params.cfg
    ref = load_reference(cfg, getattr(params, "geo_table", None))
    ref = drop_rare_classes(ref, cfg["kind"], int(cfg.get("min_class_size", 10)))
    ref["role"] = "reference"
    parts = [ref]
    if cfg.get("query"):
        query = read_table(cfg["query"], cfg.get("query_format", "fasta"), cfg["alphabet"], markers=None)
        query["label"] = None  # an analyst's query is never trained on, whatever it carries
        query["role"] = "query"
        overlap = ref["id"].isin(query["id"])
        if overlap.any():
            log.info("%d reference records are also in the query set; kept only as queries", int(overlap.sum()))
            parts[0] = ref[~overlap]
        parts.append(query)
    records = pd.concat(parts, ignore_index=True)
    usable = records[(records["role"] == "reference") & records["label"].notna()]
    if usable.empty:
        raise InputError(cfg["reference"], "no reference record has a usable label")
    if cfg.get("query") and (records["role"] == "query").sum() == 0:
        raise InputError(cfg["query"], "the query set has no usable records")
    log.info(
        "%s: %d reference records (%d labelled, %d classes), %d query records",
        params.task, (records["role"] == "reference").sum(), len(usable),
        usable["label"].str.split(";").explode().nunique(), (records["role"] == "query").sum(),
    )
    records["group"] = records["group"].astype(object).where(records["group"].notna(), None)
    with atomic_path(outputs.records) as tmp:
        _to_parquet(records, tmp)


def _to_parquet(df: pd.DataFrame, path) -> None:
    # Mixed-type metadata columns (e.g. NaN in text) must not break the writer.
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and col not in ("label", "group"):
            out[col] = out[col].map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    out.attrs = {}
    out.to_parquet(path, index=False)
