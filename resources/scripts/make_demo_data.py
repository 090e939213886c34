"""Rebuild the bundled demo subsets from the real data in ../shared/data (see resources/README.md).

- protein/deeploc2_demo.csv: 400 proteins from each DeepLoc 2.0 homology partition, rows and
  columns unchanged, sampled so that every location keeps examples in every partition.
- protein/query.fasta: 300 other DeepLoc proteins (not in the demo table) as an unlabelled query.
- barcodes/market_samples.fasta: the COI-5P barcodes of market, restaurant and sushi samples in
  the tuna BOLD export, whose origin is unknown: the food-fraud query.

Usage: python resources/scripts/make_demo_data.py ../shared/data [protein]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd




SEED = 20261123
PER_PARTITION = 400
PER_LABEL = 15
N_QUERY = 300


def deeploc_subset(full: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    locations = list(full.columns[full.columns.get_loc("Membrane") + 1 : full.columns.get_loc("Sequence")])
    keep: list[int] = []
    for _, part in full.groupby("Partition"):
        chosen: set[int] = set()
        # Rarest locations first, so the quota is not spent before they are reached.
        for loc in sorted(locations, key=lambda c: part[c].sum()):
            idx = part.index[part[loc] == 1].difference(list(chosen))
            chosen.update(rng.choice(idx, min(PER_LABEL, len(idx)), replace=False).tolist())
        rest = part.index.difference(list(chosen))
        chosen.update(rng.choice(rest, PER_PARTITION - len(chosen), replace=False).tolist())
        keep += sorted(chosen)
    return full.loc[keep]


def write_fasta(ids, seqs, path: Path) -> None:
    with open(path, "w") as fh:
        for i, s in zip(ids, seqs):
            fh.write(f">{i}\n")
            for k in range(0, len(s), 80):
                fh.write(s[k : k + 80] + "\n")


def main(shared: Path, out: Path, only: str = "all") -> None:
    rng = np.random.default_rng(SEED)
    full = pd.read_csv(shared / "protein/deeploc2_swissprot_train_val.csv.gz")
    demo = deeploc_subset(full, rng)
    demo.to_csv(out / "protein/deeploc2_demo.csv", index=False)
    others = full.drop(demo.index)
    query = others.loc[rng.choice(others.index, N_QUERY, replace=False)]
    write_fasta(query["ACC"], query["Sequence"], out / "protein/query.fasta")
    print(f"deeploc demo {len(demo)}, protein query {len(query)}")
    if only == "protein":
        return

    from barloc import geo  # noqa: PLC0415 (only the barcode part needs the package)
    from barloc.io.bold import read_bold  # noqa: PLC0415

    bold = read_bold(out / "barcodes/tuna_bold_v4.tsv", markers=["COI-5P"])
    text = bold[["region", "site", "notes"]].fillna("").agg(" ".join, axis=1)
    market = bold[text.map(geo.is_market_sample)]
    write_fasta(market["id"], market["sequence"], out / "barcodes/market_samples.fasta")
    print(f"market barcodes {len(market)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parents[1], *sys.argv[2:])
