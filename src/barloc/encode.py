"""Sequences to arrays: token ids for the CNN encoders, k-mer profiles for the k-mer encoder.

Everything is vectorised over one concatenated byte buffer, so encoding 100k barcodes is a
handful of numpy calls rather than a Python loop per residue.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

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


def unknown_token(alphabet: str) -> int:
    """The token id of the letter that says nothing: X (any amino acid) or N (any base)."""
    return TOKENS[alphabet].index("X" if alphabet == "protein" else "N") + 1


def vocab_size(alphabet: str) -> int:
    """Number of token ids including padding (0)."""
    return len(TOKENS[alphabet]) + 1


#: Ambiguity and rare residues as the standard residues they stand for (X: all twenty).
PROTEIN_AMBIGUITY = {"X": "ACDEFGHIKLMNPQRSTVWY", "B": "DN", "Z": "EQ", "J": "IL", "U": "C", "O": "K"}


def blosum62_embedding(dim: int) -> np.ndarray:
    """(vocab, dim) protein token vectors whose dot products approximate BLOSUM62 scores: the
    matrix's top ``dim`` eigen-directions scaled by the square root of their eigenvalues (at
    most 20 columns carry it; further columns are zero). Ambiguity codes are the mean of the
    residues they stand for; padding is zero."""
    from Bio.Align import substitution_matrices

    m = substitution_matrices.load("BLOSUM62")
    std = PROTEIN_AMBIGUITY["X"]
    scores = np.array([[m[a, b] for b in std] for a in std], dtype=np.float64)
    values, vectors = np.linalg.eigh(scores)
    order = np.argsort(values)[::-1][: min(dim, len(std))]
    rows = vectors[:, order] * np.sqrt(np.clip(values[order], 0.0, None))
    rows /= rows.std() or 1.0
    out = np.zeros((vocab_size("protein"), dim), dtype=np.float32)
    for i, ch in enumerate(PROTEIN_TOKENS, start=1):
        members = PROTEIN_AMBIGUITY.get(ch, ch)
        out[i, : rows.shape[1]] = rows[[std.index(c) for c in members]].mean(axis=0)
    return out


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
# Characters encoded per chunk: the chunk's temporary arrays (one int64 window key and a few
# smaller arrays per character) stay within some tens of MB whatever the number of sequences.
_CHUNK_CHARS = 1 << 21


def kmer_profile(seqs: Sequence[str], k: int) -> np.ndarray:
    """Frequency of each of the 4**k DNA k-mers per sequence, (n, 4**k) float32.

    The dense form of :func:`kmer_profile_sparse` (same counts, same float32 quotients); it
    needs n x 4**k x 4 bytes (26 GB for 100,000 sequences at k = 8), so training and
    prediction keep the sparse form and densify one batch at a time.
    """
    return kmer_profile_sparse(seqs, k).toarray()


def kmer_profile_sparse(seqs: Sequence[str], k: int) -> sparse.csr_array:
    """Frequency of each of the 4**k DNA k-mers per sequence as a (n, 4**k) float32 CSR array
    with sorted column indices: memory grows with the k-mers present (at most one per window),
    not with 4**k.

    k-mers that contain an ambiguity code are skipped. Sequences are encoded in chunks of rows
    (about ``_CHUNK_CHARS`` characters each); within a chunk they are joined into one buffer
    with a separator byte, so every window code comes from k shifted ORs over contiguous arrays
    and a window that crosses into the next sequence contains the separator and is skipped like
    an ambiguity code. Each row's window codes are sorted and run-length counted; a frequency is
    the float32 count divided by the float32 number of counted windows in its row.
    """
    if not 1 <= k <= 15:  # window codes are int32
        raise ValueError(f"k-mer size must be 1-15, got {k}")
    n = len(seqs)
    dim = 4**k
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=n)
    # Chunk boundaries: a new chunk starts where the joined characters pass a multiple of the budget.
    ends = np.cumsum(lengths + 1)
    cuts = np.flatnonzero(np.diff(ends // _CHUNK_CHARS, prepend=0)) + 1
    bounds = np.unique(np.concatenate([[0], cuts[cuts < n], [n]]))
    per_row = np.zeros(n, dtype=np.int64)
    codes: list[np.ndarray] = []
    freqs: list[np.ndarray] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        rows, code, freq = _count_chunk(seqs[a:b], lengths[a:b], k)
        per_row[a:b] = np.bincount(rows, minlength=b - a)
        codes.append(code)
        freqs.append(freq)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(per_row, out=indptr[1:])
    index_dtype = np.int32 if max(indptr[-1], dim) < np.iinfo(np.int32).max else np.int64
    data = np.concatenate(freqs) if freqs else np.zeros(0, dtype=np.float32)
    indices = (np.concatenate(codes) if codes else np.zeros(0, dtype=np.int32)).astype(index_dtype, copy=False)
    out = sparse.csr_array((data, indices, indptr.astype(index_dtype)), shape=(n, dim))
    out.has_sorted_indices = True  # runs come out of a sort by (row, code)
    return out


def _count_chunk(seqs: Sequence[str], lengths: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, k-mer code, frequency) of each distinct k-mer of each sequence, sorted by row and
    code; rows are 0-based within the chunk."""
    n = len(seqs)
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32))
    buf = _BASE_CODE[np.frombuffer(("\n".join(seqs) + "\n").encode("ascii"), dtype=np.uint8)]
    nwin = buf.size - k + 1
    if nwin <= 0:
        return empty
    good = buf >= 0
    # A window is valid when the count of non-ACGT bytes does not change across it.
    nbad = np.zeros(buf.size + 1, dtype=np.int32)
    np.cumsum(~good, out=nbad[1:])
    starts = np.flatnonzero(nbad[k : k + nwin] == nbad[:nwin])
    if starts.size == 0:
        return empty
    base = np.where(good, buf, 0).astype(np.int32)
    code = base[:nwin].copy()
    for j in range(1, k):
        code <<= 2
        code |= base[j : j + nwin]
    # Counted windows per row, from where each row starts in the joined buffer.
    row_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=row_start[1:])
    totals = np.diff(np.searchsorted(starts, row_start))
    # Row-major cell number, row * 4**k + code; int32 when the chunk's cells fit (a faster sort).
    kt = np.int32 if n << (2 * k) < np.iinfo(np.int32).max else np.int64
    key = (np.repeat(np.arange(n, dtype=kt), totals) << (2 * k)) | code[starts].astype(kt, copy=False)
    key.sort()
    first = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    counts = np.diff(np.append(first, key.size))
    key = key[first]
    urow = (key >> (2 * k)).astype(np.int64)
    # float32 count / float32 total: the quotient a dense count matrix divided by its row sums gives
    freq = counts.astype(np.float32) / totals.astype(np.float32)[urow]
    return urow, (key & (4**k - 1)).astype(np.int32), freq
