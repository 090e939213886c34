"""The ingest step stops bad input with one clear error and leaves no output behind."""

from __future__ import annotations

import gzip
from types import SimpleNamespace as NS

import pandas as pd
import pytest

from barloc.errors import InputError
from barloc.steps import ingest

GOOD_FASTA = ">s1 synthetic\nACGTACGTTAGC\n>s2\nACGTTTGACCAR\n>s3\nTTGACCANNACG\n"
GOOD_LABELS = "id\tlabel\ts1\tAtlantic\ns2\tPacific\ns3\tAtlantic\n".replace("\ts1", "\ns1")


def task(tmp_path, fasta: bytes | str = GOOD_FASTA, labels: str = GOOD_LABELS, gz: bool = False, **extra) -> dict:
    """A synthetic FASTA + labels-sheet task; ``fasta`` is written as given (bytes or text)."""
    ref = tmp_path / ("ref.fasta.gz" if gz else "ref.fasta")
    data = fasta.encode() if isinstance(fasta, str) else fasta
    ref.write_bytes(gzip.compress(data) if gz else data)
    sheet = tmp_path / "labels.tsv"
    sheet.write_text(labels)
    return {"kind": "multiclass", "alphabet": "dna", "reference": str(ref), "format": "fasta",
            "labels": str(sheet), "min_class_size": 1, **extra}


def run(tmp_path, cfg: dict):
    out = tmp_path / "results" / "records.parquet"
    ingest.run(NS(), NS(records=str(out)), NS(task="t", cfg=cfg))
    return out


def test_good_input_is_ingested(tmp_path):
    out = run(tmp_path, task(tmp_path))
    df = pd.read_parquet(out)
    assert df["id"].tolist() == ["s1", "s2", "s3"] and df["label"].tolist() == ["Atlantic", "Pacific", "Atlantic"]
    assert (df["role"] == "reference").all()


def truncated_gzip(tmp_path):
    cfg = task(tmp_path, gz=True)
    path = tmp_path / "ref.fasta.gz"
    path.write_bytes(path.read_bytes()[:-12])
    return cfg


CASES = {
    "empty file": (lambda p: task(p, fasta=""), ["ref.fasta", "empty"]),
    "non-FASTA file": (lambda p: task(p, fasta="just some notes\nnot a sequence file\n"), ["ref.fasta", "not a FASTA"]),
    "invalid character": (lambda p: task(p, fasta=">s1\nACGTJACG\n"), ["ref.fasta", "s1", "position 5"]),
    "duplicate ids": (lambda p: task(p, fasta=GOOD_FASTA + ">s2\nACGT\n"), ["ref.fasta", "s2", "duplicate"]),
    "labels sheet misses ids": (lambda p: task(p, labels="id\tlabel\ns1\tAtlantic\n"), ["labels.tsv", "s2"]),
    "unknown label": (lambda p: task(p, classes=["Atlantic", "Pacific"], labels=GOOD_LABELS.replace("s3\tAtlantic", "s3\tAtlantis")),
                      ["labels.tsv", "Atlantis"]),
    "truncated gzip": (truncated_gzip, ["ref.fasta.gz", "truncated"]),
    "query with zero records": (lambda p: task(p, query=str(_empty(p)), query_format="fasta"), ["query.fasta"]),
}


def _empty(p):
    q = p / "query.fasta"
    q.write_text("")
    return q


@pytest.mark.parametrize("case", CASES)
def test_bad_input_stops_with_a_clear_error_and_no_output(tmp_path, case):
    make, words = CASES[case]
    with pytest.raises(InputError) as err:
        run(tmp_path, make(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w.lower() in msg.lower(), (w, msg)
    assert not (tmp_path / "results" / "records.parquet").exists()
    assert not list((tmp_path / "results").glob("*")) if (tmp_path / "results").exists() else True
