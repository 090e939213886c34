"""Shared pieces of the delimited-text readers (labels sheets, DeepLoc CSV, BOLD TSV)."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path

from barloc.errors import InputError
from barloc.io.fasta import iter_lines


def csv_rows(path: str | Path, what: str, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for non-blank rows; csv errors become InputError.

    Lines come from ``iter_lines`` (plain or gzip, text checks, any line ending), and the
    line number tracks the physical line the csv module is reading, quoted newlines included.
    """
    lines = iter_lines(path, what)
    current = 0

    def texts() -> Iterator[str]:
        nonlocal current
        for number, text in lines:
            current = number
            yield text

    try:
        for fields in csv.reader(texts(), delimiter=delimiter):
            if any(f.strip() for f in fields):
                yield current, fields
    except csv.Error as exc:
        raise InputError(path, f"cannot parse the {what} ({exc})", line=current) from None


def parse_float(text: str) -> float:
    """A finite float, or NaN for empty, unparseable or infinite text."""
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan
