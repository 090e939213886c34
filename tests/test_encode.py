import numpy as np
import pytest

from barloc.encode import clip_terminal, iupac_matrix, kmer_profile, tokenize, vocab_size


def naive_profile(seq: str, k: int) -> np.ndarray:
    v = np.zeros(4**k)
    for i in range(len(seq) - k + 1):
        w = seq[i : i + k]
        if set(w) <= set("ACGT"):
            v[int("".join(str("ACGT".index(c)) for c in w), 4)] += 1
    return v / v.sum() if v.sum() else v


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_kmer_profile_matches_naive_count(k):
    rng = np.random.default_rng(k)
    seqs = ["".join(rng.choice(list("ACGTN"), size=rng.integers(1, 60), p=[0.24] * 4 + [0.04])) for _ in range(30)]
    got = kmer_profile(seqs, k)
    want = np.stack([naive_profile(s, k) for s in seqs])
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_kmer_windows_do_not_cross_sequences():
    # "AC" + "GT": a window spanning the join would count CG.
    prof = kmer_profile(["AC", "GT"], 2)
    assert prof[0, 1] == 1.0 and prof[1, 11] == 1.0
    assert prof[:, 6].sum() == 0  # CG


def test_clip_terminal_keeps_both_ends():
    s = "M" + "A" * 100 + "KDEL"
    c = clip_terminal(s, 20)
    assert len(c) == 20 and c.startswith("MAAA") and c.endswith("KDEL")
    assert clip_terminal("ACD", 20) == "ACD"


def test_iupac_rows_are_fractional_one_hot():
    m = iupac_matrix()
    tok = tokenize(["ARN"], "dna")[0]
    np.testing.assert_allclose(m[tok], [[1, 0, 0, 0], [0.5, 0, 0.5, 0], [0.25] * 4])
    np.testing.assert_allclose(m[0], 0)
    assert m.shape[0] == vocab_size("dna")


def test_protein_tokens_nonzero():
    tok = tokenize(["ACDWYXU"], "protein")[0]
    assert (tok > 0).all() and len(set(tok.tolist())) == 7


@pytest.mark.parametrize("chars", [1, 7, 64, 1 << 21])
def test_kmer_profile_chunks_agree(monkeypatch, chars):
    """Rows are encoded in chunks of about _CHUNK_CHARS characters; any chunking gives the same profiles."""
    import barloc.encode as enc

    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGTRN"), size=rng.integers(0, 40), p=[0.23] * 4 + [0.04] * 2)) for _ in range(25)]
    want = np.stack([naive_profile(s, 2) for s in seqs])
    monkeypatch.setattr(enc, "_CHUNK_CHARS", chars)
    np.testing.assert_allclose(enc.kmer_profile(seqs, 2), want, atol=1e-6)


def test_kmer_profile_frequencies_are_count_over_total_in_float32():
    # "AAAA" has 3 AA windows, "AAC" one AA and one AC: exact float32 quotients, not sums of 1/total.
    prof = kmer_profile(["AAAA", "AAAC", "ACNAC"], 2)
    assert prof[0, 0] == np.float32(1.0)
    assert prof[1, 0] == np.float32(2) / np.float32(3) and prof[1, 1] == np.float32(1) / np.float32(3)
    assert prof[2, 1] == np.float32(1.0)  # AC twice; CN and NA skipped


def test_kmer_profile_rejects_k_beyond_int32_codes():
    with pytest.raises(ValueError, match="1-15"):
        kmer_profile(["ACGT"], 16)


@pytest.mark.parametrize("chars", [1, 5, 64, 1 << 21])
def test_kmer_profile_sparse_is_the_dense_profile_for_any_chunking(monkeypatch, chars):
    """kmer_profile is the CSR's dense form; rows are encoded in chunks of about _CHUNK_CHARS
    characters, and any chunking gives the same sorted CSR."""
    import barloc.encode as enc

    rng = np.random.default_rng(4)
    seqs = ["".join(rng.choice(list("ACGTRN"), size=rng.integers(0, 40), p=[0.23] * 4 + [0.04] * 2)) for _ in range(25)]
    monkeypatch.setattr(enc, "_CHUNK_CHARS", chars)
    sp = enc.kmer_profile_sparse(seqs, 2)
    assert sp.shape == (25, 16) and sp.dtype == np.float32
    np.testing.assert_allclose(sp.toarray(), np.stack([naive_profile(s, 2) for s in seqs]), atol=1e-6)
    # one stored entry per distinct k-mer present, column indices sorted within each row
    assert sp.nnz == int((sp.toarray() != 0).sum())
    for r in range(25):
        cols = sp.indices[sp.indptr[r] : sp.indptr[r + 1]]
        assert (np.diff(cols) > 0).all()


def test_kmer_profile_sparse_of_nothing():
    import barloc.encode as enc

    assert enc.kmer_profile_sparse([], 3).shape == (0, 64)
    assert enc.kmer_profile_sparse(["", "NN", "A"], 2).nnz == 0
    assert enc.kmer_profile(["", "ACG"], 2).tolist()[0] == [0.0] * 16
