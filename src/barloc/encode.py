"""Sequences to arrays: token ids for the CNN encoders, k-mer profiles for the k-mer encoder.

Everything is vectorised over one concatenated byte buffer, so encoding 100k barcodes is a
handful of numpy calls rather than a Python loop per residue.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Token 0 is padding. DNA: A C G T, then the IUPAC ambiguity codes, which the DNA encoder
# turns into fractional one-hot vectors (R = A/G -> 0.5 A + 0.5 G).
DNA_TOKENS = "ACGTRYSWKMBDHVN"
IUPAC = {
    "A": "A",
    "C": "C",
    "G": "G",
    "T": "T",
    "R": "AG",
    "Y": "CT",
    "S": "CG",
    "W": "AT",
    "K": "GT",
    "M": "AC",
    "B": "CGT",
    "D": "AGT",
    "H": "ACT",
    "V": "ACG",
    "N": "ACGT",
}
PROTEIN_TOKENS = "ACDEFGHIKLMNPQRSTVWYXBZJUO"
TOKENS = {"dna": DNA_TOKENS, "protein": PROTEIN_TOKENS}


def _lookup(tokens: str) -> np.ndarray:
    table = np.zeros(256, dtype=np.int64)
    for i, ch in enumerate(tokens, start=1):
        table[ord(ch)] = i
    return table


_LOOKUPS = {name: _lookup(tokens) for name, tokens in TOKENS.items()}


def vocab_size(alphabet: str) -> int:
    """Number of token ids including padding (0)."""
    return len(TOKENS[alphabet]) + 1


def iupac_matrix() -> np.ndarray:
    """(vocab, 4) fractional one-hot rows for DNA tokens; the padding row is zero."""
    mat = np.zeros((vocab_size("dna"), 4), dtype=np.float32)
    for i, ch in enumerate(DNA_TOKENS, start=1):
        bases = IUPAC[ch]
        for b in bases:
            mat[i, "ACGT".index(b)] = 1.0 / len(bases)
    return mat


def clip_terminal(seq: str, max_len: int) -> str:
    """Keep both ends of an over-long sequence: targeting signals sit at the N- and C-termini."""
    if len(seq) <= max_len:
        return seq
    head = (max_len + 1) // 2
    return seq[:head] + seq[len(seq) - (max_len - head) :]


def tokenize(seqs: Sequence[str], alphabet: str, max_len: int | None = None) -> list[np.ndarray]:
    """Token-id arrays (int64, no padding), clipped at both ends to ``max_len``."""
    table = _LOOKUPS[alphabet]
    out = []
    for s in seqs:
        if max_len is not None:
            s = clip_terminal(s, max_len)
        out.append(table[np.frombuffer(s.encode("ascii"), dtype=np.uint8)])
    return out


_BASE_CODE = np.full(256, -1, dtype=np.int8)
_BASE_CODE[np.frombuffer(b"ACGT", dtype=np.uint8)] = np.arange(4, dtype=np.int8)
# Rows encoded per chunk: the chunk's slice of the output (rows x 4**k float32) stays within
# about 16 MB, so the scattered count updates hit cache rather than main memory.
_CHUNK_CELLS = 1 << 22


def kmer_profile(seqs: Sequence[str], k: int) -> np.ndarray:
    """Frequency of each of the 4**k DNA k-mers per sequence, (n, 4**k) float32.

    k-mers that contain an ambiguity code are skipped. Sequences are encoded in chunks of rows
    (see ``_CHUNK_CELLS``); within a chunk they are joined into one buffer with a separator byte,
    so every window code comes from k shifted ORs over contiguous arrays and a window that
    crosses into the next sequence contains the separator and is skipped like an ambiguity code.
    Only the counted cells are touched: counts are scattered into the zeroed output and divided
    in place, never as a dense (n, 4**k) integer array.
    """
    if not 1 <= k <= 15:  # window codes are int32
        raise ValueError(f"k-mer size must be 1-15, got {k}")
    n = len(seqs)
    dim = 4**k
    out = np.zeros((n, dim), dtype=np.float32)
    step = max(1, _CHUNK_CELLS // dim)
    for i in range(0, n, step):
        _count_into(out[i : i + step], seqs[i : i + step], k)
    return out


def _count_into(out: np.ndarray, seqs: Sequence[str], k: int) -> None:
    n, dim = out.shape
    buf = _BASE_CODE[np.frombuffer(("\n".join(seqs) + "\n").encode("ascii"), dtype=np.uint8)]
    nwin = buf.size - k + 1
    if nwin <= 0:
        return
    good = buf >= 0
    # A window is valid when the count of non-ACGT bytes does not change across it.
    nbad = np.zeros(buf.size + 1, dtype=np.int32)
    np.cumsum(~good, out=nbad[1:])
    starts = np.flatnonzero(nbad[k : k + nwin] == nbad[:nwin])
    if starts.size == 0:
        return
    base = np.where(good, buf, 0).astype(np.int32)
    code = base[:nwin].copy()
    for j in range(1, k):
        code <<= 2
        code |= base[j : j + nwin]
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=n)
    row = np.repeat(np.arange(n, dtype=np.int64), lengths + 1)[starts]
    flat = row * dim + code[starts]
    cells = out.reshape(-1)
    np.add.at(cells, flat, np.float32(1))
    totals = np.bincount(row, minlength=n).astype(np.float32)
    cells[flat] = cells[flat] / totals[row]  # float32 count / total, as a dense division would give
