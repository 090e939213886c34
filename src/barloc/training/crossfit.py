"""Cross-fitting: K fold models give every non-test record a logit from a model that never
trained on it, and one model refit on all of them calls.

Every post-hoc parameter (calibration, thresholds, call ratio, the prior-shift check;
:mod:`barloc.posthoc`) is fitted on those pooled out-of-fold logits, never on one fold of a few
groups, whose class mix and quirks it would otherwise carry to the calls.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from barloc import extra_heads, soft
from barloc.artifacts import FOLD, LABEL, OOF, SPLIT, ModelMeta, logit_columns, read_json, write_json
from barloc.calibrate import class_offset, prior_logits
from barloc.config import with_defaults
from barloc.errors import InputError
from barloc.modelio import load_model, save_model
from barloc.models import SequenceClassifier
from barloc.runtime import process_rank, versions
from barloc.scoring import score_frame
from barloc.training.datamodule import task_classes
from barloc.training.fit import fit
from barloc.training.resume import fingerprint

log = logging.getLogger(__name__)


@dataclasses.dataclass
class CrossFit:
    model: SequenceClassifier  # the calling model: refit on every fold
    meta: ModelMeta  # its model.json, with ``crossfit`` (the fold models' facts)
    oof: pd.DataFrame  # logits table of the non-test records (split val, column fold)
    history: list[dict]  # the fold models' epochs, each row with its fold
    members: list[tuple[SequenceClassifier, ModelMeta]]  # the fold models, in fold order


def to_calling_model(meta: ModelMeta, calling: ModelMeta) -> np.ndarray:
    """What moves ``meta``'s model's class logits to ``calling``'s training mix and class
    weighting: log(pi_calling / pi_model) (per label in logits) plus the weighting offsets' difference.

    Exact for a loss whose optimum the offset undoes; with sigmoid heads' softmax term
    (``loss.softmax_weight``) part of each label's bias follows that term instead, so the move is
    approximate, and the pooled Platt fit that such a task's calibration must use takes up the
    common part of what is left."""
    shift = prior_logits(calling) - prior_logits(meta) + class_offset(meta) - class_offset(calling)
    # A class the fold model never trained on has no prior to move (its log prior is clipped,
    # its class weight counted as 1): its logit stays as the model gave it.
    unseen = (np.asarray(meta.train_counts) <= 0) | (np.asarray(calling.train_counts) <= 0)
    shift = np.where(unseen, 0.0, shift)
    return shift - shift.mean() if meta.kind == "multiclass" else shift  # softmax ignores a common shift


def refit_epochs(metas: list[ModelMeta], cfg: dict) -> int:
    """Epochs of the refit: the fold models' mean kept epoch count, or max_epochs without early stopping."""
    tr = cfg["train"]
    if not tr["early_stopping"]:
        return int(tr["max_epochs"])
    return max(1, round(float(np.mean([m.best_epoch + 1 for m in metas]))))


def cross_fit(
    data: pd.DataFrame,
    folds: np.ndarray,
    cfg: dict,
    trainer_cfg: dict,
    seed: int,
    task: str = "",
    checkpoint_dir: str | Path | None = None,
) -> CrossFit:
    """Fold model k trains on the other folds, early-stopped on fold k, and scores fold k; the
    calling model trains on every record for :func:`refit_epochs` epochs.

    ``data``: the non-test labelled records (columns id, sequence, label; group and soft
    targets when present); ``folds``: one fold number per row. The out-of-fold class logits are
    moved to the calling model's training mix and class weighting (:func:`to_calling_model`),
    so that one calibration, with the calling model's offset, fits them all.
    ``checkpoint_dir``: each training resumes from its own subfolder (see :func:`fit`), and a
    fold model that finished is kept there (weights, model.json, history) so that a rerun after
    a kill does not train it again; the folder goes once the calling model is trained.
    """
    data, folds = data.reset_index(drop=True), np.asarray(folds)
    ids = sorted(np.unique(folds).tolist())
    if len(ids) < 2:
        raise InputError(None, "cross-fitting needs at least 2 folds of non-test records: check the split settings")
    # One class order for every model, as the full set orders it (a fold may lack a class).
    cfg = with_defaults({**cfg, "classes": task_classes(data[LABEL], cfg, soft.column(data))})
    batch = 2 * int(cfg["train"]["batch_size"])

    def where(name: str) -> Path | None:
        return None if checkpoint_dir is None else Path(checkpoint_dir) / name

    # What a kept fold model was trained from: records (with groups and extra-head targets),
    # settings and the software (a model from another barloc or torch is retrained).
    keys = soft.key_columns(data) + [c for c in ("group", *extra_heads.heads(cfg)) if c in data]
    parts, members, history = [], [], []
    for k in ids:
        held = folds == k
        done = where(f"fold{k}.done")
        key = fingerprint(
            {"cfg": cfg, "trainer": trainer_cfg, "seed": seed + int(k), "task": task, "versions": versions()},
            data.loc[~held, keys],
            data.loc[held, keys],
        )
        cached = _load_fold(done, key) if done is not None else None
        if cached is not None:
            log.info("%s fold %d: finished before, not retrained (%s)", task or "cross-fitting", k, done)
            model, meta, rows = cached
        else:
            model, meta, rows = fit(
                data[~held], data[held], cfg, trainer_cfg, seed + int(k), f"{task} fold {k}", where(f"fold{k}")
            )
            if done is not None and process_rank() == 0:
                _save_fold(done, key, model, meta, rows)
        frame = score_frame(model, meta, data[held].assign(**{SPLIT: OOF}), batch)
        frame.insert(2, FOLD, int(k))
        parts.append((frame, meta))
        members.append((model, meta))
        history += [{FOLD: int(k), **r} for r in rows]
    metas = [m for _, m in members]
    epochs = refit_epochs(metas, cfg)
    log.info("refitting %s on all %d folds for %d epochs", task or "the model", len(ids), epochs)
    final, fmeta, _ = fit(data, None, cfg, trainer_cfg, seed, task, where("final"), epochs=epochs)
    if checkpoint_dir is not None and process_rank() == 0:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # every model is trained: nothing to resume
    # A fold model's logits carry its own training mix and class weighting; moved to the calling
    # model's (no change under inverse class weights, which take the mix out).
    cols = logit_columns(fmeta.classes)
    for frame, meta in parts:
        frame[cols] = frame[cols].to_numpy() + to_calling_model(meta, fmeta)
    fmeta = dataclasses.replace(
        fmeta,
        crossfit={
            "n_folds": len(ids),
            "refit_epochs": epochs,
            "folds": [
                {
                    "fold": int(k),
                    "n_train": m.n_train,
                    "train_counts": m.train_counts,
                    "epochs": m.epochs,
                    "best_epoch": m.best_epoch,
                    "train_seconds": m.train_seconds,
                }
                for k, m in zip(ids, metas)
            ],
        },
    )
    oof = pd.concat([f for f, _ in parts], ignore_index=True)
    return CrossFit(final, fmeta, oof, history, members)


def _save_fold(done: Path, key: str, model: SequenceClassifier, meta: ModelMeta, rows: list[dict]) -> None:
    """A finished fold model, for a rerun of the same cross-fitting: the key file goes last."""
    done.mkdir(parents=True, exist_ok=True)
    save_model(model, meta, done / "model.ckpt", done / "model.json")
    write_json(rows, done / "history.json")
    write_json({"key": key}, done / "key.json")


def _load_fold(done: Path, key: str) -> tuple[SequenceClassifier, ModelMeta, list[dict]] | None:
    """The fold model :func:`_save_fold` kept for these data and settings, else None."""
    try:
        if read_json(done / "key.json").get("key") != key:
            return None
        model, meta = load_model(done / "model.ckpt", done / "model.json")
        return model, meta, read_json(done / "history.json")
    except (OSError, InputError, json.JSONDecodeError, RuntimeError, TypeError, KeyError, ValueError):
        return None
