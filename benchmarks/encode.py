"""k-mer profile encoding speed: barloc.encode.kmer_profile against scikit-learn's
HashingVectorizer(analyzer="char"), the path q2-feature-classifier takes.

Both encode the same barcodes (the bundled COI-5P sequences repeated to --n), single-threaded,
in one run, into sparse matrices (barloc: kmer_profile_sparse, what training holds), and the
ratio of their best-of-3 times is the figure (hardware cancels out); the dense API's time
(kmer_profile, in --batch batches) is recorded beside it.
Target: barloc at least 5x faster. Memory: the bytes of the sparse profiles that training holds
(barloc.encode.kmer_profile_sparse: CSR data, indices and indptr) against the dense
n x 4**k float32 matrix they replace.

    python benchmarks/encode.py --n 100000 --k 7 --out benchmarks/results/encode.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import sklearn
from sklearn.feature_extraction.text import HashingVectorizer

from barloc.encode import kmer_profile, kmer_profile_sparse
from barloc.io.bold import read_bold

REPO = Path(__file__).resolve().parents[1]


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=7)
    ap.add_argument(
        "--batch",
        type=int,
        default=10_000,
        help="the dense API is called on batches of this size (it bounds the dense output's memory; "
        "kmer_profile chunks its work internally)",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    seqs = read_bold(REPO / "resources/barcodes/tuna_bold_v4.tsv")["sequence"].tolist()
    seqs = (seqs * (args.n // len(seqs) + 1))[: args.n]
    # q2-feature-classifier's classify-sklearn default hashes char 7-grams into 8192 features.
    hv = HashingVectorizer(
        analyzer="char", ngram_range=(args.k, args.k), n_features=8192, alternate_sign=False, norm="l1"
    )
    t_sklearn = best_of(lambda: hv.transform(seqs))
    # What training holds (EncodedDataset): the sparse profiles, like the hashing baseline's output.
    t_barloc = best_of(lambda: kmer_profile_sparse(seqs, args.k))

    # The dense API (benchmarks and the nearest encoder's references), in batches that bound its memory.
    def dense_batches() -> None:  # each batch is dropped before the next: memory of one batch
        for i in range(0, len(seqs), args.batch):
            kmer_profile(seqs[i : i + args.batch], args.k)

    t_dense = best_of(dense_batches)
    csr = kmer_profile_sparse(seqs, args.k)
    sparse_bytes = csr.data.nbytes + csr.indices.nbytes + csr.indptr.nbytes
    dense_bytes = len(seqs) * 4**args.k * 4
    result = {
        "n_sequences": len(seqs),
        "k": args.k,
        "mean_length": sum(map(len, seqs)) / len(seqs),
        "seconds_barloc": round(t_barloc, 3),
        "seconds_barloc_dense": round(t_dense, 3),
        "seconds_sklearn_hashing": round(t_sklearn, 3),
        "speedup": round(t_sklearn / t_barloc, 2),
        "target_speedup": 5.0,
        "baseline": "sklearn HashingVectorizer(analyzer='char', ngram_range=(k, k))",
        "batch": args.batch,
        "bytes_sparse_profiles": int(sparse_bytes),
        "bytes_dense_profiles": int(dense_bytes),
        "memory_ratio": round(dense_bytes / sparse_bytes, 1),
        "versions": {"numpy": np.__version__, "scikit-learn": sklearn.__version__},
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
