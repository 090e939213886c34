"""Property tests: whatever bytes a user hands over, readers return a table or raise InputError."""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from barloc.errors import InputError
from barloc.io import detect_format
from barloc.io.bold import read_bold
from barloc.io.deeploc import read_deeploc
from barloc.io.fasta import read_sequences
from barloc.io.labels import read_labels

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "fasta_dna": lambda p: read_sequences(p, "dna"),
    "fasta_protein": lambda p: read_sequences(p, "protein"),
    "labels": read_labels,
    "bold": read_bold,
    "deeploc": read_deeploc,
}

# Bytes that sometimes look like a file's start: gzip magic, FASTA/FASTQ markers, headers.
PREFIXES = st.sampled_from(
    [
        b"",
        b"\x1f\x8b",
        b">",
        b"@",
        b"id\tlabel\n",
        b"processid\tmarkercode\tnucleotides\n",
        b"processid\tmarker_code\tnuc\tcoord\n",
        b"ACC,Sequence,Nucleus\n",
        b"\xef\xbb\xbf",
    ]
)


def check(data: bytes, suffix: str = ".txt") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(data)
        for name, reader in READERS.items():
            try:
                assert isinstance(reader(path), pd.DataFrame), name
            except InputError:
                pass
        try:
            detect_format(path)
        except InputError:
            pass


@FUZZ
@given(prefix=PREFIXES, body=st.binary(max_size=400))
def test_arbitrary_bytes(prefix, body):
    check(prefix + body)


@FUZZ
@given(body=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".tsv"]))
def test_arbitrary_bytes_gzipped(body, suffix):
    data = gzip.compress(body)
    check(data[: len(data) // 2] if len(body) % 3 == 0 else data, suffix)


@st.composite
def near_valid_fasta(draw) -> bytes:
    """Valid FASTA/FASTQ/TSV-ish text, then a few random byte-level edits."""
    n = draw(st.integers(1, 4))
    residues = st.text(alphabet="ACGTNacgtn-MKLEQ*", min_size=0, max_size=40)
    records = []
    for i in range(n):
        seq = draw(residues)
        if draw(st.booleans()):
            records.append(f">r{i} desc\n{seq}\n")
        else:
            records.append(f"@r{i}\n{seq}\n+\n{'I' * len(seq)}\n")
    text = "".join(records)
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    data = bytearray(text.encode())
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "drop", "insert"]))
        byte = draw(st.integers(0, 255))
        if op == "flip":
            data[pos] = byte
        elif op == "drop":
            del data[pos]
        else:
            data.insert(pos, byte)
    return bytes(data)


@FUZZ
@given(data=near_valid_fasta(), zipped=st.booleans())
def test_near_valid_fasta(data, zipped):
    check(gzip.compress(data) if zipped else data, ".fa")
