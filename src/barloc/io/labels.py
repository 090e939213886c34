"""Labels sheets: a `label` column (A) or one 0/1 column per label (B), keyed by sequence id."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from barloc.errors import InputError
from barloc.io.tabular import csv_rows

log = logging.getLogger(__name__)

_ONE = {"1", "1.0"}
_ZERO = {"0", "0.0"}


def _split_rows(path: str | Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, stripped fields) for non-blank rows."""
    for line, fields in csv_rows(path, "labels sheet", delimiter):
        yield line, [f.strip() for f in fields]


def _normalise_multilabel(value: str) -> str | None:
    parts = [p.strip() for p in value.split(";")]
    parts = [p for p in parts if p]
    return ";".join(parts) if parts else None


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read a TSV (or .csv) labels sheet into columns id, label (str or None) [, group].

    Form A has a `label` column (`;` separates labels, empty = unknown). Form B has one 0/1
    column per label; its label is the `;`-join of the 1-columns in column order and the
    column names are kept in ``df.attrs["classes"]``.
    """
    delimiter = "," if Path(path).suffix.lower() == ".csv" else "\t"
    rows = iter(_split_rows(path, delimiter))
    first = next(rows, None)
    if first is None:
        raise InputError(path, "labels sheet is empty")
    header_line, header = first
    lowered = [h.lower() for h in header]
    dupes = sorted({h for h in lowered if lowered.count(h) > 1})
    if dupes:
        raise InputError(path, f"header repeats column {dupes[0]!r}", line=header_line)
    if len(header) == 1 and delimiter == "\t" and "," in header[0]:
        raise InputError(
            path,
            "header has a single column with commas in it; a comma-separated sheet must be "
            "named .csv",
            line=header_line,
        )
    if not header[0] and "id" not in lowered:
        raise InputError(
            path, "header has no id column (name it 'id' or put ids first)", line=header_line
        )
    id_col = lowered.index("id") if "id" in lowered else 0
    group_col = lowered.index("group") if "group" in lowered else None
    label_col = lowered.index("label") if "label" in lowered else None
    class_cols = [i for i in range(len(header)) if i not in (id_col, group_col)]
    if label_col is None and not class_cols:
        raise InputError(
            path,
            "sheet has no label column: add a 'label' column or one 0/1 column per label",
            line=header_line,
        )
    if label_col is None and any(not header[i] for i in class_cols):
        raise InputError(path, "a 0/1 label column has no name in the header", line=header_line)

    ids: list[str] = []
    labels: list[str | None] = []
    groups: list[str | None] = []
    seen: dict[str, int] = {}
    for number, fields in rows:
        if len(fields) > len(header):
            raise InputError(
                path, f"row has {len(fields)} fields but the header has {len(header)}", line=number
            )
        # Editors often drop trailing empty cells; those cells are simply empty.
        fields = fields + [""] * (len(header) - len(fields))
        rid = fields[id_col]
        if not rid:
            raise InputError(path, "row has an empty id", line=number)
        if rid in seen:
            raise InputError(
                path,
                f"duplicate id {rid!r} (first on line {seen[rid]}, again on line {number})",
                record=rid,
                line=number,
            )
        seen[rid] = number
        ids.append(rid)
        groups.append((fields[group_col] or None) if group_col is not None else None)
        if label_col is not None:
            labels.append(_normalise_multilabel(fields[label_col]))
        else:
            labels.append(_label_from_flags(path, header, class_cols, fields, rid, number))
    if not ids:
        raise InputError(path, "labels sheet has a header but no rows")

    df = pd.DataFrame({"id": ids, "label": pd.Series(labels, dtype=object)})
    if group_col is not None:
        df["group"] = pd.Series(groups, dtype=object)
    if label_col is None:
        df.attrs["classes"] = [header[i] for i in class_cols]
    log.info("%s: %d ids, %d with a label", path, len(df), int(df["label"].notna().sum()))
    return df


def _label_from_flags(
    path: str | Path,
    header: Sequence[str],
    class_cols: Sequence[int],
    fields: Sequence[str],
    rid: str,
    number: int,
) -> str | None:
    on: list[str] = []
    for i in class_cols:
        value = fields[i]
        if value in _ONE:
            on.append(header[i])
        elif value not in _ZERO:
            raise InputError(
                path,
                f"column {header[i]!r} holds {value!r}; a sheet without a 'label' column needs "
                "0/1 in every label column",
                record=rid,
                line=number,
            )
    return ";".join(on) if on else None


def attach_labels(
    seqs: pd.DataFrame,
    labels: pd.DataFrame,
    seq_path: str | Path,
    labels_path: str | Path,
    allowed: list[str] | None = None,
) -> pd.DataFrame:
    """Left-join label (and group) from a labels sheet onto sequences by id.

    Every sequence id must be in the sheet; sheet ids without a sequence are only logged.
    With `allowed`, each `;`-separated label must be one of those classes.
    """
    label_of = dict(zip(labels["id"], labels["label"]))
    missing = [rid for rid in seqs["id"] if rid not in label_of]
    if missing:
        raise InputError(
            labels_path,
            f"{len(missing)} sequence id(s) from {seq_path} are not in the labels sheet "
            f"(first: {missing[0]!r})",
            record=missing[0],
        )
    extra = len(set(label_of) - set(seqs["id"]))
    if extra:
        log.warning(
            "%s: %d id(s) in the labels sheet have no sequence in %s", labels_path, extra, seq_path
        )

    out = seqs.copy()
    out["label"] = _object_column([label_of[rid] for rid in out["id"]], out.index)
    if "group" in labels.columns:
        group_of = dict(zip(labels["id"], labels["group"]))
        out["group"] = _object_column([group_of[rid] for rid in out["id"]], out.index)
    elif "group" not in out.columns:
        out["group"] = _object_column([None] * len(out), out.index)

    if allowed is not None:
        check_labels(out, labels_path, allowed)
    if "classes" in labels.attrs:
        out.attrs["classes"] = list(labels.attrs["classes"])
    log.info("%d of %d sequences have a label", int(out["label"].notna().sum()), len(out))
    return out


def check_labels(df: pd.DataFrame, path: str | Path, allowed: Sequence[str]) -> None:
    """Raise InputError for the first label (each `;` part) not in `allowed`."""
    allowed_set = set(allowed)
    for rid, label in zip(df["id"], df["label"]):
        if label is None or pd.isna(label):
            continue
        for part in str(label).split(";"):
            if part not in allowed_set:
                raise InputError(
                    path, f"unknown label {part!r} (allowed: {', '.join(allowed)})", record=rid
                )


def _object_column(values: list, index: pd.Index) -> pd.Series:
    """str-or-None column; pandas would otherwise turn None into NaN in a str dtype."""
    return pd.Series([None if pd.isna(v) else str(v) for v in values], index=index, dtype=object)
