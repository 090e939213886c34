"""`barloc validate`: summaries on real files, one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from barloc.cli import main
from barloc.errors import InputError

BARLOC = Path(sys.executable).parent / "barloc"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_validate_bundled_bold(bundled_bold, capsys):
    assert main(["validate", str(bundled_bold)]) == 0
    out = capsys.readouterr().out
    assert "format:           bold (BOLD v4)" in out
    assert "records:          1580" in out
    # Labelled from geography exactly as the workflow's ingest labels them.
    assert "labelled records: 749 (47.4%)" in out
    assert "coordinates 372" in out and "market 76" in out
    assert "ANGBF (268)" in out
    assert "no record has a label" not in out


def test_validate_bold_with_a_bold_column_as_label(bundled_bold, capsys):
    assert main(["validate", str(bundled_bold), "--label", "species"]) == 0
    out = capsys.readouterr().out
    assert "Thunnus albacares" in out and "labelled by" not in out


def test_validate_deeploc_sample(data_dir, capsys):
    assert main(["validate", str(data_dir / "deeploc_sample.csv")]) == 0
    out = capsys.readouterr().out
    assert "format:           deeploc" in out and "alphabet:         protein" in out
    assert "labelled records: 200 (100.0%) (multi-label)" in out
    assert "Nucleus" in out and "64" in out


def test_validate_fasta_with_labels_guesses_dna(tmp_path, capsys):
    fasta = write(tmp_path, "synthetic.fa", ">a\nACGTACGT\n>b\nACGTAC\n>c\nACG\n")
    sheet = write(
        tmp_path,
        "synthetic.tsv",
        "id\tlabel\tgroup\na\tPacific\tg1\nb\tPacific\tg2\nc\t\tg2\nzz\tX\tg3\n",
    )
    assert main(["validate", str(fasta), "--labels", str(sheet)]) == 0
    out = capsys.readouterr().out
    assert "alphabet:         dna" in out
    assert "labelled records: 2 (66.7%)" in out
    assert "Pacific" in out
    assert "groups:           2" in out
    assert "min 3, median 6, max 8" in out
    assert "1 id(s) in the labels sheet have no sequence" in out  # reader warnings are summarised


def test_validate_markers_all_reports_duplicate(bundled_bold, capsys):
    assert main(["validate", str(bundled_bold), "--markers", "all"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("barloc: error: ") and "duplicate processid" in err


def test_validate_error_is_one_line(tmp_path, capsys):
    fasta = write(tmp_path, "synthetic_bad.fa", ">r1\nACGT\n>r2\nAC7GT\n")
    assert main(["validate", str(fasta), "--alphabet", "dna"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("barloc: error: ") and "synthetic_bad.fa" in lines[0]
    assert "'r2'" in lines[0] and "position 3" in lines[0]


def test_validate_wrong_alphabet_for_format(data_dir, capsys):
    assert main(["validate", str(data_dir / "deeploc_sample.csv"), "--alphabet", "dna"]) == 2
    assert "task expects dna" in capsys.readouterr().err


def test_debug_reraises(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        main(["--debug", "validate", str(tmp_path / "missing.fa")])


def test_usage_error_returns_exit_code(capsys):
    assert main([]) == 2
    assert main(["--version"]) == 0


def test_console_script_error(tmp_path):
    missing = tmp_path / "missing.fa"
    proc = subprocess.run([str(BARLOC), "validate", str(missing)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"barloc: error: {missing}: file not found"]
    assert "Traceback" not in proc.stderr
