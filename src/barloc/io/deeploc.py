"""DeepLoc 2.0 CSV (ACC, Kingdom, Partition, Membrane, ten 0/1 location columns, Sequence)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from barloc.errors import InputError
from barloc.io.sequences import clean_sequence
from barloc.io.tabular import csv_rows, parse_float

log = logging.getLogger(__name__)

DEEPLOC_LOCATIONS: list[str] = [
    "Cytoplasm",
    "Nucleus",
    "Extracellular",
    "Cell membrane",
    "Mitochondrion",
    "Plastid",
    "Endoplasmic reticulum",
    "Lysosome/Vacuole",
    "Golgi apparatus",
    "Peroxisome",
]
_FLAG = {"0": False, "1": True, "0.0": False, "1.0": True}


def _partition(text: str) -> str | None:
    # Partitions are small integers; "2.0" from a spreadsheet round-trip means "2".
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() else text


def read_deeploc(path: str | Path) -> pd.DataFrame:
    """Read a DeepLoc 2.0 CSV (plain or gzip) into id, sequence, label, group, kingdom, membrane.

    label is the `;`-join of the location columns that are 1, in file order (None if none);
    group is the homology Partition. ``df.attrs["classes"]`` lists the location columns present.
    """
    rows = csv_rows(path, "DeepLoc CSV")
    first = next(rows, None)
    if first is None:
        raise InputError(path, "file is empty")
    header_line, header = first
    header = [h.strip() for h in header]
    index = {name: i for i, name in enumerate(header)}
    missing = [c for c in ("ACC", "Sequence") if c not in index]
    if missing:
        raise InputError(
            path,
            f"not a DeepLoc 2.0 CSV: header lacks {' and '.join(missing)}",
            line=header_line,
        )
    classes = [h for h in header if h in DEEPLOC_LOCATIONS]
    if not classes:
        raise InputError(
            path,
            f"not a DeepLoc 2.0 CSV: header has none of the location columns ({', '.join(DEEPLOC_LOCATIONS)})",
            line=header_line,
        )
    class_idx = [index[c] for c in classes]
    acc_i, seq_i = index["ACC"], index["Sequence"]
    part_i, king_i, mem_i = index.get("Partition"), index.get("Kingdom"), index.get("Membrane")

    out: dict[str, list] = {k: [] for k in ("id", "sequence", "label", "group", "kingdom", "membrane")}
    seen: dict[str, int] = {}
    for number, fields in rows:
        if len(fields) != len(header):
            raise InputError(path, f"row has {len(fields)} fields but the header has {len(header)}", line=number)
        acc = fields[acc_i].strip()
        if not acc:
            raise InputError(path, "row has an empty ACC", line=number)
        if acc in seen:
            raise InputError(
                path,
                f"duplicate ACC {acc!r} (first on line {seen[acc]}, again on line {number})",
                record=acc,
                line=number,
            )
        seen[acc] = number
        try:
            seq = clean_sequence(fields[seq_i], "protein", path, acc)
        except InputError as exc:
            raise InputError(path, exc.problem, record=acc, line=number) from None
        on = []
        for name, i in zip(classes, class_idx):
            flag = _FLAG.get(fields[i].strip())
            if flag is None:
                raise InputError(
                    path,
                    f"column {name!r} holds {fields[i]!r}, expected 0 or 1",
                    record=acc,
                    line=number,
                )
            if flag:
                on.append(name)
        out["id"].append(acc)
        out["sequence"].append(seq)
        out["label"].append(";".join(on) if on else None)
        out["group"].append(_partition(fields[part_i]) if part_i is not None else None)
        out["kingdom"].append(fields[king_i].strip() or None if king_i is not None else None)
        out["membrane"].append(parse_float(fields[mem_i].strip()) if mem_i is not None else math.nan)
    if not out["id"]:
        raise InputError(path, "DeepLoc CSV has a header but no rows")

    df = pd.DataFrame(
        {
            "id": out["id"],
            "sequence": out["sequence"],
            "label": pd.Series(out["label"], dtype=object),
            "group": pd.Series(out["group"], dtype=object),
            "kingdom": pd.Series(out["kingdom"], dtype=object),
            "membrane": pd.Series(out["membrane"], dtype=float),
        }
    )
    df.attrs["classes"] = classes
    n_unlabelled = int(df["label"].isna().sum())
    log.info("%s: read %d DeepLoc proteins (%d without a location)", path, len(df), n_unlabelled)
    return df
