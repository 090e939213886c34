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


@pytest.mark.parametrize("cells", [1, 7, 64, 1 << 22])
def test_kmer_profile_chunks_agree(monkeypatch, cells):
    """Rows are encoded in chunks of _CHUNK_CELLS / 4**k; any chunking gives the same profiles."""
    import barloc.encode as enc

    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGTRN"), size=rng.integers(0, 40), p=[0.23] * 4 + [0.04] * 2)) for _ in range(25)]
    want = np.stack([naive_profile(s, 2) for s in seqs])
    monkeypatch.setattr(enc, "_CHUNK_CELLS", cells)
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
