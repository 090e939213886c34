"""DeepLoc 2.0 CSV: the real 200-row sample in tests/data and, when present, the full file."""

from __future__ import annotations

import gzip
import math
from collections import Counter
from pathlib import Path

import pytest

from barloc.errors import InputError
from barloc.io.deeploc import DEEPLOC_LOCATIONS, read_deeploc

HEADER = "ACC,Kingdom,Partition,Membrane," + ",".join(DEEPLOC_LOCATIONS) + ",Sequence"
SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
FULL = Path(__file__).resolve().parents[2] / "shared/data/protein/deeploc2_swissprot_train_val.csv.gz"

# Counts of each location in the first 200 rows of the real file (46 rows have several).
SAMPLE_COUNTS = {
    "Nucleus": 64,
    "Cytoplasm": 59,
    "Mitochondrion": 34,
    "Cell membrane": 31,
    "Lysosome/Vacuole": 19,
    "Endoplasmic reticulum": 16,
    "Golgi apparatus": 15,
    "Plastid": 14,
    "Extracellular": 7,
    "Peroxisome": 5,
}


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def flags(*on: str) -> str:
    return ",".join("1" if loc in on else "0" for loc in DEEPLOC_LOCATIONS)


def test_sample_labels_and_columns(data_dir):
    df = read_deeploc(data_dir / "deeploc_sample.csv")
    assert list(df.columns) == ["id", "sequence", "label", "group", "kingdom", "membrane"]
    assert len(df) == 200
    assert df.attrs["classes"] == DEEPLOC_LOCATIONS
    counts = Counter(part for label in df["label"] for part in label.split(";"))
    assert dict(counts) == SAMPLE_COUNTS
    assert df["label"].str.contains(";").sum() == 46
    first = df.iloc[0]
    assert (first["id"], first["label"], first["group"], first["kingdom"]) == (
        "Q96S94",
        "Nucleus",
        "0",
        "Metazoa",
    )
    assert first["membrane"] == 0.0
    assert first["sequence"].startswith("MAAAAAAAGAAGSAAPAAAAGAPG")


def test_multilabel_in_file_order(tmp_path):
    path = write(
        tmp_path,
        "synthetic_dl.csv",
        f"{HEADER}\nP1,Fungi,3,1.0,{flags('Peroxisome', 'Cytoplasm')},{SEQ}\n",
    )
    df = read_deeploc(path)
    assert df["label"].tolist() == ["Cytoplasm;Peroxisome"]
    assert df["group"].tolist() == ["3"]


def test_variant_without_partition_or_membrane(tmp_path):
    header = "ACC,Kingdom," + ",".join(DEEPLOC_LOCATIONS) + ",Sequence"
    path = write(tmp_path, "synthetic_np.csv", f"{header}\nP1,Metazoa,{flags()},{SEQ.lower()}\n")
    df = read_deeploc(path)
    assert df["label"].tolist() == [None]
    assert df["group"].tolist() == [None]
    assert math.isnan(df["membrane"][0])
    assert df["sequence"][0] == SEQ


def test_gzip(tmp_path):
    text = f"{HEADER}\nP1,Fungi,0,0,{flags('Nucleus')},{SEQ}\n"
    df = read_deeploc(write(tmp_path, "synthetic.csv.gz", gzip.compress(text.encode())))
    assert df["label"].tolist() == ["Nucleus"]


def test_missing_sequence_column(tmp_path):
    path = write(tmp_path, "synthetic_noseq.csv", "ACC,Kingdom,Nucleus\nP1,Fungi,1\n")
    with pytest.raises(
        InputError,
        match=r"synthetic_noseq.csv, line 1: not a DeepLoc 2.0 CSV: header lacks Sequence",
    ):
        read_deeploc(path)


def test_missing_acc_column(tmp_path):
    path = write(tmp_path, "synthetic_noacc.csv", "id,Nucleus,Sequence\nP1,1,MKV\n")
    with pytest.raises(InputError, match="header lacks ACC"):
        read_deeploc(path)


def test_bad_flag_names_record(tmp_path):
    row = flags("Nucleus").replace("1", "yes", 1)
    path = write(tmp_path, "synthetic_flag.csv", f"{HEADER}\nP9,Fungi,0,0,{row},{SEQ}\n")
    with pytest.raises(InputError) as err:
        read_deeploc(path)
    assert "line 2" in str(err.value) and "'P9'" in str(err.value) and "'Nucleus' holds 'yes'" in str(err.value)


def test_dna_in_sequence_column(tmp_path):
    path = write(tmp_path, "synthetic_dna.csv", f"{HEADER}\nP2,Fungi,0,0,{flags('Nucleus')},{'ACGT' * 10}\n")
    with pytest.raises(InputError, match="record 'P2': looks like DNA but the task expects protein"):
        read_deeploc(path)


def test_duplicate_acc(tmp_path):
    row = f"P1,Fungi,0,0,{flags('Nucleus')},{SEQ}"
    with pytest.raises(InputError, match="duplicate ACC 'P1'.*line 2.*line 3"):
        read_deeploc(write(tmp_path, "synthetic_dup.csv", f"{HEADER}\n{row}\n{row}\n"))


@pytest.mark.skipif(not FULL.exists(), reason="shared DeepLoc file not present")
def test_full_file():
    df = read_deeploc(FULL)
    assert len(df) == 28303
    assert df["label"].str.contains(";").sum() == 6684
    assert sorted(df["group"].unique()) == ["0", "1", "2", "3", "4"]
    assert df["sequence"].str.len().agg(["min", "max"]).tolist() == [40, 34350]
