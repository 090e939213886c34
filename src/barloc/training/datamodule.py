"""The LightningDataModule: ``setup()`` encodes the records, builds their targets (soft
targets, extra heads) and augments the training part; it serves length-bucketed batches and
tells model.json what the model was trained on (classes, class counts, references)."""

from __future__ import annotations

import lightning as L
import numpy as np
import pandas as pd
import torch
from scipy import sparse
from torch.utils.data import DataLoader

from barloc import extra_heads, soft
from barloc.augment import augment_records
from barloc.data import EncodedDataset, group_ids, group_keys, loader


def task_classes(labels: pd.Series, cfg: dict, soft_cells=None) -> list[str]:
    """Configured class order, else sorted labels seen in the reference (and classes that
    soft targets give a probability)."""
    if cfg.get("classes"):
        return list(cfg["classes"])
    return sorted(set(labels.dropna().str.split(";").explode()) | soft.classes_in(soft_cells))


class SequenceDataModule(L.LightningDataModule):
    """The training and validation records of one task (``cfg``: its config block, with
    defaults filled in). ``val=None`` is a refit: no validation, and the training records
    alone are the nearest encoder's references.

    ``setup()`` does its work once, so :func:`barloc.training.fit` can call it before the
    trainer does and read the counts it needs for the model."""

    def __init__(self, train: pd.DataFrame, val: pd.DataFrame | None, cfg: dict, seed: int) -> None:
        super().__init__()
        self.cfg, self.seed = cfg, seed
        self.validate = val is not None
        self.train_records = train
        self.val_records = val if val is not None else train.iloc[:0]
        self.kind, self.alphabet = cfg["kind"], cfg["alphabet"]
        self.encoder_cfg = dict(cfg["encoder"])
        self.batch_size = int(cfg["train"]["batch_size"])
        self.nearest = self.encoder_cfg.get("type") == "nearest"
        self.classes = task_classes(
            pd.concat([train["label"], self.val_records["label"]]),
            cfg,
            (soft.column(train) or []) + (soft.column(self.val_records) or []),
        )
        self.extra = extra_heads.heads(cfg)  # e.g. the membrane flag: target columns after the classes'
        # The nearest encoder's references: every labelled record here with a hard label.
        self.reference_groups: list[str] | None = None
        self._labelled = self._refs = self._ref_order = None
        self.train_set: EncodedDataset | None = None
        self.val_set: EncodedDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val = self.train_records, self.val_records
        if self.extra:
            extra_heads.check_columns(pd.concat([train, val]), self.extra, "the training records")
        if self.nearest:  # a DNA multiclass task: barloc.config.cross_checks saw to that
            # In id order: models trained on the same records (cross-fitting's) get the same
            # references, lists and group numbers, so they share one index (NearestReferenceEncoder.index).
            self._labelled = pd.concat([train, val], ignore_index=True)
            self._refs = soft.hard_mask(self._labelled)
            self._ref_order = np.flatnonzero(self._refs)[
                np.argsort(self._labelled.loc[self._refs, "id"].astype(str).to_numpy(), kind="stable")
            ]
            self.reference_groups = list(dict.fromkeys(group_keys(self._labelled.iloc[self._ref_order])))
        # train.augment: altered copies of the training records (DNA), never of val; a copy keeps
        # its original's group and id, so it never matches its original either.
        self.train_set = self._encode(
            augment_records(train, self.cfg["train"].get("augment"), self.seed, self.alphabet)
        )
        # A refit runs no validation; the trainer never scores this stand-in.
        self.val_set = self._encode(val) if self.validate else self.train_set

    def _encode(self, part: pd.DataFrame) -> EncodedDataset:
        targets = extra_heads.append_targets(soft.targets(part, self.classes, self.kind), part, self.extra)
        return EncodedDataset(
            part["sequence"].tolist(),
            self.encoder_cfg,
            self.alphabet,
            targets,
            group_ids(part, self.reference_groups) if self.nearest else None,
        )

    @property
    def n_reference(self) -> int | None:
        """How many references the nearest encoder holds (None for other encoders)."""
        return None if self._refs is None else int(self._refs.sum())

    def class_counts(self) -> tuple[np.ndarray, int]:
        """(count per class, number of training records): expected counts for soft targets;
        augmented copies are not counted (every record is repeated equally)."""
        y = self.train_set.targets.numpy()
        y = y[:, : len(self.classes)] if self.extra else y
        counts = np.bincount(y, minlength=len(self.classes)) if y.ndim == 1 else y.sum(axis=0)
        n = len(y)
        if n > len(self.train_records):
            reps = n // len(self.train_records)
            counts, n = (counts // reps if counts.dtype.kind == "i" else counts / reps), len(self.train_records)
        return counts, n

    def fit_encoder(self, encoder: torch.nn.Module) -> None:
        """Set the encoder's buffers that come from the data: the nearest encoder's references
        and standardisation (always: the distances' scale says nothing about their weight), or
        with ``encoder.standardize`` a k-mer encoder's per-feature standardisation."""
        train = self.train_set
        if self.nearest:
            # The original training records are the first rows of the (augmented) training set.
            n = len(self.train_records)
            held = (self.val_set,) if self.validate else ()
            order = torch.from_numpy(self._ref_order)
            refs = sparse.vstack([train.features[:n], *(s.features for s in held)], format="csr")
            encoder.set_reference(
                refs[self._ref_order],
                torch.as_tensor([self.classes.index(c) for c in self._labelled["label"].iloc[self._ref_order]]),
                torch.cat([train.groups[:n], *(s.groups for s in held)])[order],
            )
            for ds in {id(train): train, id(self.val_set): self.val_set}.values():
                encoder.prepare(ds)
            encoder.fit_standardizer(train.distances, train.features)
        elif self.encoder_cfg.get("standardize") and hasattr(encoder, "fit_standardizer"):
            encoder.fit_standardizer(train.features)

    def train_dataloader(self) -> DataLoader:
        # Under DDP each process takes its share of the batches (the trainer passes
        # use_distributed_sampler=False: the bucket sampler shards itself).
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        return loader(self.train_set, self.batch_size, shuffle=True, seed=self.seed, num_replicas=replicas, rank=rank)

    def val_dataloader(self) -> DataLoader:
        # Not sharded: every process scores the whole validation set, so the validation metric
        # (balanced accuracy, micro-F1: not averages over batches) and early stopping agree
        # across processes without gathering predictions.
        return loader(self.val_set, self.batch_size)
