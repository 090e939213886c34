"""Safe model files: weights as a plain state_dict (loaded with weights_only=True, so a
malicious pickle cannot run code) and every piece of metadata as JSON beside them."""

from __future__ import annotations

from pathlib import Path

import torch

from barloc.models import SequenceClassifier
from barloc.runtime import atomic_path, read_json, write_json


def build_model(meta: dict) -> SequenceClassifier:
    return SequenceClassifier(
        kind=meta["kind"],
        n_classes=len(meta["classes"]),
        alphabet=meta["alphabet"],
        encoder=meta["encoder"],
        loss=meta["loss"],
        optim=meta.get("optim", {}),
        target_counts=meta["train_counts"],
        n_train=meta["n_train"],
        n_features=meta.get("n_features"),
    )


def save_model(model: torch.nn.Module, meta: dict, ckpt: str | Path, meta_path: str | Path) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(ckpt) as tmp:
        torch.save(state, tmp)
    write_json(meta, meta_path)


def load_model(ckpt: str | Path, meta_path: str | Path) -> tuple[SequenceClassifier, dict]:
    meta = read_json(meta_path)
    model = build_model(meta)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval(), meta
