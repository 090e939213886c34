"""Property tests: whatever bytes a user hands over, every reader returns a table or raises
InputError, and `barloc validate` (format detection, alphabet guess, reading, labelling)
exits 0 or 2, never with another exception.

Each reader gets its own test with 2,000 examples: a mix of arbitrary bytes (after prefixes
that steer it into the parser), near-valid files of its own format with a few byte-level
edits, and gzip-wrapped or truncated-gzip versions of both. CI (CI=true) runs Hypothesis's
derandomized "ci" profile, so the examples are the same on every run.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import itertools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from barloc import geo
from barloc.cli import main
from barloc.errors import InputError
from barloc.io.bold import read_bold
from barloc.io.deeploc import DEEPLOC_LOCATIONS, read_deeploc
from barloc.io.fasta import guess_alphabet, read_sequences
from barloc.io.labels import read_labels

# 2,000 a reader keeps this file under a minute on 2 cores; raise it for a longer hunt:
# BARLOC_FUZZ_EXAMPLES=50000 pytest tests/test_io_fuzz.py
EXAMPLES = int(os.environ.get("BARLOC_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_DIR = Path(tempfile.mkdtemp(prefix="barloc-fuzz-"))
_COUNTER = itertools.count()


def write(data: bytes, suffix: str) -> Path:
    path = _DIR / f"fuzz{next(_COUNTER) % 8}{suffix}"
    path.write_bytes(data)
    return path


def table_or_input_error(reader: Callable[[Path], pd.DataFrame], path: Path) -> None:
    try:
        df = reader(path)
    except InputError as err:
        assert str(err)
        return
    assert isinstance(df, pd.DataFrame)
    assert {"id", "sequence"} <= set(df.columns) or {"id", "label"} <= set(df.columns)
    assert df["id"].is_unique and len(df) > 0


# --- byte-level building blocks ------------------------------------------------------------


@st.composite
def mutated(draw, text: str) -> bytes:
    """`text` as bytes with LF, CRLF or CR line endings, after 0-4 random flips, drops or inserts."""
    text = text.replace("\n", draw(st.sampled_from(["\n", "\n", "\r\n", "\r"])))
    data = bytearray(text.encode("utf-8"))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "drop", "insert"]))
        byte = draw(st.sampled_from([0, 9, 10, 13, 34, 44, 62, 64, 0x1F, 0x8B, 0xEF, 0xFF]) | st.integers(0, 255))
        if op == "flip":
            data[pos] = byte
        elif op == "drop":
            del data[pos]
        else:
            data.insert(pos, byte)
    return bytes(data)


@st.composite
def maybe_gzipped(draw, inner: st.SearchStrategy[bytes]) -> bytes:
    """`inner`, or it gzipped, or a gzip stream cut short or with a flipped byte."""
    data = draw(inner)
    how = draw(st.sampled_from(["plain", "plain", "plain", "gzip", "truncated", "corrupt"]))
    if how == "plain":
        return data
    packed = bytearray(gzip.compress(data, mtime=0))
    if how == "truncated":
        return bytes(packed[: draw(st.integers(2, max(2, len(packed) - 1)))])
    if how == "corrupt":
        pos = draw(st.integers(2, len(packed) - 1))
        packed[pos] ^= draw(st.integers(1, 255))
    return bytes(packed)


def arbitrary(prefixes: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda p, b: p + b, st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", *prefixes]), st.binary(max_size=300)
    )


SAFE_WORD = st.text(alphabet="abcXYZ019 _-.;,\"'|", max_size=10)
RESIDUES = st.text(alphabet="ACGTUNRYacgtn-.*MKLEQWPFIXBZJO \t", max_size=60)


# --- near-valid files of each format -------------------------------------------------------


@st.composite
def fasta_text(draw) -> str:
    records = []
    for i in range(draw(st.integers(0, 5))):
        rid = draw(st.sampled_from([f"r{i}", "r0", "", " ", "r 1"]) | SAFE_WORD)
        seq = draw(RESIDUES)
        if draw(st.booleans()):
            wrap = draw(st.integers(1, 20))
            records.append(f">{rid} desc\n" + "\n".join(seq[j : j + wrap] for j in range(0, len(seq), wrap)) + "\n")
        else:
            qual = draw(st.sampled_from(["I" * len(seq), "@" * len(seq), "I" * max(0, len(seq) - 1), ""]))
            plus = draw(st.sampled_from(["+", f"+{rid}", "", "@"]))
            records.append(f"@{rid}\n{seq}\n{plus}\n{qual}\n")
        if draw(st.booleans()):
            records.append("\n")
    return "".join(records)


@st.composite
def labels_text(draw) -> str:
    sep = draw(st.sampled_from(["\t", ","]))
    form = draw(st.sampled_from(["a", "a_group", "b", "b_group", "odd"]))
    header = {
        "a": ["id", "label"],
        "a_group": ["id", "label", "group"],
        "b": ["id", "Nucleus", "Cytoplasm"],
        "b_group": ["group", "id", "x", "y"],
        "odd": draw(st.lists(SAFE_WORD, max_size=4)),
    }[form]
    rows = [sep.join(header)]
    for _ in range(draw(st.integers(0, 5))):
        n = draw(st.integers(0, len(header) + 1))
        cell = st.sampled_from(["0", "1", "1.0", "", "2", "Atlantic", "a;b", ";", '"q"', "s1"]) | SAFE_WORD
        rows.append(sep.join(draw(cell) for _ in range(n)))
    return "\n".join(rows) + draw(st.sampled_from(["\n", "", "\n\n"]))


BOLD_V4 = [
    "processid",
    "markercode",
    "nucleotides",
    "species_name",
    "lat",
    "lon",
    "country",
    "province_state",
    "coord_source",
    "notes",
    "exactsite",
    "region",
]
BOLD_V5 = [
    "processid",
    "marker_code",
    "nuc",
    "species",
    "coord",
    "country/ocean",
    "province/state",
    "coord_source",
    "short_note",
    "site",
]


@st.composite
def bold_text(draw) -> str:
    version = draw(st.sampled_from([BOLD_V4, BOLD_V5]))
    columns = draw(st.permutations(version))[: draw(st.integers(1, len(version)))]
    if draw(st.booleans()):
        columns = list(dict.fromkeys([*version[:3], *columns]))  # usually a valid header
    values = {
        "processid": st.sampled_from(["ANGBF41820-19", "GBMIN123-13", "X1", "", "123", "ANGBF41820-19"]),
        "markercode": st.sampled_from(["COI-5P", "coi-5p", "", "ITS", "COI-5P "]),
        "nucleotides": RESIDUES.map(lambda s: s.replace("\t", "")),
        "lat": st.sampled_from(["", "12.5", "-95", "nan", "inf", "1e400", "0", "abc", "-0.0"]),
        "lon": st.sampled_from(["", "-45.25", "181", "NaN", "-inf", "0", "x"]),
        "coord": st.sampled_from(["", "[12.5, -45.25]", "[1,2,3]", "(nan, 5)", "[", "[91, 0]", "[0,0]"]),
        "country": st.sampled_from(["", "Japan", "Spain", "United States", "Côte d'Ivoire", "Atlantic Ocean"]),
        "coord_source": st.sampled_from(["", "Country centroid", "GPS"]),
    }
    values["marker_code"], values["nuc"] = values["markercode"], values["nucleotides"]
    values["country/ocean"] = values["country"]
    rows = ["\t".join(columns)]
    for _ in range(draw(st.integers(0, 5))):
        fields = [draw(values.get(c, SAFE_WORD.map(lambda s: s.replace("\t", "")))) for c in columns]
        if draw(st.integers(0, 9)) == 0:
            fields = fields[:-1] if fields and draw(st.booleans()) else fields + ["extra"]
        rows.append("\t".join(fields))
    return "\n".join(rows) + "\n"


@st.composite
def deeploc_text(draw) -> str:
    base = ["ACC", "Kingdom", "Partition", "Membrane", *DEEPLOC_LOCATIONS[:4], "Sequence"]
    columns = draw(st.permutations(base))[: draw(st.integers(1, len(base)))]
    if draw(st.booleans()):
        columns = list(dict.fromkeys(["ACC", "Sequence", "Nucleus", *columns]))
    values = {
        "ACC": st.sampled_from(["P12345", "Q9UL25", "", "P12345", "x,y"]),
        "Kingdom": st.sampled_from(["Metazoa", "", "Fungi"]),
        "Partition": st.sampled_from(["0", "4", "2.0", "", "a", "1e3", "inf", "nan"]),
        "Membrane": st.sampled_from(["1.0", "", "0.5", "inf", "x"]),
        "Sequence": st.sampled_from(["MKTAYIAKQR", "", "ACGTACGTACGTACGTACGTACGT", "MK*", "MK*V", "mk v"]) | RESIDUES,
    }
    flags = st.sampled_from(["0", "1", "1.0", "", "2", "yes"])
    rows = [",".join(f'"{c}"' if "," in c or " " in c else c for c in columns)]
    for _ in range(draw(st.integers(0, 5))):
        fields = [draw(values.get(c, flags)) for c in columns]
        quoted = [f'"{f}"' if draw(st.booleans()) else f for f in fields]
        rows.append(",".join(quoted))
    return "\n".join(rows) + "\n"


def files(near_valid: st.SearchStrategy[str], prefixes: list[bytes]) -> st.SearchStrategy[bytes]:
    return maybe_gzipped(st.one_of(near_valid.flatmap(mutated), arbitrary(prefixes)))


FASTA_FILES = files(fasta_text(), [b">", b"@", b">r1\n", b"@r1\nACGT\n+\n"])
LABEL_FILES = files(labels_text(), [b"id\tlabel\n", b"id,label\n", b"id\tNucleus\n", b'"id'])
BOLD_FILES = files(bold_text(), [b"processid\tmarkercode\tnucleotides\n", b"processid\tmarker_code\tnuc\tcoord\n"])
DEEPLOC_FILES = files(deeploc_text(), [b"ACC,Sequence,Nucleus\n", b"ACC,Sequence,Nucleus,Partition\nP1,"])


# --- one test a reader ---------------------------------------------------------------------


def _fasta_all_ways(path: Path) -> pd.DataFrame:
    for alphabet, fmt in (("dna", None), ("protein", None), ("dna", "fastq")):
        try:
            read_sequences(path, alphabet, fmt)
        except InputError:
            pass
    try:
        assert guess_alphabet(path) in ("dna", "protein")
    except InputError:
        pass
    return read_sequences(path, "dna", "fasta")


@FUZZ
@given(data=FASTA_FILES, suffix=st.sampled_from([".fa", ".fq", ".txt"]))
def test_fasta_fastq_reader(data, suffix):
    table_or_input_error(_fasta_all_ways, write(data, suffix))


@FUZZ
@given(data=LABEL_FILES, suffix=st.sampled_from([".tsv", ".csv", ".txt"]))
def test_labels_reader(data, suffix):
    table_or_input_error(read_labels, write(data, suffix))


@FUZZ
@given(data=BOLD_FILES, markers=st.sampled_from([("COI-5P",), None]))
def test_bold_reader(data, markers):
    table_or_input_error(functools.partial(read_bold, markers=markers), write(data, ".tsv"))


@FUZZ
@given(data=DEEPLOC_FILES)
def test_deeploc_reader(data):
    table_or_input_error(read_deeploc, write(data, ".csv"))


# --- barloc validate -----------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _geography_read_once():
    """validate labels BOLD records from the bundled geography table; reading and indexing it
    costs ~80 ms a call, so the fuzzing reads it once (the table is not what is fuzzed)."""
    with pytest.MonkeyPatch.context() as mp:
        table = geo.load_basin_table(None)
        index, origin = geo._index(table), geo._origin_reader(table)
        mp.setattr(geo, "load_basin_table", lambda path=None: table)
        mp.setattr(geo, "_index", lambda t: index if t is table else _real_index(t))
        mp.setattr(geo, "_origin_reader", lambda t: origin if t is table else _real_origin(t))
        yield


_real_index, _real_origin = geo._index, geo._origin_reader

ANY_FILE = st.one_of(FASTA_FILES, LABEL_FILES, BOLD_FILES, DEEPLOC_FILES)


@FUZZ
@given(data=ANY_FILE, suffix=st.sampled_from([".fa", ".fastq", ".tsv", ".csv", ".txt", ".fa.gz"]))
def test_validate_exits_0_or_2(data, suffix):
    path = write(data, suffix)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    assert code in (0, 2), (code, err.getvalue())
    if code == 2:
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith("barloc: error: "), lines
        assert out.getvalue() == ""
    else:
        assert out.getvalue().startswith("file:")
