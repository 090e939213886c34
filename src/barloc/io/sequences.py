"""Residue alphabets and the one place where a raw sequence string becomes clean residues."""

from __future__ import annotations

from pathlib import Path

from barloc.errors import InputError

_DNA_CORE = "ACGTU"
_IUPAC = "RYSWKMBDHVN"
_AMINO = "ACDEFGHIKLMNPQRSTVWY"
_AMINO_EXTRA = "XBZJUO"  # unknown, ambiguity pairs (B, Z, J), selenocysteine, pyrrolysine

ALPHABETS: dict[str, frozenset[str]] = {
    "dna": frozenset(_DNA_CORE + _IUPAC),
    "protein": frozenset(_AMINO + _AMINO_EXTRA),
}

_DNA_GAPS = "-."
_NUCLEOTIDE_LIKE = frozenset("ACGTUN")
_WHITESPACE_TABLE = str.maketrans("", "", " \t\r\n\v\f")
_DNA_GAP_TABLE = str.maketrans("", "", _DNA_GAPS)
_PROTEIN_LOOKING_FRACTION = 0.10
_DNA_LOOKING_FRACTION = 0.95
# Below this length a few odd letters are more likely typos than a whole protein.
_MIN_LENGTH_FOR_GUESS = 20


def clean_sequence(seq: str, alphabet: str, path: str | Path | None, record: str | None) -> str:
    """Return upper-case residues of `seq`, or raise InputError naming the first bad residue.

    DNA: gaps (`-`, `.`) are dropped and U becomes T. Protein: a trailing `*` (stop) is dropped.
    Positions in messages are 1-based and count residues as written, ignoring line breaks.
    """
    if alphabet not in ALPHABETS:
        raise InputError(path, f"unknown alphabet {alphabet!r} (expected one of: {', '.join(ALPHABETS)})")
    allowed = ALPHABETS[alphabet]
    residues = seq.translate(_WHITESPACE_TABLE).upper()
    if alphabet == "protein":
        residues = residues.rstrip("*")
        checked = residues
    else:
        checked = residues.translate(_DNA_GAP_TABLE)
    if not checked:
        raise InputError(path, "sequence is empty", record=record)

    present = set(checked)
    if not present <= allowed:
        if alphabet == "dna" and _looks_like_protein(checked):
            raise InputError(path, "looks like a protein sequence but the task expects DNA", record=record)
        tolerated = allowed | set(_DNA_GAPS) if alphabet == "dna" else allowed
        pos, char = next((i, c) for i, c in enumerate(residues, 1) if c not in tolerated)
        hint = " (a stop codon '*' is allowed only at the end)" if char == "*" else ""
        raise InputError(
            path,
            f"invalid {alphabet} residue {char!r} at position {pos}{hint}",
            record=record,
        )

    if alphabet == "protein" and _looks_like_dna(checked):
        raise InputError(path, "looks like DNA but the task expects protein", record=record)
    if alphabet == "dna":
        return checked.replace("U", "T")
    return checked


def _looks_like_protein(residues: str) -> bool:
    """Only residue letters, and many of them (E, F, I, L, P, Q, ...) are never nucleotide codes.

    A DNA-expected sequence like that is almost certainly a protein file given to the wrong task.
    """
    if len(residues) < _MIN_LENGTH_FOR_GUESS or not set(residues) <= ALPHABETS["protein"] | {"*"}:
        return False
    protein_only = sum(1 for c in residues if c not in ALPHABETS["dna"])
    return protein_only / len(residues) > _PROTEIN_LOOKING_FRACTION


def _looks_like_dna(residues: str) -> bool:
    if len(residues) < _MIN_LENGTH_FOR_GUESS:
        return False
    nucleotide = sum(residues.count(c) for c in _NUCLEOTIDE_LIKE)
    return nucleotide / len(residues) >= _DNA_LOOKING_FRACTION
