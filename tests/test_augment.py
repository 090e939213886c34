"""Training-set augmentation of DNA barcodes (train.augment). Data here is synthetic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from barloc.augment import MIN_LENGTH, augment_records


def synthetic_train(n: int = 30, length: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": [f"syn{i}" for i in range(n)],
            "sequence": ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)],
            "label": pd.Series(["A", "B", "C"] * (n // 3), dtype=object),
        }
    )


def test_no_copies_is_a_no_op():
    df = synthetic_train()
    assert augment_records(df, None, 1) is df
    assert augment_records(df, {"copies": 0, "crop": 0.5}, 1) is df


def test_copies_are_stretches_with_substitutions_and_keep_labels():
    df = synthetic_train(n=60, length=300)
    out = augment_records(df, {"copies": 2, "crop": 0.7, "substitution": 0.05}, seed=3)
    assert len(out) == 3 * len(df)
    pd.testing.assert_frame_equal(out.iloc[:60].reset_index(drop=True), df)  # the originals first, untouched
    copies = out.iloc[60:].reset_index(drop=True)
    assert copies["id"].tolist() == df["id"].tolist() * 2 and copies["label"].tolist() == df["label"].tolist() * 2
    lengths = copies["sequence"].str.len()
    assert lengths.between(int(0.7 * 300), 300).all() and lengths.nunique() > 10
    # Each copy is its original's stretch with about 5% of bases replaced (3/4 of them by another base).
    mismatches = []
    for (_, row), orig in zip(copies.iterrows(), df["sequence"].tolist() * 2):
        best = min(
            sum(a != b for a, b in zip(row["sequence"], orig[s:])) for s in range(len(orig) - len(row["sequence"]) + 1)
        )
        mismatches.append(best / len(row["sequence"]))
    assert 0.02 < np.mean(mismatches) < 0.06


def test_augmentation_repeats_with_the_seed_and_differs_without():
    df = synthetic_train()
    cfg = {"copies": 1, "crop": 0.5, "substitution": 0.01}
    assert augment_records(df, cfg, 7).equals(augment_records(df, cfg, 7))
    assert not augment_records(df, cfg, 7).equals(augment_records(df, cfg, 8))


def test_short_records_keep_a_minimum_length():
    df = synthetic_train(n=3, length=25)
    out = augment_records(df, {"copies": 3, "crop": 0.1}, 0)
    assert (out["sequence"].str.len() >= MIN_LENGTH).all()


def test_protein_tasks_are_refused():
    with pytest.raises(ValueError, match="not available for protein"):
        augment_records(synthetic_train(), {"copies": 1}, 0, alphabet="protein")


def test_fit_counts_records_not_copies():
    from barloc.training import fit

    df = synthetic_train(n=60, length=120, seed=1)
    cfg = {
        "kind": "multiclass",
        "alphabet": "dna",
        "encoder": {"type": "kmer", "k": 3, "hidden": 8},
        "loss": {"type": "cross_entropy", "class_weights": "inverse"},
        "train": {"max_epochs": 1, "batch_size": 16, "augment": {"copies": 2, "crop": 0.8, "substitution": 0.01}},
    }
    trainer = {"accelerator": "cpu", "devices": 1, "precision": "32-true"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, meta, _ = fit(df.iloc[:45], df.iloc[45:], cfg, trainer, seed=0)
        _, plain, _ = fit(
            df.iloc[:45], df.iloc[45:], {**cfg, "train": {**cfg["train"], "augment": {"copies": 0}}}, trainer, seed=0
        )
    finally:
        torch.set_num_threads(threads)
    assert meta.n_train == plain.n_train == 45
    assert meta.train_counts == plain.train_counts == [15, 15, 15]


def test_schema_takes_augment_settings():
    import yaml
    from conftest import REPO

    from barloc.config import check_config
    from barloc.errors import InputError

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    # The setting config/config.yaml's comment suggests trying.
    config["tasks"]["fish_origin"]["train"]["augment"] = {"copies": 2, "crop": 0.7, "substitution": 0.01}
    check_config(config, REPO / "workflow/schemas/config.schema.yaml", "config/config.yaml")
    config["tasks"]["fish_origin"]["train"]["augment"]["crop"] = 0
    with pytest.raises(InputError, match="crop"):
        check_config(config, REPO / "workflow/schemas/config.schema.yaml", "config/config.yaml")
