"""A task's records: the reference (labels from the file, a labels sheet or BOLD geography)
and the query, length-limited, rare classes dropped, as one validated table (docs/artifacts.md)."""

from __future__ import annotations

import logging

import pandas as pd

from barloc import soft
from barloc.encode import clip_terminal
from barloc.errors import InputError
from barloc.io import read_table
from barloc.runtime import input_checksums, versions

log = logging.getLogger(__name__)


def load_reference(cfg: dict, geo_table: str | None) -> pd.DataFrame:
    """The labelled reference table; BOLD records get their label from a BOLD column or,
    for ``ocean_basin``, from the collection geography."""
    markers = cfg["markers"]
    df = read_table(
        cfg["reference"],
        cfg["format"],
        cfg["alphabet"],
        labels=cfg.get("labels"),
        markers=None if markers == "all" else markers,
        allowed_labels=cfg.get("classes"),
    )
    if cfg["format"] == "bold":
        df = df.drop(columns=[soft.SOFT], errors="ignore")  # BOLD labels come from BOLD itself
        target = cfg["label"]
        if target == "ocean_basin":
            from barloc import geo  # only BOLD geography needs the basin table

            basins = geo.assign_basins(df, geo.load_basin_table(geo_table), cfg["basin_level"])
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
    if soft.has_soft(df):
        # A class counts its records by nominal (most probable) label; one that only soft
        # targets mention has none.
        extra = sorted(soft.classes_in(df[soft.SOFT]) - set(counts.index))
        counts = pd.concat([counts, pd.Series(0, index=extra, dtype=counts.dtype)])
    rare = counts[counts < min_size]
    if len(rare):
        log.warning("classes with fewer than %d records left out of training: %s", min_size, dict(rare))
        df = soft.drop_classes(df, set(rare.index))
        df.loc[df["label"].isin(rare.index), "label"] = None
    return df


def limit_length(df: pd.DataFrame, cfg: dict, path) -> pd.DataFrame:
    """Apply the task's ``max_length`` to the sequences read from ``path``.

    ``on_long: clip`` (the default) keeps the first ``max_length`` bases of DNA (barcodes are
    read 5' to 3') and both ends of a protein (targeting signals sit at the N- and
    C-termini, see :func:`barloc.encode.clip_terminal`), logging how many were clipped;
    ``on_long: refuse`` stops at the first over-long record.
    """
    max_length = cfg.get("max_length")
    if max_length is None or df.empty:
        return df
    max_length = int(max_length)
    lengths = df["sequence"].str.len()
    long = lengths > max_length
    if not long.any():
        return df
    unit = "bases" if cfg["alphabet"] == "dna" else "residues"
    if cfg["on_long"] == "refuse":
        first = long.idxmax()
        raise InputError(
            path,
            f"sequence is {lengths[first]:,} {unit} long, over max_length {max_length:,} "
            f"({int(long.sum())} such record(s); set on_long: clip to clip them instead)",
            record=str(df.at[first, "id"]),
        )
    if cfg["alphabet"] == "dna":

        def clip(s: str) -> str:
            return s[:max_length]

        kept = f"the first {max_length} bases"
    else:

        def clip(s: str) -> str:
            return clip_terminal(s, max_length)

        kept = f"the first {(max_length + 1) // 2} and last {max_length // 2} residues"
    df = df.copy()
    df.loc[long, "sequence"] = df.loc[long, "sequence"].map(clip)
    log.warning(
        "%s: clipped %d of %d sequences longer than max_length %d (kept %s; longest was %d)",
        path,
        int(long.sum()),
        len(df),
        max_length,
        kept,
        int(lengths.max()),
    )
    return df


def task_inputs(cfg: dict, geo_table: str | None) -> list:
    """The files whose bytes decide the record table, for the provenance checksums."""
    files = [cfg["reference"], cfg.get("labels"), cfg.get("query")]
    if cfg["format"] == "bold" and cfg["label"] == "ocean_basin":
        files.append(geo_table)
    return files


def build_records(cfg: dict, geo_table: str | None, task: str = "") -> tuple[pd.DataFrame, dict]:
    """The record table of a task (reference, then query records) and its provenance metadata."""
    ref = load_reference(cfg, geo_table)
    if cfg["kind"] != "multiclass" and soft.has_soft(ref):
        first = ref.loc[ref[soft.SOFT].notna(), "id"].iloc[0]
        raise InputError(
            cfg.get("labels") or cfg["reference"],
            f"row has probabilities (a soft target), which only a multiclass task can train on; "
            f"this task is {cfg['kind']}: give 0/1 in every label column",
            record=str(first),
        )
    ref = limit_length(ref, cfg, cfg["reference"])
    ref = drop_rare_classes(ref, cfg["kind"], int(cfg["min_class_size"]))
    ref["role"] = "reference"
    parts = [ref]
    if cfg.get("query"):
        query = read_table(cfg["query"], cfg["query_format"], cfg["alphabet"], markers=None)
        query = limit_length(query, cfg, cfg["query"])
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
        task,
        (records["role"] == "reference").sum(),
        len(usable),
        usable["label"].str.split(";").explode().nunique(),
        (records["role"] == "query").sum(),
    )
    records["group"] = records["group"].astype(object).where(records["group"].notna(), None)
    # Provenance: which bytes this table came from (the train step copies it to model.json).
    meta = {"task": task, "inputs": input_checksums(task_inputs(cfg, geo_table)), "versions": versions()}
    return records, meta


def write_records(df: pd.DataFrame, path, meta: dict | None = None) -> None:
    """records.parquet, with the provenance ``meta`` in its key-value metadata."""
    # Mixed-type metadata columns (e.g. NaN in text) must not break the writer.
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and col not in ("label", "group"):
            out[col] = out[col].map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    out.attrs = {}
    from barloc.artifacts import write_parquet

    write_parquet(out, path, meta)
