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
    "A": "A", "C": "C", "G": "G", "T": "T",
    "R": "AG", "Y": "CT", "S": "CG", "W": "AT", "K": "GT", "M": "AC",
    "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG", "N": "ACGT",
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
    return seq[:head] + seq[len(seq) - (max_len - head):]


def tokenize(seqs: Sequence[str], alphabet: str, max_len: int | None = None) -> list[np.ndarray]:
    """Token-id arrays (int64, no padding), clipped at both ends to ``max_len``."""
    table = _LOOKUPS[alphabet]
    out = []
    for s in seqs:
        if max_len is not None:
            s = clip_terminal(s, max_len)
        out.append(table[np.frombuffer(s.encode("ascii"), dtype=np.uint8)])
    return out


def kmer_profile(seqs: Sequence[str], k: int) -> np.ndarray:
    """Frequency of each of the 4**k DNA k-mers per sequence, (n, 4**k) float32.

    k-mers that contain an ambiguity code are skipped. All sequences are joined into one
    buffer so the window codes come from k shifted adds over a single array.
    """
    n = len(seqs)
    dim = 4**k
    out = np.zeros((n, dim), dtype=np.float32)
    if n == 0:
        return out
    code = np.full(256, -1, dtype=np.int64)
    for i, b in enumerate(b"ACGT"):
        code[b] = i
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=n)
    buf = code[np.frombuffer("".join(seqs).encode("ascii"), dtype=np.uint8)]
    total = buf.size
    if total < k:
        return out
    nwin = total - k + 1
    idx = np.zeros(nwin, dtype=np.int64)
    bad = np.zeros(nwin, dtype=bool)
    for j in range(k):
        part = buf[j : j + nwin]
        idx = idx * 4 + np.maximum(part, 0)
        bad |= part < 0
    # A window is valid only if it lies inside one sequence.
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    row = np.repeat(np.arange(n), lengths)[:nwin]
    pos = np.arange(nwin) - starts[row]
    valid = ~bad & (pos + k <= lengths[row])
    flat = row[valid] * dim + idx[valid]
    counts = np.bincount(flat, minlength=n * dim).reshape(n, dim).astype(np.float32)
    totals = counts.sum(axis=1, keepdims=True)
    np.divide(counts, totals, out=out, where=totals > 0)
    return out
