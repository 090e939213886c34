"""The nearest-reference encoder (``encoder.type: nearest``): distances to each class's closest
reference barcode, never to references of a record's own project.

All sequences here are synthetic (random DNA haplotypes), named so where they are written.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from barloc.cv import out_of_fold
from barloc.data import NO_GROUP, EncodedDataset, group_ids, group_keys, predict_logits
from barloc.errors import InputError
from barloc.modelio import load_model, save_model
from barloc.models.encoders import NearestReferenceEncoder
from barloc.training import fit

TRAINER = {"accelerator": "cpu", "precision": "32-true", "threads": 1}
ENC = {"type": "nearest", "k": 3, "hidden": 0}


def unit(x):
    return torch.nn.functional.normalize(torch.as_tensor(x, dtype=torch.float32), dim=1)


def test_distances_skip_the_records_own_group():
    enc = NearestReferenceEncoder(n_features=3, n_reference=3, n_classes=2)
    ref = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0]])
    enc.set_reference(ref, torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]))
    q = torch.tensor([[1.0, 0, 0]])
    d = enc.distances(q)[:, :2]  # (d_class0, d_class1); the log columns follow
    assert torch.allclose(d, torch.tensor([[0.0, 1 - 2**-0.5]]), atol=1e-6)
    # The same query as a member of group 0 cannot match reference 0: class 0 has no other
    # reference, so it gets the largest distance, 2.
    d = enc.distances(q, torch.tensor([0]))[:, :2]
    assert torch.allclose(d, torch.tensor([[2.0, 1 - 2**-0.5]]), atol=1e-6)
    # Group 2 takes away the nearer class-1 reference: the next one (orthogonal) is at 1.
    d = enc.distances(q, torch.tensor([2]))[:, :2]
    assert torch.allclose(d, torch.tensor([[0.0, 1.0]]), atol=1e-6)
    assert torch.equal(enc.distances(q, torch.tensor([NO_GROUP])), enc.distances(q))
    logs = enc.distances(q)[:, 2:]
    assert torch.allclose(logs, torch.log(enc.distances(q)[:, :2] + enc.EPS) / 10)


def test_group_keys_fall_back_to_the_record_id():
    df = pd.DataFrame({"id": ["a", "b", "c", "d"], "group": ["P1", None, "P1", "P9"]})
    assert group_keys(df).tolist() == ["P1", "b", "P1", "P9"]
    assert group_ids(df, ["b", "P1"]).tolist() == [1, 0, 1, NO_GROUP]
    assert group_keys(df.drop(columns="group")).tolist() == ["a", "b", "c", "d"]
    assert group_ids(df, None) is None


HAPLOTYPES = 3  # per class


def synthetic_haplotype_records(seed: int = 0, projects: int = 12, per_project: int = 8) -> pd.DataFrame:
    """Synthetic barcodes: each class has its own random 120-base haplotypes, and each record is
    one of its class's haplotypes with 2 random substitutions. A project samples one class."""
    rng = np.random.default_rng(seed)
    classes = ["Atlantic", "Indian", "Pacific"]
    haps = {c: ["".join(rng.choice(list("ACGT"), 120)) for _ in range(HAPLOTYPES)] for c in classes}
    rows = []
    for p in range(projects):
        c = classes[p % 3]
        for j in range(per_project):
            s = list(haps[c][rng.integers(HAPLOTYPES)])
            for pos in rng.choice(120, 2, replace=False):
                s[pos] = rng.choice(list("ACGT"))
            rows.append({"id": f"syn_{p}_{j}", "sequence": "".join(s), "label": c, "group": f"PROJ{p}"})
    return pd.DataFrame(rows)


def cfg(**enc) -> dict:
    return {
        "kind": "multiclass",
        "alphabet": "dna",
        "encoder": {**ENC, **enc},
        "loss": {"type": "cross_entropy", "class_weights": "inverse"},
        "train": {"max_epochs": 15, "batch_size": 16, "lr": 0.03, "patience": 15},
    }


@pytest.fixture(scope="module")
def trained():
    df = synthetic_haplotype_records()
    train, val = (
        df[df["group"].isin([f"PROJ{p}" for p in range(9)])],
        df[df["group"].isin(["PROJ9", "PROJ10", "PROJ11"])],
    )
    model, meta, _ = fit(train, val, cfg(), TRAINER, seed=3)
    return df, train, val, model, meta


def test_references_are_the_training_and_validation_records(trained, tmp_path):
    df, train, val, model, meta = trained
    assert meta.n_reference == len(train) + len(val)
    assert meta.reference_groups == [f"PROJ{p}" for p in range(12)]
    assert model.encoder.ref.shape == (len(df), 64)
    # model.json + weights carry the references: a reloaded model scores the same.
    save_model(model, meta, tmp_path / "m.ckpt", tmp_path / "m.json")
    again, meta2 = load_model(tmp_path / "m.ckpt", tmp_path / "m.json")
    ds = EncodedDataset(val["sequence"].tolist(), meta2.encoder, "dna", groups=group_ids(val, meta2.reference_groups))
    assert np.allclose(predict_logits(again, ds, 8), predict_logits(model, ds, 8))
    assert json.loads((tmp_path / "m.json").read_text())["n_reference"] == len(df)


def test_a_labelled_record_is_not_scored_against_its_own_project(trained):
    df, train, val, model, meta = trained
    seqs = val["sequence"].tolist()
    own = predict_logits(
        model, EncodedDataset(seqs, meta.encoder, "dna", groups=group_ids(val, meta.reference_groups)), 8
    )
    query = predict_logits(model, EncodedDataset(seqs, meta.encoder, "dna"), 8)  # a query: no group
    assert not np.allclose(own, query)
    # Leave-project-out, the class still shows: its haplotypes recur in the other projects.
    y = val["label"].map({c: i for i, c in enumerate(meta.classes)}).to_numpy()
    assert (own.argmax(1) == y).mean() > 0.9


def test_soft_rows_are_not_references(trained):
    df, train, val, _, _ = trained
    train = train.assign(label_probs=None)
    train.loc[train.index[:5], "label_probs"] = json.dumps({"Atlantic": 0.5, "Indian": 0.5})
    _, meta, _ = fit(train, val, cfg(), TRAINER, seed=3)
    assert meta.n_reference == len(train) + len(val) - 5


def test_nearest_needs_a_dna_multiclass_task(trained):
    df, train, val, _, _ = trained
    with pytest.raises(InputError, match="multiclass"):
        fit(
            train.assign(label="Atlantic;Indian"),
            val,
            {**cfg(), "kind": "multilabel", "loss": {"type": "bce"}},
            TRAINER,
            seed=1,
        )


def test_cross_validation_with_the_nearest_encoder():
    """barloc.cv passes each fold's validation records their groups, so calibration sees
    leave-project-out scores like the test fold's."""
    df = synthetic_haplotype_records(seed=1, projects=15, per_project=6)
    oof, info = out_of_fold(df, cfg(), TRAINER, n_folds=5, seed=0, folds=np.arange(len(df)) // 18 % 5)
    assert len(oof) == len(df)
    probs = oof[[c for c in oof.columns if c.startswith("prob::")]].to_numpy()
    assert (probs.argmax(1) == oof["label"].map({"Atlantic": 0, "Indian": 1, "Pacific": 2})).mean() > 0.9
    assert all(i["meta"].n_reference == 4 * 18 for i in info)


def test_workflow_steps_on_the_bundled_tuna_records(tmp_path):
    """Real data: the bundled BOLD export through ingest ... evaluate with the nearest encoder.
    The calling model's references are every non-test record; its test logits are in
    logits.parquet, and the out-of-fold rows are the fold models', which never had those
    records as references."""
    from conftest import run_small_pipeline, small_fish_origin_inputs

    task = small_fish_origin_inputs(tmp_path) | {"encoder": {"type": "nearest", "k": 4}}
    task["train"] = {**task["train"], "lr": 0.03, "max_epochs": 4}
    run_small_pipeline(task, tmp_path, to_evaluate=True)
    model, meta = load_model(tmp_path / "model.ckpt", tmp_path / "model.json")
    splits = pd.read_csv(tmp_path / "splits.tsv", sep="\t")
    records = pd.read_parquet(tmp_path / "records.parquet").merge(splits, on="id")
    assert meta.n_reference == int((records["split"] == "train").sum())
    logits = pd.read_parquet(tmp_path / "logits.parquet")
    cols = [f"logit::{c}" for c in meta.classes]
    for split, same in (("test", True), ("val", False)):
        rows = records.set_index("id").loc[logits.loc[logits["split"] == split, "id"]].reset_index()
        stored = logits.loc[logits["split"] == split, cols].to_numpy()
        own = predict_logits(
            model,
            EncodedDataset(
                rows["sequence"].tolist(), meta.encoder, "dna", groups=group_ids(rows, meta.reference_groups)
            ),
            64,
        )
        assert np.allclose(stored, own, atol=1e-5) == same
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_test"] > 0 and 0 <= metrics["calibrated"]["balanced_accuracy"] <= 1
    assert len(pd.read_csv(tmp_path / "calls.tsv", sep="\t")) > 0
