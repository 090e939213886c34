"""clean_sequence: alphabets, normalisation and the messages users see."""

from __future__ import annotations

import pytest

from barloc.errors import InputError
from barloc.io.sequences import ALPHABETS, clean_sequence

PROTEIN = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVV"


def test_alphabets_cover_iupac_and_extended_amino_acids():
    assert ALPHABETS["dna"] == frozenset("ACGTURYSWKMBDHVN")
    assert set("ACDEFGHIKLMNPQRSTVWYXBZJUO") == ALPHABETS["protein"]
    assert "*" not in ALPHABETS["protein"]


def test_dna_is_upper_cased_ungapped_and_u_becomes_t():
    assert clean_sequence(" acg-t.u\r\nNNry ", "dna", "f.fa", "r1") == "ACGTTNNRY"


def test_soft_masked_dna_is_accepted():
    assert clean_sequence("ACGTacgtACGT", "dna", "f.fa", "r1") == "ACGTACGTACGT"


def test_protein_trailing_stop_is_stripped_but_internal_stop_is_not():
    assert clean_sequence("mkt*", "protein", "f.fa", "p1") == "MKT"
    with pytest.raises(InputError) as err:
        clean_sequence("MK*T", "protein", "f.fa", "p1")
    assert "'*' at position 3" in str(err.value)
    assert "only at the end" in str(err.value)


def test_invalid_dna_character_names_position_file_and_record():
    with pytest.raises(InputError) as err:
        clean_sequence("ACGTAC1GT", "dna", "data/x.fa", "seq7")
    msg = str(err.value)
    assert "data/x.fa" in msg and "'seq7'" in msg
    assert "'1' at position 7" in msg


def test_position_counts_gaps_as_written():
    with pytest.raises(InputError, match="'!' at position 4"):
        clean_sequence("A--!", "dna", "f.fa", "r")


def test_protein_given_as_dna_is_named():
    with pytest.raises(InputError) as err:
        clean_sequence(PROTEIN, "dna", "reads.fa", "P1")
    assert "looks like a protein sequence but the task expects DNA" in str(err.value)
    assert "'P1'" in str(err.value)


def test_dna_given_as_protein_is_named():
    with pytest.raises(InputError) as err:
        clean_sequence("ACGTTGCAACGTTAGCNACGTAGCT", "protein", "prots.fa", "d1")
    assert "looks like DNA but the task expects protein" in str(err.value)
    assert "prots.fa" in str(err.value)


def test_short_acgt_rich_peptide_is_still_protein():
    assert clean_sequence("GATTACA", "protein", "f", "r") == "GATTACA"


def test_heavily_ambiguous_dna_is_still_dna():
    assert clean_sequence("RYKMSWBDHVN" * 3, "dna", "f", "r") == "RYKMSWBDHVN" * 3


@pytest.mark.parametrize("seq", ["", "  \n", "---", "*"])
def test_empty_sequence_is_an_error(seq):
    alphabet = "protein" if seq == "*" else "dna"
    with pytest.raises(InputError, match="sequence is empty"):
        clean_sequence(seq, alphabet, "f.fa", "r1")


def test_unknown_alphabet():
    with pytest.raises(InputError, match="unknown alphabet 'rna'"):
        clean_sequence("ACGU", "rna", "f.fa", "r1")
