"""Labels sheets: a `label` column (A) or one column per label (B), keyed by sequence id.

In form B a row of 0/1 flags is a hard label (several 1s: several labels); a row with a
fraction in it is one record's probability vector over the classes, a soft target
(:mod:`barloc.soft`), which must lie in [0, 1] and sum to 1.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from barloc import soft
from barloc.errors import InputError
from barloc.io.tabular import csv_rows, parse_float

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

    Form A has a `label` column (`;` separates labels, empty = unknown). Form B has one
    column per label; a 0/1 row's label is the `;`-join of the 1-columns in column order, and
    the column names are kept in ``df.attrs["classes"]``. A form B row with a fraction in it
    is a soft target: its label is the most probable class and the vector goes to a
    ``label_probs`` column (only present when some row is soft; see :mod:`barloc.soft`).
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
            "header has a single column with commas in it; a comma-separated sheet must be named .csv",
            line=header_line,
        )
    if not header[0] and "id" not in lowered:
        raise InputError(path, "header has no id column (name it 'id' or put ids first)", line=header_line)
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
    probs: list[str | None] = []
    groups: list[str | None] = []
    seen: dict[str, int] = {}
    for number, fields in rows:
        if len(fields) > len(header):
            raise InputError(path, f"row has {len(fields)} fields but the header has {len(header)}", line=number)
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
            probs.append(None)
        else:
            label, vector = _label_from_flags(path, header, class_cols, fields, rid, number)
            labels.append(label)
            probs.append(vector)
    if not ids:
        raise InputError(path, "labels sheet has a header but no rows")
    if label_col is not None:
        _refuse_class_columns_beside_label(path, header, class_cols, label_col, labels, header_line)

    df = pd.DataFrame({"id": ids, "label": pd.Series(labels, dtype=object)})
    if any(p is not None for p in probs):
        df[soft.SOFT] = pd.Series(probs, dtype=object)
    if group_col is not None:
        df["group"] = pd.Series(groups, dtype=object)
    if label_col is None:
        df.attrs["classes"] = [header[i] for i in class_cols]
        df.attrs["header_line"] = header_line
    log.info("%s: %d ids, %d with a label", path, len(df), int(df["label"].notna().sum()))
    if soft.SOFT in df:
        log.info("%s: %d ids have a probability vector (soft target)", path, int(df[soft.SOFT].notna().sum()))
    return df


def _refuse_class_columns_beside_label(
    path: str | Path,
    header: Sequence[str],
    class_cols: Sequence[int],
    label_col: int,
    labels: Sequence[str | None],
    header_line: int,
) -> None:
    """A sheet with a `label` column ignores its other columns; one named after a label is a
    sign of a mix of form A and per-class columns (e.g. probabilities), which would be lost."""
    seen = {part for lab in labels if lab for part in lab.split(";")}
    named = [header[i] for i in class_cols if i != label_col and header[i] in seen]
    if named:
        raise InputError(
            path,
            f"the sheet has a 'label' column and also a column named after the label {named[0]!r}; "
            "use either the 'label' column or one column per class (0/1 flags or probabilities), "
            "not both",
            line=header_line,
        )


def _label_from_flags(
    path: str | Path,
    header: Sequence[str],
    class_cols: Sequence[int],
    fields: Sequence[str],
    rid: str,
    number: int,
) -> tuple[str | None, str | None]:
    """(label, None) for a row of 0/1 flags; (most probable class, ``label_probs`` JSON) for a
    probability row."""
    on: list[str] = []
    values: dict[str, float] = {}
    fractional = False
    for i in class_cols:
        value = fields[i]
        if value in _ONE:
            on.append(header[i])
            values[header[i]] = 1.0
            continue
        if value in _ZERO:
            values[header[i]] = 0.0
            continue
        p = parse_float(value)
        if math.isnan(p):
            raise InputError(
                path,
                f"column {header[i]!r} holds {value!r}; a sheet without a 'label' column needs "
                "0/1 or a probability in every label column",
                record=rid,
                line=number,
            )
        if p < 0:
            raise InputError(
                path,
                f"column {header[i]!r} holds {value!r}; a probability cannot be negative",
                record=rid,
                line=number,
            )
        if p > 1:
            row_total = sum(v for v in (parse_float(fields[j]) for j in class_cols) if not math.isnan(v))
            hint = f" (percentages? for {value}%, write {p / 100:g})" if abs(row_total - 100) <= 1 else ""
            raise InputError(
                path,
                f"column {header[i]!r} holds {value!r}; probabilities lie between 0 and 1{hint}",
                record=rid,
                line=number,
            )
        values[header[i]] = p
        if p == 1:
            on.append(header[i])
        elif p > 0:
            fractional = True
    if not fractional:
        return (";".join(on) if on else None), None
    total = sum(values.values())
    if abs(total - 1.0) > soft.SUM_TOLERANCE + 1e-9:
        raise InputError(
            path,
            f"probabilities sum to {total:.4g}; a row with a fraction in it is the record's "
            f"probability vector over the classes and must sum to 1 (within {soft.SUM_TOLERANCE:g})",
            record=rid,
            line=number,
        )
    return soft.nominal(values), soft.encode(values)


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
            f"{len(missing)} sequence id(s) from {seq_path} are not in the labels sheet (first: {missing[0]!r})",
            record=missing[0],
        )
    extra = len(set(label_of) - set(seqs["id"]))
    if extra:
        log.warning("%s: %d id(s) in the labels sheet have no sequence in %s", labels_path, extra, seq_path)

    out = seqs.copy()
    out["label"] = _object_column([label_of[rid] for rid in out["id"]], out.index)
    if soft.SOFT in labels.columns:
        probs_of = dict(zip(labels["id"], labels[soft.SOFT]))
        out[soft.SOFT] = _object_column([probs_of[rid] for rid in out["id"]], out.index)
        if not out[soft.SOFT].notna().any():
            out = out.drop(columns=[soft.SOFT])
    if "group" in labels.columns:
        group_of = dict(zip(labels["id"], labels["group"]))
        out["group"] = _object_column([group_of[rid] for rid in out["id"]], out.index)
    elif "group" not in out.columns:
        out["group"] = _object_column([None] * len(out), out.index)

    if allowed is not None:
        if soft.has_soft(out):
            _check_class_columns(labels, labels_path, allowed)
        check_labels(out, labels_path, allowed)
    if "classes" in labels.attrs:
        out.attrs["classes"] = list(labels.attrs["classes"])
    log.info("%d of %d sequences have a label", int(out["label"].notna().sum()), len(out))
    return out


def _check_class_columns(labels: pd.DataFrame, path: str | Path, allowed: Sequence[str]) -> None:
    """Probability vectors are over the sheet's columns, so every column must be a class."""
    for name in labels.attrs.get("classes", []):
        if name not in allowed:
            raise InputError(
                path,
                f"column {name!r} is not one of the task's classes (allowed: {', '.join(allowed)}); "
                "the probability columns must be named after the classes",
                line=labels.attrs.get("header_line"),
            )


def check_labels(df: pd.DataFrame, path: str | Path, allowed: Sequence[str]) -> None:
    """Raise InputError for the first label (each `;` part) not in `allowed`."""
    allowed_set = set(allowed)
    for rid, label in zip(df["id"], df["label"]):
        if label is None or pd.isna(label):
            continue
        for part in str(label).split(";"):
            if part not in allowed_set:
                raise InputError(path, f"unknown label {part!r} (allowed: {', '.join(allowed)})", record=rid)


def _object_column(values: list, index: pd.Index) -> pd.Series:
    """str-or-None column; pandas would otherwise turn None into NaN in a str dtype."""
    return pd.Series([None if pd.isna(v) else str(v) for v in values], index=index, dtype=object)
