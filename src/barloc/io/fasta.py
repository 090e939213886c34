"""FASTA/FASTQ reading (plain or gzip), plus the text-file plumbing every reader shares.

The parser is hand-written rather than Biopython's so that every problem can be reported
with its line number and record id, and so that arbitrary bytes never escape as anything
but InputError.
"""

from __future__ import annotations

import gzip
import logging
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from barloc.errors import InputError
from barloc.io.sequences import clean_sequence

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
_SNIFF_BYTES = 8192
# Control bytes that never occur in text files; a sniffed block rich in them is binary.
_TEXT_CONTROLS = {9, 10, 11, 12, 13, 27}
_BINARY_FRACTION = 0.10
_GZIP_ERRORS = (OSError, EOFError, zlib.error)
_FORMATS = ("fasta", "fastq")


def _open_binary(path: str | Path) -> tuple[BinaryIO, bool]:
    """Open `path` for bytes, transparently gunzipping when it starts with the gzip magic."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    if p.is_dir():
        raise InputError(p, "is a directory, not a file")
    try:
        with open(p, "rb") as probe:
            magic = probe.read(2)
        if magic == GZIP_MAGIC:
            return gzip.open(p, "rb"), True
        return open(p, "rb"), False
    except OSError as exc:
        raise InputError(p, f"cannot read file ({exc.strerror or exc})") from None


def _decode(raw: bytes) -> str:
    # Exports (BOLD especially) mix UTF-8 and cp1252 line by line; latin-1 never fails.
    for encoding in ("utf-8", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def _looks_binary(block: bytes) -> bool:
    if b"\x00" in block:
        return True
    if not block:
        return False
    controls = sum(1 for b in block if b < 32 and b not in _TEXT_CONTROLS)
    return controls / len(block) > _BINARY_FRACTION


def iter_lines(path: str | Path, what: str) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, decoded line without its line ending) from a text file.

    `what` names the expected kind of file in error messages ("FASTA/FASTQ", "BOLD TSV", ...).
    Raises InputError for a missing, binary, or corrupt-gzip file.
    """
    fh, gzipped = _open_binary(path)
    with fh:
        try:
            head = fh.read(_SNIFF_BYTES)
            if head.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise InputError(path, f"{what} file is UTF-16 text; save it as UTF-8")
            if _looks_binary(head):
                raise InputError(path, f"not a text {what} file (it contains binary data)")
            fh.seek(0)
            # Classic Mac line endings (a bare CR, as Excel's "CSV (Macintosh)" still writes)
            # would make the whole file one line; such a file is split on CR instead.
            cr_only = b"\r" in head and b"\n" not in head
            raw_lines = _split_cr(fh) if cr_only else fh
            for number, raw in enumerate(raw_lines, 1):
                if b"\x00" in raw:
                    raise InputError(path, f"not a text {what} file (it contains binary data)", line=number)
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                yield number, _decode(raw).rstrip("\r\n")
        except _GZIP_ERRORS as exc:
            if gzipped:
                raise InputError(path, f"gzip stream is truncated or corrupt ({exc})") from None
            raise InputError(path, f"cannot read file ({exc})") from None


_NEWLINE = re.compile(rb"\r\n|\r|\n")


def _split_cr(fh: BinaryIO, block: int = 1 << 16) -> Iterator[bytes]:
    """Lines of a stream whose lines may end in CR, LF or CRLF, read a block at a time."""
    rest = b""
    while chunk := fh.read(block):
        buf = rest + chunk
        held = buf.endswith(b"\r")  # maybe the first half of a CRLF split across blocks
        *lines, rest = _NEWLINE.split(buf[:-1] if held else buf)
        if held:
            rest += b"\r"
        yield from lines
    if rest:
        yield rest


def _header_id(header: str) -> tuple[str, str]:
    parts = header.split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


def _iter_raw(path: str | Path, fmt: str | None = None) -> Iterator[tuple[str, str, str, int]]:
    """Yield (id, raw sequence, description, header line) without checking residues."""
    if fmt is not None and fmt not in _FORMATS:
        raise InputError(path, f"unknown sequence format {fmt!r} (expected fasta or fastq)")
    lines = iter_lines(path, "FASTA/FASTQ")
    for number, text in lines:
        stripped = text.strip()
        if not stripped:
            continue
        first = stripped[0]
        if first not in ">@":
            raise InputError(
                path,
                f"not a FASTA or FASTQ file: the first record should start with '>' or '@', found {_preview(stripped)}",
                line=number,
            )
        found = "fasta" if first == ">" else "fastq"
        if fmt is not None and found != fmt:
            raise InputError(
                path,
                f"file looks like {found.upper()} (starts with {first!r}) but the format given is {fmt}",
                line=number,
            )
        parse = _parse_fasta if found == "fasta" else _parse_fastq
        yield from parse(path, (number, stripped), lines)
        return
    raise InputError(path, "file is empty")


def _preview(text: str, width: int = 30) -> str:
    return repr(text[:width] + ("..." if len(text) > width else ""))


def _parse_fasta(
    path: str | Path, first: tuple[int, str], lines: Iterator[tuple[int, str]]
) -> Iterator[tuple[str, str, str, int]]:
    header_line, header = first
    chunks: list[str] = []

    def finish() -> tuple[str, str, str, int]:
        rid, desc = _header_id(header[1:])
        if not rid:
            raise InputError(path, "header has no id after '>'", line=header_line)
        if not chunks:
            raise InputError(path, "header has no sequence after it", record=rid, line=header_line)
        return rid, "".join(chunks), desc, header_line

    for number, text in lines:
        stripped = text.strip()
        if not stripped:
            continue
        if stripped.startswith(">"):
            yield finish()
            header_line, header, chunks = number, stripped, []
        else:
            chunks.append(stripped)
    yield finish()


def _parse_fastq(
    path: str | Path, first: tuple[int, str], lines: Iterator[tuple[int, str]]
) -> Iterator[tuple[str, str, str, int]]:
    pending: tuple[int, str] | None = first
    while True:
        if pending is None:
            pending = next(((n, t.strip()) for n, t in lines if t.strip()), None)
            if pending is None:
                return
        header_line, header = pending
        pending = None
        if not header.startswith("@"):
            raise InputError(
                path,
                f"FASTQ record should start with '@', found {_preview(header)}",
                line=header_line,
            )
        rid, desc = _header_id(header[1:])
        if not rid:
            raise InputError(path, "header has no id after '@'", line=header_line)
        # Sequence lines run until the '+' separator (multi-line FASTQ is legal, if rare).
        seq_parts: list[str] = []
        for number, text in lines:
            stripped = text.strip()
            if stripped.startswith("+"):
                break
            if stripped.startswith("@"):
                if not "".join(seq_parts):
                    raise InputError(path, "header has no sequence after it", record=rid, line=header_line)
                raise InputError(
                    path,
                    "FASTQ record has no '+' line before the next '@'",
                    record=rid,
                    line=number,
                )
            if stripped:
                seq_parts.append(stripped)
        else:
            if not seq_parts:
                raise InputError(path, "header has no sequence after it", record=rid, line=header_line)
            raise InputError(path, "FASTQ record is truncated: no '+' line", record=rid, line=header_line)
        seq = "".join(seq_parts)
        if not seq:
            raise InputError(path, "header has no sequence after it", record=rid, line=header_line)
        # Quality may start with '@', so it cannot be told from a header by its first character:
        # one sequence line means one quality line; wrapped sequences get quality read by length.
        qual_len = 0
        for _, text in lines:
            qual_len += len(text.strip())
            if len(seq_parts) == 1 or qual_len >= len(seq):
                break
        if qual_len != len(seq):
            raise InputError(
                path,
                f"quality length {qual_len} differs from sequence length {len(seq)}",
                record=rid,
                line=header_line,
            )
        yield rid, seq, desc, header_line


def _iter_clean(path: str | Path, alphabet: str, fmt: str | None) -> Iterator[tuple[str, str, str, int]]:
    for rid, raw, desc, line in _iter_raw(path, fmt):
        try:
            seq = clean_sequence(raw, alphabet, path, rid)
        except InputError as exc:
            raise InputError(path, exc.problem, record=rid, line=line) from None
        yield rid, seq, desc, line


def iter_sequences(path: str | Path, alphabet: str, fmt: str | None = None) -> Iterator[tuple[str, str, str]]:
    """Stream (id, cleaned sequence, description) from a FASTA/FASTQ file, plain or gzip.

    id is the first whitespace token of the header; description is the rest of the header.
    `fmt` ("fasta"/"fastq") is detected from the first non-blank character when None.
    """
    for rid, seq, desc, _ in _iter_clean(path, alphabet, fmt):
        yield rid, seq, desc


def read_sequences(path: str | Path, alphabet: str, fmt: str | None = None) -> pd.DataFrame:
    """All records of a FASTA/FASTQ file as a table: id, sequence, description (ids unique)."""
    ids: list[str] = []
    seqs: list[str] = []
    descs: list[str] = []
    seen: dict[str, int] = {}
    for rid, seq, desc, line in _iter_clean(path, alphabet, fmt):
        if rid in seen:
            raise InputError(
                path,
                f"duplicate id {rid!r} (first on line {seen[rid]}, again on line {line})",
                record=rid,
                line=line,
            )
        seen[rid] = line
        ids.append(rid)
        seqs.append(seq)
        descs.append(desc)
    log.info("%s: read %d %s sequences", path, len(ids), alphabet)
    return pd.DataFrame({"id": ids, "sequence": seqs, "description": descs})


def guess_alphabet(path: str | Path, fmt: str | None = None, n_records: int = 100) -> str:
    """'dna' when the first records are >= 90% ACGTUN (ignoring gaps), else 'protein'."""
    nucleotide = total = 0
    for i, (_, raw, _, _) in enumerate(_iter_raw(path, fmt)):
        residues = raw.upper().replace("-", "").replace(".", "").replace(" ", "")
        nucleotide += sum(residues.count(c) for c in "ACGTUN")
        total += len(residues)
        if i + 1 >= n_records:
            break
    return "dna" if total and nucleotide / total >= 0.9 else "protein"
