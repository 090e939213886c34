"""The LightningModule: an encoder, a linear head and the configured loss.

One class serves both tasks; ``kind`` picks the head's link. A softmax head makes classes
compete (one origin per fish); sigmoid heads score each location on its own, because a
protein can sit in the nucleus and the cytoplasm at once (their loss can add a softmax term,
``loss.softmax_weight``, so that locations compete in training; the outputs stay per label).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import nn

from barloc.augment import mask_tokens
from barloc.config import block_defaults
from barloc.encode import unknown_token
from barloc.extra_heads import masked_bce
from barloc.losses import make_loss
from barloc.metrics import multiclass_metrics
from barloc.models.encoders import build_encoder


class SequenceClassifier(L.LightningModule):
    def __init__(
        self,
        kind: str,
        n_classes: int,
        alphabet: str,
        encoder: dict,
        loss: dict,
        optim: dict,
        target_counts: list[float],
        n_train: int,
        n_features: int | None = None,
        extra_heads: list[str] | tuple[str, ...] = (),
        n_reference: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.kind = kind
        self.encoder = build_encoder(encoder, alphabet, n_features, n_reference, n_classes)
        self.head = nn.Linear(self.encoder.out_dim, n_classes)
        self.loss_fn = make_loss(kind, loss, np.asarray(target_counts), n_train)
        # Extra sigmoid outputs on the same encoding (barloc.extra_heads: the membrane flag);
        # their targets are the columns after the classes'. forward() gives the classes only.
        self.extra_head = nn.Linear(self.encoder.out_dim, len(extra_heads)) if extra_heads else None
        self.extra_weight = float(block_defaults("loss", loss)["membrane_weight"])
        # train.mask_residues: a share of each training batch's residues hidden as X (N)
        self.mask_rate = float(block_defaults("train", optim)["mask_residues"])
        self.unknown = unknown_token(alphabet)
        self._val_logits: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []
        self._val_loss: list[torch.Tensor] = []
        self._train_sum: list = [torch.zeros(()), 0]

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(self.encoder(batch))

    def forward_all(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits and the extra heads' logits (None without extra heads)."""
        z = self.encoder(batch)
        return self.head(z), None if self.extra_head is None else self.extra_head(z)

    def _loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, class logits, class targets); extra heads add their weighted, NaN-masked BCE."""
        if self.extra_head is None:
            logits = self(batch)
            return self.loss_fn(logits, batch["target"]), logits, batch["target"]
        logits, extra = self.forward_all(batch)
        k = logits.shape[1]
        target, extra_target = batch["target"][:, :k], batch["target"][:, k:]
        loss = self.loss_fn(logits, target) + self.extra_weight * masked_bce(extra, extra_target)
        return loss, logits, target

    # Epoch losses are summed here and logged once an epoch: a self.log per step costs Lightning
    # more than a small model's whole step (benchmarks/scale.py's epochs of 100,000 barcodes).

    def on_train_epoch_start(self) -> None:
        self._train_sum = [torch.zeros((), device=self.device), 0]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.mask_rate > 0 and "tokens" in batch:
            batch = {**batch, "tokens": mask_tokens(batch["tokens"], self.mask_rate, self.unknown)}
        loss = self._loss(batch)[0]
        n = len(batch["target"])
        self._train_sum[0] += loss.detach() * n
        self._train_sum[1] += n
        if batch_idx + 1 == self.trainer.num_training_batches:
            # sync_dist: under DDP the epoch's loss is averaged over the processes' shards.
            mean = self._train_sum[0] / self._train_sum[1]
            self.log("train_loss", mean, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, logits, target = self._loss(batch)
        self._val_loss.append(loss.detach().float().cpu() * len(target))
        self._val_logits.append(logits.detach().float().cpu())
        self._val_targets.append(target.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_logits:
            return
        logits = torch.cat(self._val_logits).numpy()
        target = torch.cat(self._val_targets).numpy()
        loss = torch.stack(self._val_loss).sum() / len(target)
        self._val_logits.clear()
        self._val_targets.clear()
        self._val_loss.clear()
        # Every DDP process scored the whole validation set, so the values are the same on each.
        self.log("val_loss", loss, prog_bar=True, sync_dist=True)
        self.log("val_metric", _val_metric(self.kind, logits, target), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        opt = block_defaults("train", self.hparams.optim)  # lr, weight_decay
        return torch.optim.AdamW(self.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"])


def _val_metric(kind: str, logits: np.ndarray, target: np.ndarray) -> float:
    """Balanced accuracy (multiclass) or micro-F1 at 0.5 (multilabel) for early-stopping logs."""
    if kind == "multiclass":
        if target.ndim == 2:
            # Soft targets (probability rows) have no known class: score the one-hot rows only,
            # as evaluation does (all rows by their most probable class if none is one-hot,
            # since a NaN would stop early stopping at once).
            hard = target.max(axis=1) == 1.0
            if hard.any():
                logits, target = logits[hard], target[hard]
            y = target.argmax(axis=1)
        else:
            y = target
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return multiclass_metrics(probs / probs.sum(axis=1, keepdims=True), y)["balanced_accuracy"]
    pred = logits > 0
    y = target > 0.5
    tp = (pred & y).sum()
    return float(2 * tp / max(pred.sum() + y.sum(), 1))


VAL_METRIC_NAME = {"multiclass": "balanced_accuracy", "multilabel": "micro_f1@0.5"}
