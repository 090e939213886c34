"""Labels sheets (both forms) and attaching them to sequences."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from barloc.errors import InputError
from barloc.io.labels import attach_labels, read_labels


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def seqs(*ids: str) -> pd.DataFrame:
    return pd.DataFrame({"id": list(ids), "sequence": ["ACGT"] * len(ids), "description": ""})


def test_form_a_with_multilabel_unknown_and_group(tmp_path):
    sheet = write(
        tmp_path,
        "synthetic_labels.tsv",
        "id\tlabel\tgroup\nr1\tPacific\tP1\nr2\tNucleus; Cytoplasm\tP1\nr3\n",  # r3: cells dropped
    )
    df = read_labels(sheet)
    assert df["label"].tolist() == ["Pacific", "Nucleus;Cytoplasm", None]
    assert df["group"].tolist() == ["P1", "P1", None]
    assert "classes" not in df.attrs


def test_form_b_zero_one_columns(tmp_path):
    sheet = write(
        tmp_path,
        "synthetic_flags.csv",
        "acc,Nucleus,Cytoplasm,Plastid\np1,1,0,1\np2,0,0,0\np3,0,1,0\n",
    )
    df = read_labels(sheet)
    assert list(df.columns) == ["id", "label"]
    assert df["id"].tolist() == ["p1", "p2", "p3"]
    assert df["label"].tolist() == ["Nucleus;Plastid", None, "Cytoplasm"]
    assert df.attrs["classes"] == ["Nucleus", "Cytoplasm", "Plastid"]


def test_id_column_need_not_be_first_when_named(tmp_path):
    sheet = write(tmp_path, "synthetic_order.tsv", "label\tid\nAtlantic\tr9\n")
    assert read_labels(sheet).to_dict("records") == [{"id": "r9", "label": "Atlantic"}]


def test_crlf_and_bom_accepted(tmp_path):
    sheet = write(tmp_path, "synthetic_win.tsv", b"\xef\xbb\xbfid\tlabel\r\nr1\tIndian\r\n")
    assert read_labels(sheet)["label"].tolist() == ["Indian"]


def test_empty_sheet(tmp_path):
    with pytest.raises(InputError, match="synthetic_empty.tsv: labels sheet is empty"):
        read_labels(write(tmp_path, "synthetic_empty.tsv", ""))


def test_header_only(tmp_path):
    with pytest.raises(InputError, match="header but no rows"):
        read_labels(write(tmp_path, "synthetic_head.tsv", "id\tlabel\n"))


def test_no_id_column(tmp_path):
    with pytest.raises(InputError, match="no id column"):
        read_labels(write(tmp_path, "synthetic_noid.tsv", "\tlabel\nr1\tA\n"))


def test_no_label_column(tmp_path):
    with pytest.raises(InputError, match="no label column"):
        read_labels(write(tmp_path, "synthetic_nolabel.tsv", "id\tgroup\nr1\tg\n"))


def test_duplicate_id(tmp_path):
    with pytest.raises(InputError) as err:
        read_labels(write(tmp_path, "synthetic_dup.tsv", "id\tlabel\nr1\tA\nr2\tB\nr1\tC\n"))
    msg = str(err.value)
    assert "synthetic_dup.tsv" in msg and "duplicate id 'r1'" in msg and "line 2" in msg and "line 4" in msg


def test_form_b_value_other_than_zero_one(tmp_path):
    with pytest.raises(InputError) as err:
        read_labels(write(tmp_path, "synthetic_flags.tsv", "id\tA\tB\nr1\t1\t0\nr2\t0\tyes\n"))
    msg = str(err.value)
    assert "line 3" in msg and "'r2'" in msg and "column 'B' holds 'yes'" in msg


def test_ragged_row(tmp_path):
    with pytest.raises(InputError, match="line 2.*3 fields but the header has 2"):
        read_labels(write(tmp_path, "synthetic_ragged.tsv", "id\tlabel\nr1\tA\tB\n"))


def test_attach_labels_left_join_keeps_sequence_order(tmp_path, caplog):
    sheet = read_labels(write(tmp_path, "synthetic_l.tsv", "id\tlabel\nb\tX\na\t\nzz\tY\n"))
    with caplog.at_level(logging.WARNING):
        out = attach_labels(seqs("a", "b"), sheet, "s.fa", "l.tsv")
    assert out["id"].tolist() == ["a", "b"]
    assert out["label"].tolist() == [None, "X"]
    assert out["group"].tolist() == [None, None]
    assert "1 id(s) in the labels sheet have no sequence" in caplog.text


def test_attach_labels_missing_ids(tmp_path):
    sheet = read_labels(write(tmp_path, "synthetic_l.tsv", "id\tlabel\nb\tX\n"))
    with pytest.raises(InputError) as err:
        attach_labels(seqs("a", "b", "c"), sheet, "seqs.fa", "synthetic_l.tsv")
    msg = str(err.value)
    assert "synthetic_l.tsv" in msg and "2 sequence id(s) from seqs.fa" in msg and "'a'" in msg


def test_attach_labels_unknown_label(tmp_path):
    sheet = read_labels(write(tmp_path, "synthetic_l.tsv", "id\tlabel\na\tPacific;Mars\n"))
    with pytest.raises(InputError) as err:
        attach_labels(seqs("a"), sheet, "s.fa", "synthetic_l.tsv", allowed=["Pacific", "Atlantic"])
    msg = str(err.value)
    assert "record 'a'" in msg and "unknown label 'Mars' (allowed: Pacific, Atlantic)" in msg


def test_attach_labels_carries_group_and_classes(tmp_path):
    sheet = read_labels(write(tmp_path, "synthetic_l.tsv", "id\tgroup\tA\tB\na\tg1\t0\t1\n"))
    out = attach_labels(seqs("a"), sheet, "s.fa", "l.tsv", allowed=["A", "B"])
    assert out.iloc[0][["label", "group"]].tolist() == ["B", "g1"]
    assert out.attrs["classes"] == ["A", "B"]


def test_utf16_sheet_from_excel_is_named(tmp_path):
    sheet = write(tmp_path, "synthetic_utf16.tsv", "id\tlabel\nr1\tA\n".encode("utf-16"))
    with pytest.raises(InputError, match="synthetic_utf16.tsv: labels sheet file is UTF-16"):
        read_labels(sheet)


def test_comma_separated_sheet_named_tsv(tmp_path):
    with pytest.raises(InputError, match="must be named .csv"):
        read_labels(write(tmp_path, "synthetic_commas.tsv", "id,label\nr1,A\n"))


def test_classic_mac_line_endings_are_accepted(tmp_path):
    path = tmp_path / "synthetic_cr.tsv"
    path.write_bytes(b"id\tlabel\rs1\tAtlantic\rs2\tPacific\r")
    df = read_labels(path)
    assert df["id"].tolist() == ["s1", "s2"] and df["label"].tolist() == ["Atlantic", "Pacific"]
