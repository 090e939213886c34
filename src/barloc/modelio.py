"""Safe model files: weights as a plain state_dict (loaded with weights_only=True, so a
malicious pickle cannot run code) and every piece of metadata as JSON beside them
(:class:`barloc.artifacts.ModelMeta`)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from barloc.artifacts import ModelMeta, atomic_path
from barloc.errors import InputError
from barloc.models import SequenceClassifier


def build_model(meta: ModelMeta) -> SequenceClassifier:
    """An untrained model of the architecture ``meta`` describes."""
    return SequenceClassifier(
        kind=meta.kind,
        n_classes=len(meta.classes),
        alphabet=meta.alphabet,
        encoder=meta.encoder,
        loss=meta.loss,
        optim=meta.optim,
        target_counts=meta.train_counts,
        n_train=meta.n_train,
        n_features=meta.n_features,
        extra_heads=meta.heads,
        n_reference=meta.n_reference,
    )


def save_model(model: torch.nn.Module, meta: ModelMeta, ckpt: str | Path, meta_path: str | Path) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(ckpt) as tmp:
        torch.save(state, tmp)
    meta.save(meta_path)


def load_model(
    ckpt: str | Path, meta_path: str | Path, meta: ModelMeta | None = None
) -> tuple[SequenceClassifier, ModelMeta]:
    """Rebuild the model from model.json (``meta``, when the caller has read it already) and load
    its weights, refusing anything but tensors."""
    meta = ModelMeta.load(meta_path) if meta is None else meta
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unsafe pickle"
        raise InputError(ckpt, f"refused to load: not a plain weights file ({first})") from err
    if (
        not isinstance(state, dict)
        or "state_dict" in state
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        raise InputError(
            ckpt,
            "is not a barloc weights file (a plain state_dict of tensors); "
            "Lightning checkpoints and other pickles are not accepted",
        )
    rows = state["head.weight"].shape[0] if "head.weight" in state else None
    if rows != len(meta.classes):
        raise InputError(meta_path, f"lists {len(meta.classes)} classes but {ckpt} has a head for {rows}")
    model = build_model(meta)
    model.load_state_dict(state)
    return model.eval(), meta
