"""Encoders, data module and safe model files, on small synthetic sequences."""

import pickle

import numpy as np
import pytest
import torch

from barloc.artifacts import ModelMeta
from barloc.data import BucketBatchSampler, EncodedDataset, collate, predict_logits, targets_for
from barloc.errors import InputError
from barloc.modelio import build_model, load_model, save_model
from barloc.models import ConvEncoder


def meta(kind="multiclass", encoder=None, alphabet="dna", classes=("a", "b")) -> ModelMeta:
    return ModelMeta(
        kind=kind,
        classes=list(classes),
        alphabet=alphabet,
        encoder=encoder or {"type": "cnn", "channels": 8, "kernel_sizes": [3, 5]},
        loss={},
        train_counts=[5] * len(classes),
        n_train=10,
        train_priors=[1 / len(classes)] * len(classes),
        n_features=64 if (encoder or {}).get("type") == "kmer" else None,
    )


def test_targets_for_both_kinds():
    assert targets_for(["b", "a", None], ["a", "b"], "multiclass").tolist() == [1, 0, -1]
    Y = targets_for(["a;c", None, "b"], ["a", "b", "c"], "multilabel")
    assert Y.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]


def test_conv_encoder_ignores_padding():
    torch.manual_seed(0)
    enc = ConvEncoder("protein", embed_dim=8, channels=4, kernel_sizes=(3,)).eval()
    tok = torch.tensor([[3, 5, 7, 9, 2]])
    # The padding token embeds to zeros (like the convolution's own edge padding) and is
    # masked out of both poolings, so a padded sequence encodes exactly as the bare one.
    batch = torch.nn.utils.rnn.pad_sequence([tok[0], torch.arange(1, 13)], batch_first=True)
    assert torch.allclose(enc({"tokens": tok})[0], enc({"tokens": batch})[0], atol=1e-6)


def test_bucket_sampler_covers_every_index_once_and_groups_lengths():
    lengths = np.random.default_rng(0).integers(10, 1000, 503)
    s = BucketBatchSampler(lengths, 16, shuffle=True, seed=1)
    batches = list(s)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(503)) and len(batches) == len(s)
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.3 * np.ptp(lengths)


@pytest.mark.parametrize("n, replicas", [(503, 2), (503, 3), (16 * 6, 2), (5, 4)])
def test_bucket_sampler_shards_batches_between_processes(n, replicas):
    """DDP: the processes' shares are equally long (or the all-reduce hangs), together hold
    every batch of the one-process order, and only the wrap-around repeats any."""
    lengths = np.random.default_rng(0).integers(10, 1000, n)
    whole = list(BucketBatchSampler(lengths, 16, shuffle=True, seed=1))
    shards = [list(BucketBatchSampler(lengths, 16, True, 1, num_replicas=replicas, rank=r)) for r in range(replicas)]
    per = -(-len(whole) // replicas)
    assert [len(s) for s in shards] == [per] * replicas
    assert all(len(BucketBatchSampler(lengths, 16, True, 1, replicas, r)) == per for r in range(replicas))
    interleaved = [shards[i % replicas][i // replicas] for i in range(per * replicas)]
    assert interleaved[: len(whole)] == whole
    assert interleaved[len(whole) :] == (whole * replicas)[: per * replicas - len(whole)]
    # Every later epoch is reshuffled the same way on every process.
    one = BucketBatchSampler(lengths, 16, True, 1)
    samplers = [BucketBatchSampler(lengths, 16, True, 1, replicas, r) for r in range(replicas)]
    for _ in range(2):
        whole, shards = list(one), [list(s) for s in samplers]
        assert [shards[i % replicas][i // replicas] for i in range(len(whole))] == whole
    with pytest.raises(ValueError, match="rank 2"):
        BucketBatchSampler(lengths, 16, True, 1, num_replicas=2, rank=2)


def test_predict_returns_dataset_order():
    torch.manual_seed(0)
    m = build_model(meta())
    seqs = ["ACGT" * n for n in (30, 2, 11, 5, 40)]
    ds = EncodedDataset(seqs, m.hparams.encoder, "dna")
    out = predict_logits(m, ds, batch_size=2)
    for i, s in enumerate(seqs):
        single = predict_logits(m, EncodedDataset([s], m.hparams.encoder, "dna"), 1)
        np.testing.assert_allclose(out[i], single[0], atol=1e-5)


def test_kmer_model_learns_a_synthetic_rule():
    """Synthetic: class b sequences are GC-rich. A few steps of training must separate them."""
    rng = np.random.default_rng(0)
    seqs = [
        "".join(rng.choice(list("ACGT"), 60, p=p)) for p in [[0.4, 0.1, 0.1, 0.4]] * 40 + [[0.1, 0.4, 0.4, 0.1]] * 40
    ]
    y = np.array([0] * 40 + [1] * 40)
    md = meta(encoder={"type": "kmer", "k": 3, "hidden": 16, "dropout": 0.0})
    m = build_model(md)
    ds = EncodedDataset(seqs, md.encoder, "dna", y)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    batch = collate([ds[i] for i in range(len(ds))])
    for _ in range(50):
        opt.zero_grad()
        loss = m.loss_fn(m(batch), batch["target"])
        loss.backward()
        opt.step()
    assert (predict_logits(m, ds, 16).argmax(1) == y).mean() > 0.95


def test_model_files_round_trip_and_refuse_pickles(tmp_path):
    md = meta(kind="multilabel", alphabet="protein", classes=("x", "y", "z"))
    m = build_model(md)
    save_model(m, md, tmp_path / "model.ckpt", tmp_path / "model.json")
    m2, md2 = load_model(tmp_path / "model.ckpt", tmp_path / "model.json")
    assert md2.classes == ["x", "y", "z"]
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "model.ckpt", "wb") as fh:
        pickle.dump({"w": Evil()}, fh)
    with pytest.raises(InputError, match="refused to load"):
        load_model(tmp_path / "model.ckpt", tmp_path / "model.json")


def test_kmer_standardizer_is_fitted_and_saved(tmp_path):
    md = meta(encoder={"type": "kmer", "k": 3, "hidden": 0, "dropout": 0.0, "standardize": True})
    m = build_model(md)
    ds = EncodedDataset(["ACGTTGCA" * 5, "GGGCCCAT" * 5, "ATATATCG" * 5], md.encoder, "dna")
    m.encoder.fit_standardizer(ds.features)
    z = (torch.from_numpy(ds.features.toarray()) * m.encoder.scale - m.encoder.mean) * m.encoder.inv_std
    assert torch.allclose(z.mean(0), torch.zeros(64), atol=1e-5)
    save_model(m, md, tmp_path / "m.ckpt", tmp_path / "m.json")
    m2, _ = load_model(tmp_path / "m.ckpt", tmp_path / "m.json")
    assert torch.equal(m2.encoder.inv_std, m.encoder.inv_std)


def _random_records(letters: str, n: int, length: int, labels: list[str]):
    """SYNTHETIC records: ``n`` random sequences over ``letters`` with random ``labels``."""
    import pandas as pd

    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list(letters), length)) for _ in range(n)]
    return pd.DataFrame({"id": [f"r{i}" for i in range(n)], "sequence": seqs, "label": rng.choice(labels, n)})


def test_training_logs_one_line_an_epoch_without_lightning_noise(caplog, capsys):
    """A rule's log (stderr not a terminal) gets one line an epoch with losses, the metric, the
    epoch's seconds and the time left; no tip banners or deprecation warnings."""
    import logging

    from barloc.training import fit

    df = _random_records("ACGT", 60, 90, ["A", "B"])
    cfg = {
        "kind": "multiclass",
        "alphabet": "dna",
        "encoder": {"type": "kmer", "k": 3, "hidden": 4},
        "train": {"max_epochs": 3, "patience": 10},
    }

    class Lines(logging.Handler):  # on the logger itself: whatever earlier tests did to the root's
        def __init__(self) -> None:
            super().__init__(logging.INFO)
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "barloc.training":  # not its children's (fit's summary line)
                self.lines.append(record.getMessage())

    got, logger = Lines(), logging.getLogger("barloc.training")
    logger.addHandler(got)
    level, logger.level = logger.level, logging.INFO
    try:
        with caplog.at_level(logging.INFO):
            fit(df.iloc[:45], df.iloc[45:], cfg, {"accelerator": "cpu"}, 1, "t")
    finally:
        logger.removeHandler(got)
        logger.setLevel(level)
    lines = got.lines
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3, train loss ")
    assert "val loss" in lines[0] and "balanced_accuracy" in lines[0] and "left" in lines[0]
    assert "left" not in lines[-1]
    out = capsys.readouterr()
    assert not any("Tip:" in r.getMessage() for r in caplog.records)
    assert not any(r.getMessage().startswith(("GPU available", "`Trainer.fit` stopped")) for r in caplog.records)
    assert "LeafSpec" not in out.err + out.out


def test_composition_features_are_the_floors():
    """The CNN's composition input: whole-sequence, N- and C-terminal residue shares and
    dipeptide shares, as counted by hand; ambiguity codes and padding count for nothing."""
    import numpy as np
    import torch

    from barloc.encode import PROTEIN_TOKENS, tokenize
    from barloc.models.encoders import Composition

    seqs = ["MKKLAXAG", "MA"]
    tokens = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(t) for t in tokenize(seqs, "protein")], batch_first=True)
    comp = Composition(20, terminal=3)
    got = comp.features(tokens).numpy()
    aa = PROTEIN_TOKENS[:20]

    def shares(text: str) -> np.ndarray:
        v = np.array([text.count(a) for a in aa], dtype=float)
        return v / max(v.sum(), 1)

    for row, s in zip(got, seqs):
        np.testing.assert_allclose(row[:20], shares(s), atol=1e-6)
        np.testing.assert_allclose(row[20:40], shares(s[:3]), atol=1e-6)
        np.testing.assert_allclose(row[40:60], shares(s[-3:]), atol=1e-6)
        pairs = [s[i : i + 2] for i in range(len(s) - 1) if "X" not in s[i : i + 2]]
        di = np.zeros(400)
        for p in pairs:
            di[aa.index(p[0]) * 20 + aa.index(p[1])] += 1
        np.testing.assert_allclose(row[60:], di / max(di.sum(), 1), atol=1e-6)
    comp.train()
    assert comp(tokens[:1]).shape == (1, 460)  # a batch of one uses the running statistics


def test_cnn_with_composition_round_trips(tmp_path):
    """A CNN with composition features learns a step, saves, and reloads to the same outputs
    (the batch-norm statistics are saved with the weights)."""
    import torch

    from barloc.artifacts import ModelMeta
    from barloc.encode import tokenize
    from barloc.modelio import build_model, load_model, save_model

    meta = ModelMeta(
        kind="multilabel",
        classes=["a", "b"],
        alphabet="protein",
        train_priors=[0.5, 0.5],
        train_counts=[5, 5],
        n_train=10,
        encoder={"type": "cnn", "embed_dim": 4, "channels": 4, "kernel_sizes": [3], "composition": True},
    )
    model = build_model(meta)
    assert model.encoder.out_dim == 2 * 4 + 460
    tokens = torch.nn.utils.rnn.pad_sequence(
        [torch.from_numpy(t) for t in tokenize(["MKKLAAG", "MSTPPQRLLE", "MA"], "protein")], batch_first=True
    )
    batch = {"tokens": tokens, "target": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    model.loss_fn(model(batch), batch["target"]).backward()  # the forward pass moves the running statistics
    opt.step()
    assert model.encoder.composition.norm.running_mean.abs().sum() > 0
    save_model(model, meta, tmp_path / "m.ckpt", tmp_path / "m.json")
    loaded, _ = load_model(tmp_path / "m.ckpt", tmp_path / "m.json")
    model.eval()
    assert torch.allclose(loaded(batch), model(batch))


def test_kmer_dataset_holds_profiles_sparsely():
    """k = 8, 2,000 synthetic 650-bp barcodes: the dense profiles would take 2000 x 65536 x 4
    bytes (524 MB); the CSR holds one entry per distinct k-mer of each barcode (<= 643)."""
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 650)) for _ in range(2000)]
    ds = EncodedDataset(seqs, {"type": "kmer", "k": 8}, "dna")
    f = ds.features
    held = f.data.nbytes + f.indices.nbytes + f.indptr.nbytes
    assert f.shape == (2000, 4**8) and f.dtype == np.float32
    assert 2000 * 600 <= f.nnz <= 2000 * 643
    assert held < 2000 * 4**8 * 4 / 50  # about 10 MB against 524 MB


def test_kmer_batches_from_the_sparse_dataset_equal_the_dense_profile_rows():
    from barloc.data import loader
    from barloc.encode import kmer_profile

    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACGTN"), rng.integers(0, 300), p=[0.24] * 4 + [0.04])) for _ in range(70)]
    dense = kmer_profile(seqs, 5)
    ds = EncodedDataset(seqs, {"type": "kmer", "k": 5}, "dna", targets=np.arange(70) % 2)
    seen = np.zeros(70, dtype=bool)
    for batch in loader(ds, 16, shuffle=True, seed=3):
        idx = batch["index"].numpy()
        assert batch["features"].dtype == torch.float32
        assert np.array_equal(batch["features"].numpy(), dense[idx])  # bit for bit
        seen[idx] = True
    assert seen.all()


def test_kmer_standardizer_from_sparse_profiles_equals_the_dense_one(monkeypatch):
    """Block by block over the columns of the CSR, the statistics are those of the whole dense
    matrix, bit for bit (several blocks here: 256 columns of 1024)."""
    import barloc.models.encoders as E
    from barloc.encode import kmer_profile, kmer_profile_sparse

    monkeypatch.setattr(E, "STANDARDIZE_BLOCK", 256)
    rng = np.random.default_rng(2)
    seqs = ["".join(rng.choice(list("ACGTN"), 400, p=[0.245] * 4 + [0.02])) for _ in range(500)]
    dense, sp = E.KmerEncoder(4**5, 0), E.KmerEncoder(4**5, 0)
    dense.fit_standardizer(torch.from_numpy(kmer_profile(seqs, 5)))
    sp.fit_standardizer(kmer_profile_sparse(seqs, 5))
    assert torch.equal(dense.mean, sp.mean) and torch.equal(dense.inv_std, sp.inv_std)
    assert not torch.equal(dense.inv_std, torch.ones(4**5))  # it fitted something


def test_blosum62_embedding_keeps_substitution_scores():
    """Dot products of the BLOSUM62 start approximate the matrix (20 columns hold all its
    positive spectrum); I sits nearer L than D; ambiguity codes average their residues."""
    from Bio.Align import substitution_matrices

    from barloc.encode import PROTEIN_TOKENS, blosum62_embedding
    from barloc.models.encoders import build_encoder

    m = substitution_matrices.load("BLOSUM62")
    std = "ACDEFGHIKLMNPQRSTVWY"
    emb = blosum62_embedding(32)
    assert emb.shape == (len(PROTEIN_TOKENS) + 1, 32) and not emb[0].any() and not emb[:, 20:].any()
    row = {ch: emb[i] for i, ch in enumerate(PROTEIN_TOKENS, start=1)}
    gram = np.array([[row[a] @ row[b] for b in std] for a in std])
    blosum = np.array([[m[a, b] for b in std] for a in std])
    assert np.corrcoef(gram.ravel(), blosum.ravel())[0, 1] > 0.95
    assert row["I"] @ row["L"] > row["I"] @ row["D"]
    assert np.allclose(row["B"], (row["D"] + row["N"]) / 2) and np.allclose(row["U"], row["C"])
    assert blosum62_embedding(4).shape == (len(PROTEIN_TOKENS) + 1, 4)
    enc = build_encoder({"type": "cnn", "embed_dim": 32, "embed_init": "blosum62"}, "protein", None)
    assert np.allclose(enc.embed.weight.detach().numpy(), emb)
    assert not np.allclose(build_encoder({"type": "cnn"}, "protein", None).embed.weight.detach().numpy()[1:], emb[1:])


def test_mask_residues_masks_residues_never_padding():
    """train.mask_residues replaces about that share of residues by X (N for DNA) and leaves
    padding alone; the mask is drawn afresh each call."""
    from barloc.augment import mask_tokens
    from barloc.encode import PROTEIN_TOKENS, unknown_token

    x, n = unknown_token("protein"), unknown_token("dna")
    assert PROTEIN_TOKENS[x - 1] == "X" and n == 15
    torch.manual_seed(0)
    tokens = torch.randint(1, 21, (64, 300))
    tokens[:, 200:] = 0
    a, b = mask_tokens(tokens, 0.2, x), mask_tokens(tokens, 0.2, x)
    changed = a != tokens
    assert (a[:, 200:] == 0).all() and (a[changed] == x).all()
    assert changed[:, :200].float().mean().item() == pytest.approx(0.2, abs=0.01)
    assert not torch.equal(a, b)
    assert torch.equal(mask_tokens(tokens, 0.0, x), tokens)


def test_fit_masks_training_batches_only_when_asked(monkeypatch):
    """train.mask_residues reaches every training batch (never a validation batch) and
    model.json's optim records it."""

    from barloc.models import classifier
    from barloc.training import fit

    seen: list[float] = []

    def spy(tokens, rate, unknown):
        seen.append(rate)
        assert unknown == 21  # X
        return tokens

    monkeypatch.setattr(classifier, "mask_tokens", spy)
    df = _random_records("ACDEFGHIKLMNPQRSTVWY", 40, 40, ["a", "b"])
    cfg = {
        "kind": "multiclass",
        "alphabet": "protein",
        "encoder": {"type": "cnn", "embed_dim": 4, "channels": 4, "kernel_sizes": [3]},
        "train": {"max_epochs": 2, "patience": 10, "batch_size": 10, "mask_residues": 0.2},
    }
    _, meta, _ = fit(df.iloc[:30], df.iloc[30:], cfg, {"accelerator": "cpu"}, 1, "t")
    assert seen == [0.2] * 6 and meta.optim["mask_residues"] == 0.2  # 3 training batches, 2 epochs
    seen.clear()
    fit(
        df.iloc[:30],
        df.iloc[30:],
        {**cfg, "train": {**cfg["train"], "mask_residues": 0.0}},
        {"accelerator": "cpu"},
        1,
        "t",
    )
    assert seen == []
