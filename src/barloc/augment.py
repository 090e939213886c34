"""Training-set augmentation for DNA barcodes: altered copies of the training records.

BOLD projects sequence different stretches of the barcode region (primers, read lengths) and
carry sequencing noise, and grouped splits test on projects the model never saw. Each copy
of a training record is a random stretch of it (``crop``: a length drawn uniformly between
that fraction of the record and all of it, at a random start) with point substitutions
(``substitution``: the chance that a base is replaced by a random base). Only the training
part is augmented, never validation or test records, and the copies keep their record's
label (and soft target). Seeded, so a run repeats exactly.

Configured per task as ``train.augment: {copies: 2, crop: 0.7, substitution: 0.01}``;
``benchmarks/fish_origin.py`` measures what it changes.

``train.mask_residues`` (:func:`mask_tokens`, any alphabet, cnn encoder) is the other kind:
no copies, but a fresh share of every training batch's residues hidden as X (N) each epoch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
MIN_LENGTH = 20


def augment_records(train: pd.DataFrame, cfg: dict | None, seed: int, alphabet: str = "dna") -> pd.DataFrame:
    """``train`` followed by ``cfg["copies"]`` altered copies of every record (see the module
    docstring); ``train`` itself when ``cfg`` is empty or asks for no copies."""
    copies = int((cfg or {}).get("copies", 0))
    if copies <= 0 or train.empty:
        return train
    if alphabet != "dna":
        raise ValueError("train.augment alters DNA barcodes; it is not available for protein tasks")
    crop = float(cfg.get("crop", 1.0))
    subst = float(cfg.get("substitution", 0.0))
    rng = np.random.default_rng(seed)
    extra = []
    for _ in range(copies):
        seqs = []
        for s in train["sequence"]:
            if crop < 1:
                n = max(MIN_LENGTH, int(len(s) * rng.uniform(crop, 1.0)))
                start = rng.integers(0, max(len(s) - n, 0) + 1)
                s = s[start : start + n]
            if subst > 0:
                a = np.frombuffer(s.encode(), dtype=np.uint8).copy()
                hit = rng.random(len(a)) < subst
                a[hit] = _BASES[rng.integers(0, 4, int(hit.sum()))]
                s = a.tobytes().decode()
            seqs.append(s)
        extra.append(train.assign(sequence=seqs))
    return pd.concat([train, *extra], ignore_index=True)


def mask_tokens(tokens: torch.Tensor, rate: float, unknown: int) -> torch.Tensor:
    """``train.mask_residues``: ``tokens`` (a training batch, 0 = padding) with each residue
    replaced by ``unknown`` (X, or N for DNA) with chance ``rate``, drawn afresh every call."""
    hit = (torch.rand(tokens.shape, device=tokens.device) < rate) & (tokens > 0)
    return tokens.masked_fill(hit, unknown)
