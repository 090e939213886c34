"""FASTA/FASTQ reading on synthetic files made in tmp_path."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from barloc.errors import InputError
from barloc.io.fasta import guess_alphabet, iter_sequences, read_sequences

PROTEIN = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVV"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def error(path: Path, alphabet: str = "dna", fmt: str | None = None) -> str:
    with pytest.raises(InputError) as err:
        read_sequences(path, alphabet, fmt)
    return str(err.value)


def test_multiline_fasta_with_descriptions(tmp_path):
    path = write(tmp_path, "synthetic_a.fa", "\n>r1 Thunnus albacares COI\nACGT\nacgt\n\n>r2\nGG-TT\n")
    assert list(iter_sequences(path, "dna")) == [
        ("r1", "ACGTACGT", "Thunnus albacares COI"),
        ("r2", "GGTT", ""),
    ]
    df = read_sequences(path, "dna")
    assert list(df.columns) == ["id", "sequence", "description"]
    assert df["id"].tolist() == ["r1", "r2"]


def test_iter_sequences_is_lazy(tmp_path):
    # The bad second record is only reached when asked for: records stream one at a time.
    path = write(tmp_path, "synthetic_lazy.fa", ">r1\nACGT\n>r2\nAC!T\n")
    it = iter_sequences(path, "dna")
    assert next(it) == ("r1", "ACGT", "")
    with pytest.raises(InputError, match="line 3"):
        next(it)


def test_crlf_line_endings_are_accepted(tmp_path):
    path = write(tmp_path, "synthetic_crlf.fa", ">r1 d\r\nACGT\r\nAC\r\n>r2\r\nTT\r\n")
    assert read_sequences(path, "dna")["sequence"].tolist() == ["ACGTAC", "TT"]


def test_fastq_plain_and_gzip_detected_by_magic(tmp_path):
    text = "@q1 x\nACGT\n+\nIIII\n@q2\nGGC\n+q2\n@II\n"
    plain = write(tmp_path, "synthetic.fq", text)
    zipped = write(tmp_path, "synthetic.fq.txt", gzip.compress(text.encode()))  # misleading name
    for path in (plain, zipped):
        assert list(iter_sequences(path, "dna")) == [("q1", "ACGT", "x"), ("q2", "GGC", "")]


def test_gzip_fasta_with_fa_extension(tmp_path):
    path = write(tmp_path, "synthetic.fa.gz", gzip.compress(b">p1\n" + PROTEIN.encode() + b"\n"))
    assert read_sequences(path, "protein")["sequence"].tolist() == [PROTEIN]


def test_multiline_fastq(tmp_path):
    path = write(tmp_path, "synthetic_ml.fq", "@q1\nACGT\nAC\n+\nIIII\n@I\n")
    assert list(iter_sequences(path, "dna")) == [("q1", "ACGTAC", "")]


def test_empty_file(tmp_path):
    msg = error(write(tmp_path, "synthetic_empty.fa", ""))
    assert "synthetic_empty.fa: file is empty" in msg


def test_blank_only_file_is_empty(tmp_path):
    assert "file is empty" in error(write(tmp_path, "synthetic_blank.fa", "\n \r\n\n"))


def test_binary_file(tmp_path):
    msg = error(write(tmp_path, "synthetic.bin", bytes(range(256)) * 4))
    assert "synthetic.bin" in msg and "not a text FASTA/FASTQ file" in msg


def test_non_fasta_text(tmp_path):
    msg = error(write(tmp_path, "synthetic_notes.fa", "\nhello world\n>r1\nACGT\n"))
    assert "synthetic_notes.fa, line 2" in msg
    assert "not a FASTA or FASTQ file" in msg and "'hello world'" in msg


def test_header_without_sequence(tmp_path):
    msg = error(write(tmp_path, "synthetic_nohead.fa", ">r1\nACGT\n>r2 empty\n>r3\nGG\n"))
    assert "line 3" in msg and "'r2'" in msg and "no sequence" in msg


def test_last_header_without_sequence(tmp_path):
    msg = error(write(tmp_path, "synthetic_last.fa", ">r1\nACGT\n>r2\n"))
    assert "'r2'" in msg and "no sequence" in msg


def test_header_without_id(tmp_path):
    assert "no id" in error(write(tmp_path, "synthetic_noid.fa", ">\nACGT\n"))


def test_invalid_character_reports_record_line_and_position(tmp_path):
    msg = error(write(tmp_path, "synthetic_bad.fa", ">r1\nACGT\n>r2 x\nACGT\nACXGT\n"))
    assert "synthetic_bad.fa" in msg and "line 3" in msg and "'r2'" in msg
    assert "'X' at position 7" in msg


def test_protein_where_dna_expected(tmp_path):
    msg = error(write(tmp_path, "synthetic_prot.fa", f">P12345\n{PROTEIN}\n"), "dna")
    assert "'P12345'" in msg and "looks like a protein sequence but the task expects DNA" in msg


def test_dna_where_protein_expected(tmp_path):
    msg = error(write(tmp_path, "synthetic_dna.fa", ">d1\n" + "ACGT" * 10 + "\n"), "protein")
    assert "'d1'" in msg and "looks like DNA but the task expects protein" in msg


def test_lowercase_soft_masked_accepted(tmp_path):
    path = write(tmp_path, "synthetic_soft.fa", ">r1\nACGTacgtnnACGT\n")
    assert read_sequences(path, "dna")["sequence"].tolist() == ["ACGTACGTNNACGT"]


def test_truncated_gzip(tmp_path):
    data = gzip.compress((">r1\n" + "ACGT" * 5000 + "\n").encode())
    msg = error(write(tmp_path, "synthetic_cut.fa.gz", data[: len(data) // 2]))
    assert "synthetic_cut.fa.gz" in msg and "gzip stream is truncated or corrupt" in msg


def test_corrupt_gzip_header(tmp_path):
    msg = error(write(tmp_path, "synthetic_bad.gz", b"\x1f\x8bthis is not deflate data at all"))
    assert "gzip stream is truncated or corrupt" in msg


def test_duplicate_ids_name_id_and_both_lines(tmp_path):
    msg = error(write(tmp_path, "synthetic_dup.fa", ">a\nACGT\n>b\nGG\n>a\nTT\n"))
    assert "duplicate id 'a'" in msg and "line 1" in msg and "line 5" in msg


def test_fastq_quality_length_mismatch(tmp_path):
    msg = error(write(tmp_path, "synthetic_q.fq", "@q1\nACGT\n+\nIII\n@q2\nAC\n+\nII\n"))
    assert "'q1'" in msg and "quality length 3 differs from sequence length 4" in msg


def test_fastq_without_plus_line(tmp_path):
    msg = error(write(tmp_path, "synthetic_noplus.fq", "@q1\nACGT\n@q2\nAC\n+\nII\n"))
    assert "'q1'" in msg and "no '+' line" in msg


def test_fastq_header_without_sequence(tmp_path):
    msg = error(write(tmp_path, "synthetic_noseq.fq", "@q1\n+\n\n"))
    assert "'q1'" in msg and "no sequence" in msg


def test_explicit_format_mismatch(tmp_path):
    msg = error(write(tmp_path, "synthetic_x.fa", "@q1\nACGT\n+\nIIII\n"), fmt="fasta")
    assert "looks like FASTQ" in msg


def test_missing_file(tmp_path):
    assert "file not found" in error(tmp_path / "nope.fa")


def test_guess_alphabet(tmp_path):
    assert guess_alphabet(write(tmp_path, "synthetic_g1.fa", ">a\nACGTNACGT-\n")) == "dna"
    assert guess_alphabet(write(tmp_path, "synthetic_g2.fa", f">a\n{PROTEIN}\n")) == "protein"


# --- barloc.io.read_table / detect_format -------------------------------------------------


def test_read_table_fasta_without_labels(tmp_path):
    from barloc.io import read_table

    df = read_table(write(tmp_path, "synthetic.fa", ">a\nACGT\n"), "fasta", "dna")
    assert {"id", "sequence", "label", "group"} <= set(df.columns)
    assert df["label"].tolist() == [None] and df["group"].tolist() == [None]


def test_read_table_fastq_with_labels_sheet(tmp_path):
    from barloc.io import read_table

    fq = write(tmp_path, "synthetic.fq", "@a\nACGT\n+\nIIII\n@b\nGG\n+\nII\n")
    sheet = write(tmp_path, "synthetic.tsv", "id\tlabel\tgroup\na\tIndian\tP1\nb\tAtlantic;Indian\tP2\n")
    df = read_table(fq, "fastq", "dna", labels=sheet, allowed_labels=["Atlantic", "Indian"])
    assert df["label"].tolist() == ["Indian", "Atlantic;Indian"]
    assert df["group"].tolist() == ["P1", "P2"]
    with pytest.raises(InputError, match="record 'a': unknown label 'Indian' \\(allowed: Atlantic\\)"):
        read_table(fq, "fastq", "dna", labels=sheet, allowed_labels=["Atlantic"])


def test_read_table_deeploc_allowed_labels(data_dir):
    from barloc.io import read_table

    with pytest.raises(InputError, match="unknown label"):
        read_table(data_dir / "deeploc_sample.csv", "deeploc", "protein", allowed_labels=["Nucleus"])


def test_read_table_rejects_bad_arguments(tmp_path, data_dir):
    from barloc.io import read_table

    fa = write(tmp_path, "synthetic.fa", ">a\nACGT\n")
    with pytest.raises(InputError, match="unknown format 'genbank'"):
        read_table(fa, "genbank", "dna")
    with pytest.raises(InputError, match="synthetic_missing.fa: file not found"):
        read_table(tmp_path / "synthetic_missing.fa", "fasta", "dna")
    with pytest.raises(InputError, match="labels.tsv: file not found"):
        read_table(fa, "fasta", "dna", labels=tmp_path / "labels.tsv")
    with pytest.raises(InputError, match="holds dna sequences but the task expects protein"):
        read_table(fa, "bold", "protein")


def test_detect_format(tmp_path, data_dir, bundled_bold):
    from barloc.io import detect_format

    assert detect_format(bundled_bold) == "bold"
    assert detect_format(data_dir / "bold_v5_from_v4_sample.tsv") == "bold"
    assert detect_format(data_dir / "deeploc_sample.csv") == "deeploc"
    assert detect_format(write(tmp_path, "synthetic.txt", "\n>a\nAC\n")) == "fasta"
    assert detect_format(write(tmp_path, "x.gz", gzip.compress(b"@a\nAC\n+\nII\n"))) == "fastq"
    # Content that fits nothing falls back to the extension, so the reader can say what is wrong.
    assert detect_format(write(tmp_path, "synthetic_odd.fasta", "hello\n")) == "fasta"
    with pytest.raises(InputError, match="cannot tell the file format"):
        detect_format(write(tmp_path, "synthetic_odd.txt", "hello\n"))
    with pytest.raises(InputError, match="file is empty"):
        detect_format(write(tmp_path, "synthetic_empty.txt", ""))


def test_classic_mac_line_endings_are_accepted(tmp_path):
    # Bare CR line endings, as Excel's "CSV (Macintosh)" and old Mac editors write them.
    path = write(tmp_path, "synthetic_cr.fa", ">r1 d\rACGT\rAC\r>r2\rTT\r")
    assert list(iter_sequences(path, "dna")) == [("r1", "ACGTAC", "d"), ("r2", "TT", "")]
    with pytest.raises(InputError, match=r"synthetic_cr_bad.fa, line 3, record 'r2'"):
        read_sequences(write(tmp_path, "synthetic_cr_bad.fa", ">r1\rACGT\r>r2\rAC!T\r"), "dna")


def test_cr_only_file_larger_than_one_read_block(tmp_path):
    records = "".join(f">r{i}\rACGTACGTAC\r" for i in range(20000))  # ~330 kB, several blocks
    path = write(tmp_path, "synthetic_cr_big.fa", gzip.compress(records.encode()))
    df = read_sequences(path, "dna")
    assert len(df) == 20000 and df["id"].iloc[-1] == "r19999" and set(df["sequence"]) == {"ACGTACGTAC"}
