"""Input readers. Every reader returns a record table (docs/artifacts.md) or raises InputError."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from barloc.errors import InputError
from barloc.io.bold import read_bold
from barloc.io.deeploc import read_deeploc
from barloc.io.fasta import iter_lines, read_sequences
from barloc.io.labels import attach_labels, check_labels, read_labels
from barloc.io.sequences import ALPHABETS

__all__ = ["FORMATS", "detect_format", "read_table"]

FORMATS = ("bold", "fasta", "fastq", "deeploc")
_FIXED_ALPHABET = {"bold": "dna", "deeploc": "protein"}


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    if p.is_dir():
        raise InputError(p, "is a directory, not a file")
    return p


def read_table(
    path: str | Path,
    fmt: str,
    alphabet: str,
    labels: str | Path | None = None,
    markers: Sequence[str] | None = ("COI-5P",),
    allowed_labels: list[str] | None = None,
) -> pd.DataFrame:
    """Read `path` as `fmt` into a table with at least id, sequence, label, group.

    A labels sheet, when given, supplies label (and group if it has one) for any format.
    """
    p = _check_file(path)
    if fmt not in FORMATS:
        raise InputError(p, f"unknown format {fmt!r} (expected one of: {', '.join(FORMATS)})")
    if alphabet not in ALPHABETS:
        raise InputError(p, f"unknown alphabet {alphabet!r} (expected one of: {', '.join(ALPHABETS)})")
    needed = _FIXED_ALPHABET.get(fmt)
    if needed is not None and alphabet != needed:
        raise InputError(p, f"a {fmt} file holds {needed} sequences but the task expects {alphabet}")

    if fmt == "bold":
        df = read_bold(p, markers=markers)
    elif fmt == "deeploc":
        df = read_deeploc(p)
    else:
        df = read_sequences(p, alphabet, fmt=fmt)
        df["label"] = pd.Series([None] * len(df), dtype=object)
        df["group"] = pd.Series([None] * len(df), dtype=object)

    if labels is not None:
        sheet = read_labels(_check_file(labels))
        df = attach_labels(df, sheet, p, labels, allowed=allowed_labels)
    elif allowed_labels is not None:
        # Labels that come with the file (DeepLoc) are held to the same class list.
        check_labels(df, p, allowed_labels)
    return df


def detect_format(path: str | Path) -> str:
    """Guess the format from the first non-blank line (falls back to the file extension)."""
    p = _check_file(path)
    first = next(((n, t.strip()) for n, t in iter_lines(p, "input") if t.strip()), None)
    if first is None:
        raise InputError(p, "file is empty")
    number, line = first
    if line.startswith(">"):
        return "fasta"
    if line.startswith("@"):
        return "fastq"
    if "processid" in {f.strip() for f in line.split("\t")}:
        return "bold"
    try:
        csv_fields = {f.strip() for f in next(csv.reader([line]))}
    except csv.Error:
        csv_fields = set()
    if {"ACC", "Sequence"} <= csv_fields:
        return "deeploc"
    names = [s.lower() for s in p.suffixes]
    for suffixes, fmt in (
        ({".fa", ".fasta", ".fna", ".faa", ".fas"}, "fasta"),
        ({".fq", ".fastq"}, "fastq"),
        ({".tsv"}, "bold"),
        ({".csv"}, "deeploc"),
    ):
        if suffixes & set(names):
            return fmt
    raise InputError(
        p,
        f"cannot tell the file format from its first line; pass --format ({'|'.join(FORMATS)})",
        line=number,
    )
