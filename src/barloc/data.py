"""Encoded sequence datasets, length-bucketed batches and plain inference over them (the
training DataModule, which builds these, is :mod:`barloc.training.datamodule`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from barloc.encode import kmer_profile_sparse, tokenize
from barloc.models.encoders import KMER_TYPES


def targets_for(labels: Sequence[str | None], classes: list[str], kind: str) -> np.ndarray:
    """Class indices (multiclass) or a 0/1 matrix (multilabel; labels joined by ';')."""
    index = {c: i for i, c in enumerate(classes)}
    if kind == "multiclass":
        return np.array([index[lab] if lab is not None else -1 for lab in labels], dtype=np.int64)
    Y = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for r, lab in enumerate(labels):
        for part in (lab or "").split(";"):
            if part:
                Y[r, index[part]] = 1.0
    return Y


#: group id of a record outside the nearest-reference model's reference groups: matches none
NO_GROUP = -2


def group_keys(df: pd.DataFrame) -> pd.Series:
    """What a record may not match in a nearest-reference model: its group (BOLD project), or
    the record itself (its id) where it has none."""
    ids = df["id"].astype(str) if "id" in df.columns else pd.Series(df.index.astype(str), index=df.index)
    if "group" not in df.columns:
        return ids
    return df["group"].astype("string").fillna(ids).astype(str)


def group_ids(df: pd.DataFrame, names: Sequence[str] | None) -> np.ndarray | None:
    """Each row's index in ``names`` (model.json's ``reference_groups``; NO_GROUP when its
    group holds no reference), so a nearest-reference model never scores a labelled record
    against references from its own project; None for any other model."""
    if names is None:
        return None
    index = {name: i for i, name in enumerate(names)}
    return np.array([index.get(k, NO_GROUP) for k in group_keys(df)], dtype=np.int64)


class EncodedDataset(Dataset):
    """Either k-mer feature rows or token arrays, plus optional targets and group ids (the
    nearest-reference encoder keeps a training record from matching its own group).

    k-mer profiles are held as one float32 CSR array (``features``, n x 4**k, see
    :func:`barloc.encode.kmer_profile_sparse`), so memory grows with the k-mers present rather
    than with 4**k x n; an item's ``features`` is its dense float32 row, built when the item is
    drawn, so only a batch is ever dense."""

    def __init__(
        self,
        seqs: Sequence[str],
        encoder: dict,
        alphabet: str,
        targets: np.ndarray | None = None,
        groups: np.ndarray | None = None,
    ) -> None:
        from barloc.config import block_defaults

        encoder = block_defaults("encoder", encoder)
        self.kmer = encoder["type"] in KMER_TYPES
        if self.kmer:
            self.features = kmer_profile_sparse(list(seqs), encoder["k"])
            self.lengths = np.ones(len(seqs), dtype=np.int64)
        else:
            self.tokens = [torch.from_numpy(t) for t in tokenize(seqs, alphabet, encoder.get("max_len"))]
            self.lengths = np.array([len(t) for t in self.tokens], dtype=np.int64)
        self.targets = None if targets is None else torch.from_numpy(targets)
        self.groups = None if groups is None else torch.as_tensor(groups, dtype=torch.long)
        # The nearest encoder's raw distances, computed once by its ``prepare``; items then
        # carry profiles only if ``features_needed``.
        self.distances: torch.Tensor | None = None
        self.features_needed = True

    def __len__(self) -> int:
        return len(self.lengths)

    def dense_row(self, i: int) -> torch.Tensor:
        """Row ``i`` of the k-mer profiles as a dense float32 vector (the same values a dense
        profile matrix holds)."""
        f = self.features
        a, b = f.indptr[i], f.indptr[i + 1]
        row = np.zeros(f.shape[1], dtype=np.float32)
        row[f.indices[a:b]] = f.data[a:b]
        return torch.from_numpy(row)

    def __getitem__(self, i: int) -> dict:
        item = {"index": i}
        if self.distances is not None:
            item["distances"] = self.distances[i]
        if self.kmer and self.features_needed:
            item["features"] = self.dense_row(i)
        elif not self.kmer:
            item["tokens"] = self.tokens[i]
        if self.targets is not None:
            item["target"] = self.targets[i]
        if self.groups is not None:
            item["group"] = self.groups[i]
        return item

    def __getitems__(self, idx: list[int]) -> dict:
        """A whole batch at once (the DataLoader's batched fetch): k-mer rows are sliced from the
        CSR array together rather than densified one by one. Same values as :func:`collate` of
        the items."""
        if not self.kmer:
            return collate([self[i] for i in idx])
        rows = torch.as_tensor(idx, dtype=torch.long)
        batch = {"index": rows}
        if self.distances is not None:
            batch["distances"] = self.distances[rows]
        if self.features_needed:
            batch["features"] = torch.from_numpy(self.features[np.asarray(idx)].toarray())
        if self.targets is not None:
            batch["target"] = self.targets[rows]
        if self.groups is not None:
            batch["group"] = self.groups[rows]
        return batch


def collate(items: list[dict] | dict) -> dict:
    """One batch from its items (or a batch that ``EncodedDataset.__getitems__`` made whole)."""
    if isinstance(items, dict):
        return items
    batch = {"index": torch.tensor([it["index"] for it in items])}
    if "features" in items[0]:
        batch["features"] = torch.stack([it["features"] for it in items])
    elif "tokens" in items[0]:
        batch["tokens"] = torch.nn.utils.rnn.pad_sequence([it["tokens"] for it in items], batch_first=True)
    for key in ("distances", "target", "group"):
        if key in items[0]:
            batch[key] = torch.stack([it[key] for it in items])
    return batch


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, so little of each batch is padding.

    Training: shuffle, sort within pools of 50 batches, then shuffle the batches.
    Inference: plain length order (outputs are put back in place by their ``index``).

    Distributed training (``num_replicas`` > 1): every process draws the same batch order
    (same seed and epoch) and takes every ``num_replicas``-th batch from ``rank`` on. All
    processes must run the same number of steps, or the gradient all-reduce waits forever, so
    the order is wrapped around to a multiple of ``num_replicas`` (a few batches are seen twice
    in that epoch). Lightning's DistributedSampler cannot do this for a batch sampler.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.num_replicas, self.rank = num_replicas, rank

    def _batches(self) -> list[list[int]]:
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i : i + bs].tolist() for i in range(0, n, bs)]
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        perm = rng.permutation(n)
        pool = bs * 50
        batches = []
        for s in range(0, n, pool):
            chunk = perm[s : s + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + bs].tolist() for i in range(0, len(chunk), bs)]
        return [batches[b] for b in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        if self.num_replicas == 1:
            yield from batches
            return
        total = len(self) * self.num_replicas
        batches = (batches * (total // max(len(batches), 1) + 1))[:total]
        yield from batches[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        n_batches = (len(self.lengths) + self.batch_size - 1) // self.batch_size
        return -(-n_batches // self.num_replicas)


def loader(
    ds: EncodedDataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
) -> DataLoader:
    """Batches of ``ds`` in length buckets (shuffled for training, sharded under DDP)."""
    sampler = BucketBatchSampler(ds.lengths, batch_size, shuffle, seed, num_replicas, rank)
    return DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=0)


def prepare(model: torch.nn.Module, ds: EncodedDataset) -> None:
    """Let ``model``'s encoder precompute what it reads from ``ds`` (the nearest encoder's
    distances; see ``NearestReferenceEncoder.prepare``)."""
    inner = getattr(model, "model", model)  # extra_heads.WithExtraHeads wraps the classifier
    encoder = getattr(inner, "encoder", None)
    if hasattr(encoder, "prepare") and ds.kmer:
        encoder.prepare(ds)


def predict_logits(model: torch.nn.Module, ds: EncodedDataset, batch_size: int, device: str = "cpu") -> np.ndarray:
    """Logits in dataset order (the loader runs in length order for speed).

    A plain inference loop, not ``Trainer.predict``: ``barloc predict`` streams a query file
    in chunks and scores each with this, and a Trainer per chunk would add its start-up
    (accelerator and strategy set-up, callbacks, loop state) to every chunk for no gain, since
    scoring needs neither devices beyond one, checkpoints nor logging."""
    out = np.zeros((len(ds), model.head.out_features), dtype=np.float32)
    prepare(model, ds)
    model.eval().to(device)
    with torch.inference_mode():
        for batch in loader(ds, batch_size):
            idx = batch.pop("index").numpy()
            batch = {k: v.to(device) for k, v in batch.items()}
            out[idx] = model(batch).float().cpu().numpy()
    return out
