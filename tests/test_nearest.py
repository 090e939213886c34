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
    assert sorted(meta.reference_groups) == sorted(f"PROJ{p}" for p in range(12))
    assert model.encoder.ref_class.shape == (len(df),) and model.encoder.ref_indptr.shape == (len(df) + 1,)
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


def brute_force_best(q, refs, ref_class, ref_group, groups, n_classes):
    """Exact per-class highest cosine outside each query's group, by a full comparison."""
    sim = unit(q) @ unit(refs).T
    if groups is not None:
        sim = sim.masked_fill(groups[:, None] == ref_group[None, :], -1.0)
    best = torch.full((len(q), n_classes), -1.0)
    return best.scatter_reduce(1, ref_class.expand(len(q), -1), sim, reduce="amax")


def synthetic_clustered_profiles(n_refs: int, dim: int, seed: int):
    """Synthetic non-negative profiles around 60 random centres (haplotype-like clusters)."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(60, dim, generator=gen) ** 4
    which = torch.randint(0, 60, (n_refs,), generator=gen)
    return (centres[which] + 0.05 * torch.rand(n_refs, dim, generator=gen)).clamp_min(0)


def test_indexed_search_is_an_upper_bound_and_mostly_exact():
    """A class over EXACT_MAX references is searched in its nprobe closest lists: every
    distance is at least the exact one (synthetic clustered profiles), nearly all are equal,
    and probing every list gives the exact distances."""
    from barloc.models.reference_index import EXACT_MAX, n_lists

    n = EXACT_MAX + 900
    profiles = synthetic_clustered_profiles(n + 500, 64, seed=0)
    refs, q = profiles[:n], profiles[n:]
    ref_class = torch.cat([torch.zeros(EXACT_MAX + 600, dtype=torch.long), torch.ones(300, dtype=torch.long)])
    ref_group = torch.arange(n) // 10
    groups = torch.randint(0, n // 10, (500,), generator=torch.Generator().manual_seed(2))
    enc = NearestReferenceEncoder(n_features=64, n_reference=n, n_classes=2, nprobe=8)
    enc.set_reference(refs, ref_class, ref_group)
    assert len(enc.list_class) == n_lists(EXACT_MAX + 600) + 1 > 9
    exact = 1 - brute_force_best(q, refs, ref_class, ref_group, groups, 2).clamp(-1, 1)
    got = enc.distances(q, groups)[:, :2]
    assert (got >= exact.clamp(0, 2) - 1e-5).all()
    assert torch.allclose(got[:, 1], exact[:, 1].clamp(0, 2), atol=1e-5)  # the small class: exhaustive
    assert (torch.isclose(got[:, 0], exact[:, 0], atol=1e-5)).float().mean() > 0.95
    enc.nprobe = len(enc.list_class)
    assert torch.allclose(enc.distances(q, groups)[:, :2], exact.clamp(0, 2), atol=1e-5)


def test_long_kmers_stay_sparse_and_exact():
    """k = 7 (16,384 columns): references are held as CSR, never dense, and the distances of
    synthetic barcodes equal a brute-force comparison of their dense profiles."""
    from barloc.encode import kmer_profile, kmer_profile_sparse

    df = synthetic_haplotype_records(seed=4)
    seqs = df["sequence"].tolist()
    ref_class = torch.as_tensor(df["label"].map({"Atlantic": 0, "Indian": 1, "Pacific": 2}).to_numpy())
    ref_group = torch.as_tensor(df["group"].str[4:].astype(int).to_numpy())
    enc = NearestReferenceEncoder(n_features=4**7, n_reference=len(df), n_classes=3)
    enc.set_reference(kmer_profile_sparse(seqs, 7), ref_class, ref_group)
    assert enc.index().dense is None and enc.ref_data.numel() < len(df) * 4**7 / 50
    dense = torch.from_numpy(kmer_profile(seqs, 7))
    exact = 1 - brute_force_best(dense, dense, ref_class, ref_group, ref_group, 3)
    assert torch.allclose(enc.distances(kmer_profile_sparse(seqs, 7), ref_group)[:, :3], exact.clamp(0, 2), atol=1e-5)


def test_models_saved_with_dense_references_still_load(trained, tmp_path):
    """A model.ckpt from before the index held its references as one dense ``ref`` buffer; it
    loads into the indexed encoder and scores the same."""
    df, train, val, model, meta = trained
    state = model.state_dict()
    enc = model.encoder
    n = len(enc.ref_class)
    dense = torch.sparse_csr_tensor(enc.ref_indptr, enc.ref_indices.long(), enc.ref_data, (n, 64)).to_dense()
    old = {k: v for k, v in state.items() if not k.startswith("encoder.") or k.split(".")[1] not in enc.SIZED}
    old |= {"encoder.ref": dense, "encoder.ref_class": enc.ref_class, "encoder.ref_group": enc.ref_group}
    again, _ = load_model(*_saved(model, meta, tmp_path))
    again.load_state_dict(old)
    ds = EncodedDataset(val["sequence"].tolist(), meta.encoder, "dna", groups=group_ids(val, meta.reference_groups))
    assert np.allclose(predict_logits(again, ds, 8), predict_logits(model, ds, 8), atol=1e-4)


def _saved(model, meta, tmp_path):
    save_model(model, meta, tmp_path / "m.ckpt", tmp_path / "m.json")
    return tmp_path / "m.ckpt", tmp_path / "m.json"


def test_a_batch_fetched_whole_equals_its_items_collated():
    from barloc.data import collate

    df = synthetic_haplotype_records(seed=5)
    ds = EncodedDataset(df["sequence"].tolist(), {"type": "kmer", "k": 4}, "dna", np.zeros(len(df), dtype=np.int64))
    idx = [5, 0, 17, 3]
    whole, items = ds.__getitems__(idx), collate([ds[i] for i in idx])
    assert whole.keys() == items.keys() and all(torch.equal(whole[k], items[k]) for k in whole)


def test_nearest_at_k_11_holds_only_the_kmers_present():
    """k = 11 (4,194,304 columns, 16 MB a dense row): references stay CSR and exact search
    still finds a barcode's own haplotype in its class (synthetic records)."""
    from barloc.encode import kmer_profile_sparse

    df = synthetic_haplotype_records(seed=6)
    seqs = df["sequence"].tolist()
    ref_class = torch.as_tensor(df["label"].map({"Atlantic": 0, "Indian": 1, "Pacific": 2}).to_numpy())
    enc = NearestReferenceEncoder(n_features=4**11, n_reference=len(df), n_classes=3)
    enc.set_reference(kmer_profile_sparse(seqs, 11), ref_class, torch.arange(len(df)))
    assert enc.ref_data.numel() <= len(df) * 120 and enc.centroids.shape[1] == 1024
    d = enc.distances(kmer_profile_sparse(seqs[:5], 11))[:, :3]  # queries: may match themselves
    assert torch.allclose(d[torch.arange(5), ref_class[:5]], torch.zeros(5), atol=1e-5)


def test_scoring_in_chunks_equals_scoring_at_once(trained, monkeypatch):
    """model_logits encodes and scores SCORE_CHUNK records at a time; chunks of 7 give the
    same logits, in row order, as one pass, with each record's own group still skipped."""
    from barloc import scoring

    df, train, val, model, meta = trained
    whole = scoring.model_logits(model, meta, df, 8)
    model.encoder.index().memo.clear()  # compute every distance again, in chunks
    monkeypatch.setattr(scoring, "SCORE_CHUNK", 7)
    assert np.allclose(scoring.model_logits(model, meta, df, 8), whole, atol=1e-5)
    assert scoring.model_logits(model, meta, df.iloc[:0], 8).shape == (0, len(meta.classes))


def test_unit_rows_with_an_empty_last_row():
    """A profile without a countable k-mer (shorter than k) ends the matrix: the row before
    it is still scaled to unit length, and the empty row stays zero."""
    from scipy import sparse

    from barloc.models.reference_index import unit_rows

    x = unit_rows(sparse.csr_array(np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])))
    assert np.allclose(x.toarray(), [[0.6, 0.8, 0.0], [0.0, 0.0, 0.0]])


def test_sparse_candidates_are_an_upper_bound_and_exhaustive_search_is_exact(monkeypatch):
    """k = 6 (sparse profiles) with classes split into lists (EXACT_MAX lowered to 20):
    the candidate search's distances are never below the exact ones and mostly equal for the
    record's own class (its haplotypes' list); probing every list is exact; a record shorter
    than k, placed last, gets distance 1 (synthetic)."""
    from barloc.encode import kmer_profile_sparse
    from barloc.models import reference_index

    monkeypatch.setattr(reference_index, "EXACT_MAX", 20)
    df = synthetic_haplotype_records(seed=7, projects=30, per_project=8)
    seqs = df["sequence"].tolist() + ["ACGTA"]
    ref_class = torch.as_tensor(df["label"].map({"Atlantic": 0, "Indian": 1, "Pacific": 2}).to_numpy().copy())
    ref_group = torch.as_tensor(df["group"].str[4:].astype(int).to_numpy().copy())
    groups = torch.cat([ref_group, torch.tensor([-2])])
    profiles = kmer_profile_sparse(seqs, 6)
    enc = NearestReferenceEncoder(n_features=4**6, n_reference=len(df), n_classes=3, nprobe=2)
    enc.set_reference(profiles[: len(df)], ref_class, ref_group)
    assert len(enc.list_class) == 3 * reference_index.n_lists(80) and enc.index().dense is None
    dense = torch.from_numpy(profiles.toarray())
    exact = (1 - brute_force_best(dense, dense[: len(df)], ref_class, ref_group, groups, 3)).clamp(0, 2)
    exact[-1] = 1.0  # an empty profile has cosine 0 with every reference
    got = enc.distances(profiles, groups)[:, :3]
    assert (got >= exact - 1e-5).all()
    own = torch.cat([ref_class, torch.tensor([0])])
    rows = torch.arange(len(own))
    assert torch.isclose(got[rows, own], exact[rows, own], atol=1e-5).float().mean() > 0.9
    enc.nprobe = len(enc.list_class)
    assert torch.allclose(enc.distances(profiles, groups)[:, :3], exact, atol=1e-5)


def test_an_encoder_loading_the_same_references_shares_them():
    """fit() reloading its best epoch, or a fold model read back, points at the references
    and index already held instead of a copy; different references get their own."""
    profiles = synthetic_clustered_profiles(300, 64, seed=3)
    classes, groups = torch.arange(300) % 3, torch.arange(300) // 10
    a = NearestReferenceEncoder(n_features=64, n_reference=300, n_classes=3)
    a.set_reference(profiles, classes, groups)
    b = NearestReferenceEncoder(n_features=64, n_reference=1, n_classes=3)
    b.load_state_dict(a.state_dict())
    assert b.index() is a.index() and b.ref_data is a.ref_data
    other = a.state_dict() | {"ref_group": groups + 1}
    c = NearestReferenceEncoder(n_features=64, n_reference=1, n_classes=3)
    c.load_state_dict(other)
    assert c.index() is not a.index() and c.ref_data is not a.ref_data
    assert torch.equal(c.ref_data, a.ref_data) and torch.equal(c.ref_group, groups + 1)


def test_only_reference_groups_are_remembered():
    """Distances of records in a reference group are memoized (fold models score them again);
    queries and records of no reference group are not, so the memo never grows with them."""
    profiles = synthetic_clustered_profiles(200, 64, seed=4)
    enc = NearestReferenceEncoder(n_features=64, n_reference=150, n_classes=2)
    enc.set_reference(profiles[:150], torch.arange(150) % 2, torch.arange(150) // 10)
    memo = enc.index().memo
    enc.distances(profiles[150:], torch.full((50,), -2))
    enc.distances(profiles[150:])
    assert len(memo) == 0
    first = enc.distances(profiles[:150], torch.arange(150) // 10)
    assert len(memo) == 150 and torch.equal(enc.distances(profiles[:150], torch.arange(150) // 10), first)
