"""BOLD v4 (the bundled real export) and v5/BCDM (tests/data/bold_v5_from_v4_sample.tsv).

The v5 fixture is a re-rendering of 21 real v4 records of the bundled file in the v5 (BCDM)
column layout, with lat/lon written as coord "[lat, lon]"; see tests/data/README.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from barloc.errors import InputError
from barloc.io.bold import read_bold

V4_HEADER = "processid\tmarkercode\tnucleotides\tspecies_name\tlat\tlon\tcountry"


@pytest.fixture(scope="module")
def v4(bundled_bold):
    return read_bold(bundled_bold)


def test_bundled_v4_counts(v4, bundled_bold):
    assert len(v4) == 1580
    assert set(v4["marker"]) == {"COI-5P"}
    assert v4["id"].is_unique
    nd2 = read_bold(bundled_bold, markers=["nd2"])  # marker names match case-insensitively
    assert len(nd2) == 8 and set(nd2["marker"]) == {"ND2"}


def test_bundled_v4_record_fields(v4):
    row = v4.set_index("id").loc["ANGBF41820-19"]
    assert row["group"] == "ANGBF"
    assert row["species"] == "Thunnus albacares"
    assert row["bin_uri"] == "BOLD:AAA7352"
    assert row["country"] == "South Africa"
    assert row["bold_version"] == 4
    assert row["label"] is None
    assert math.isnan(row["lat"]) and math.isnan(row["lon"])
    assert row["sequence"].startswith("TAGTAATACCAATTATGATTGG")


def test_bundled_v4_columns_and_types(v4):
    for col in (
        "id",
        "sequence",
        "label",
        "group",
        "marker",
        "species",
        "bin_uri",
        "lat",
        "lon",
        "coord_source",
        "country",
        "province",
        "region",
        "site",
        "notes",
        "bold_version",
    ):
        assert col in v4.columns
    assert v4["lat"].dtype == float and v4["lon"].dtype == float
    assert v4["label"].isna().all()
    assert set("".join(v4["sequence"].head(50))) <= set("ACGTRYSWKMBDHVN")


def test_bundled_v4_mixed_encoding_decoded_per_line(v4):
    # Line 379 is UTF-8 ("°", "ú") while other lines are cp1252; both must come out right.
    row = v4.set_index("id").loc["FISHP292-17"]
    assert "18,5°-20°S" in row["region"]


def test_bundled_v4_notes_expose_market_samples(v4):
    notes = v4.set_index("id")["notes"]
    assert "Supermarket fresh filet" in notes["FCSF192-14"]
    assert "Sushi Ichiban" in notes["MOBIL5737-17"]  # from collection_note and exactsite
    assert notes.str.contains("market|restaurant|sushi", case=False).sum() > 50


def test_bundled_all_markers_duplicate_processid_is_explained(bundled_bold):
    with pytest.raises(InputError) as err:
        read_bold(bundled_bold, markers=None)
    msg = str(err.value)
    assert "tuna_bold_v4.tsv" in msg and "duplicate processid" in msg and "--markers" in msg


def test_v5_sample_matches_its_v4_source(data_dir, v4):
    v5 = read_bold(data_dir / "bold_v5_from_v4_sample.tsv")
    assert len(v5) == 20
    assert (v5["bold_version"] == 5).all()
    src = v4.set_index("id").loc[v5["id"]]
    for col in (
        "sequence",
        "species",
        "bin_uri",
        "country",
        "province",
        "region",
        "group",
        "site",
        "marker",
    ):
        assert v5[col].tolist() == src[col].tolist(), col
    assert v5["lat"].fillna(999).tolist() == src["lat"].fillna(999).tolist()
    assert v5["lon"].fillna(999).tolist() == src["lon"].fillna(999).tolist()
    row = v5.set_index("id").loc["BCIMS015-11"]
    assert (row["lat"], row["lon"], row["province"]) == (4.467, 118.617, "Sabah")
    assert "sold as thon albacore" in v5.set_index("id").loc["FCSF192-14", "notes"]


def test_v5_sample_all_markers_has_duplicate(data_dir):
    with pytest.raises(InputError, match="'BLOM114-14'.*COI-5P and D-loop"):
        read_bold(data_dir / "bold_v5_from_v4_sample.tsv", markers=None)
    dloop = read_bold(data_dir / "bold_v5_from_v4_sample.tsv", markers=["D-loop"])
    assert dloop["id"].tolist() == ["BLOM114-14"]


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_neither_header(tmp_path):
    path = write(tmp_path, "synthetic_other.tsv", "sample\tseq\nA1\tACGT\n")
    with pytest.raises(InputError) as err:
        read_bold(path)
    msg = str(err.value)
    assert "synthetic_other.tsv" in msg
    assert "not a BOLD v4 or v5 (BCDM) export: header lacks" in msg
    assert "markercode" in msg and "marker_code" in msg


def test_empty_file(tmp_path):
    with pytest.raises(InputError, match="file is empty"):
        read_bold(write(tmp_path, "synthetic_empty.tsv", ""))


def test_ragged_row_names_line(tmp_path):
    text = V4_HEADER + "\nAB1-1\tCOI-5P\tACGT\tT. a\t1\t2\tX\nAB2-1\tCOI-5P\tACGT\n"
    with pytest.raises(InputError, match=r"synthetic_ragged.tsv, line 3: row has 3 tab-separated"):
        read_bold(write(tmp_path, "synthetic_ragged.tsv", text))


def test_quotes_are_data_and_empty_sequences_dropped(tmp_path, caplog):
    text = (
        V4_HEADER
        + '\nAB1-1\tCOI-5P\tAC-GT\t"Thunnus" sp.\t91\tx\tFrance\n'
        + "AB2-1\tCOI-5P\t---\tT. a\t\t\t\n"
        + "XY3-1\tCOI-5P\tacgn\tT. b\t-10.5\t20\t\n"
    )
    df = read_bold(write(tmp_path, "synthetic_q.tsv", text))
    assert df["id"].tolist() == ["AB1-1", "XY3-1"]
    assert df["species"].tolist() == ['"Thunnus" sp.', "T. b"]
    assert df["sequence"].tolist() == ["ACGT", "ACGN"]
    assert math.isnan(df["lat"][0]) and math.isnan(df["lon"][0])  # out of range / unparseable
    assert (df["lat"][1], df["lon"][1]) == (-10.5, 20.0)
    assert df["group"].tolist() == ["AB", "XY"]
    assert "dropped 1 records with an empty sequence" in caplog.text


def test_invalid_residue_names_line_and_record(tmp_path):
    text = V4_HEADER + "\nAB1-1\tCOI-5P\tACG?T\tT. a\t\t\t\n"
    with pytest.raises(InputError) as err:
        read_bold(write(tmp_path, "synthetic_bad.tsv", text))
    assert "line 2" in str(err.value) and "'AB1-1'" in str(err.value) and "position 4" in str(err.value)


def test_v5_coord_parsing(tmp_path):
    text = (
        "processid\tmarker_code\tnuc\tspecies\tcoord\tcountry/ocean\n"
        "AA1-1\tCOI-5P\tACGT\ts\t[12.5, -45.25]\tPeru\n"
        "AA2-1\tCOI-5P\tACGT\ts\t\t\n"
        "AA3-1\tCOI-5P\tACGT\ts\t[oops]\t\n"
    )
    df = read_bold(write(tmp_path, "synthetic_v5.tsv", text))
    assert (df["lat"][0], df["lon"][0], df["country"][0]) == (12.5, -45.25, "Peru")
    assert df["lat"][1:].isna().all() and df["lon"][1:].isna().all()


def test_no_record_with_wanted_marker(tmp_path):
    text = V4_HEADER + "\nAB1-1\tITS\tACGT\ts\t\t\t\n"
    with pytest.raises(InputError, match="no records with marker COI-5P"):
        read_bold(write(tmp_path, "synthetic_its.tsv", text))
