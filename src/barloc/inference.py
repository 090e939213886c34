"""Calls on new samples without Snakemake: the logic behind `barloc predict`.

A trained task directory (``results/{task}/``) holds ``model.ckpt`` + ``model.json`` and
``calibration.json``; this module loads them and writes the workflow's ``calls.tsv`` table
(through :class:`barloc.calling.Caller`, as the workflow's prior_shift step, extra heads'
``membrane_prob``/``membrane_call`` included) for any FASTA/FASTQ file.

Memory does not grow with the input: records are streamed in chunks, each chunk is encoded,
predicted and written before the next is read. The one exception is ``estimate_priors``:
EM needs every sample's probabilities at once, so the first pass keeps an (n, K) float32
matrix (4 * n * K bytes: 100,000 barcodes x 4 basins = 1.6 MB), never the sequences; a
model with extra heads also keeps their float32 logits (4 * n bytes a head).

Every problem with the user's files is an :class:`~barloc.errors.InputError`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from barloc import extra_heads
from barloc.artifacts import Calibration, ModelMeta, Priors, atomic_path, decision_of
from barloc.calling import Caller, correct
from barloc.config import task_default
from barloc.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 2000


@dataclass
class Predictor:
    """A loaded model with everything needed to turn sequences into calls."""

    model: object
    caller: Caller
    task_dir: Path
    priors_info: Priors | None = field(default=None)

    @property
    def meta(self) -> ModelMeta:
        return self.caller.meta


def shipped_root() -> Path:
    """Where the models shipped inside the package live (``barloc/trained/<name>/``)."""
    return Path(str(resources.files("barloc") / "trained"))


def shipped_models() -> list[str]:
    """Names of the shipped models (a ``<name>.partial`` folder is a rebuild in progress)."""
    root = shipped_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if "." not in p.name and (p / "model.ckpt").is_file())


def model_checkpoint(model: str | Path) -> Path:
    """``model.ckpt`` of ``model``: a checkpoint, a folder holding one, or else the name of a
    shipped model (so ``--model localization`` works after ``pip install``, from any
    directory); a path that is none of these comes back as given, for the error."""
    path = Path(model)
    ckpt = path / "model.ckpt" if path.is_dir() else path
    name = str(model).rstrip("/")
    if not ckpt.is_file() and name in shipped_models():
        return shipped_root() / name / "model.ckpt"
    return ckpt


def shipped_model(name: str | Path) -> Path | None:
    """The directory of the shipped model that ``name`` resolves to, else None."""
    ckpt = model_checkpoint(name)
    return ckpt.parent if ckpt.parent.parent == shipped_root() else None


def load_predictor(model_path: str | Path, uncertain_below: float | None = None) -> Predictor:
    """Load ``model.ckpt`` (weights only; ``model_path`` may be its directory) and the
    ``model.json`` and ``calibration.json`` beside it; ``uncertain_below`` defaults to the schema's."""
    from barloc.modelio import load_model

    ckpt = model_checkpoint(model_path)
    if not ckpt.is_file():
        names = ", ".join(shipped_models()) or "none"
        raise InputError(ckpt, f"model file not found (nor a model shipped with barloc: {names})")
    meta_path = ckpt.with_suffix(".json")
    cal_path = ckpt.parent / "calibration.json"
    meta = ModelMeta.load(meta_path)
    if meta.alphabet is None or not meta.encoder:
        raise InputError(meta_path, "model.json lacks alphabet or encoder: it cannot score sequences")
    calibration = Calibration.load(cal_path)
    if list(calibration.classes or meta.classes) != list(meta.classes):
        raise InputError(cal_path, "calibration.json is for other classes than model.json")
    if (calibration.kind or meta.kind) != meta.kind:
        raise InputError(cal_path, f"calibration.json is for a {calibration.kind} model, not {meta.kind}")
    for name in meta.heads:
        if not (calibration.extra_heads or {}).get(name):
            raise InputError(
                cal_path,
                f"the model has a {name} head but calibration.json has no "
                f"extra_heads.{name} (rerun the calibrate step)",
            )
    try:
        model, meta = load_model(ckpt, meta_path, meta)
    except (RuntimeError, OSError, KeyError, ValueError, EOFError) as exc:
        # A torn file, a pickle that is not a plain state_dict, or weights for another model.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(ckpt, f"cannot load the model weights ({first})") from None
    priors_path = ckpt.parent / "priors.json"
    priors_info = None
    if priors_path.is_file():
        with contextlib.suppress(InputError):
            priors_info = Priors.load(priors_path)
    cutoff = task_default("uncertain_below") if uncertain_below is None else float(uncertain_below)
    return Predictor(model, Caller(meta, calibration, cutoff, cal_path), ckpt.parent, priors_info)


def read_priors_tsv(path: str | Path, classes: list[str], kind: str, train: np.ndarray) -> np.ndarray:
    """Known query priors from a TSV with columns ``class`` and ``prior``.

    Multiclass: every class must be named; the priors are normalised to sum to 1.
    Multilabel: each value is P(label present) in [0, 1]; labels not named keep their
    training rate.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "priors file not found")
    try:
        df = pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(p, f"not a TSV file with columns class and prior ({exc})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    if not {"class", "prior"} <= set(df.columns):
        raise InputError(p, f"needs the columns class and prior (found: {', '.join(df.columns) or 'none'})")
    values: dict[str, float] = {}
    for i, (name, text) in enumerate(zip(df["class"].str.strip(), df["prior"].str.strip()), start=2):
        try:
            v = float(text)
        except ValueError:
            raise InputError(p, f"prior {text!r} of class {name!r} is not a number", line=i) from None
        if not math.isfinite(v) or v < 0 or (kind == "multilabel" and v > 1):
            limit = "between 0 and 1" if kind == "multilabel" else "a non-negative number"
            raise InputError(p, f"prior of class {name!r} must be {limit}, not {text}", line=i)
        if name in values:
            raise InputError(p, f"class {name!r} is listed twice", line=i)
        values[name] = v
    unknown = [c for c in values if c not in classes]
    if unknown:
        raise InputError(
            p,
            f"names classes the model does not know: {', '.join(unknown)} (the model's classes: {', '.join(classes)})",
        )
    if kind == "multilabel":
        return np.array([values.get(c, train[j]) for j, c in enumerate(classes)], dtype=np.float64)
    missing = [c for c in classes if c not in values]
    if missing:
        raise InputError(p, f"lacks the prior of {', '.join(missing)} (every class needs one)")
    v = np.array([values[c] for c in classes], dtype=np.float64)
    if v.sum() <= 0:
        raise InputError(p, "priors sum to zero")
    return v / v.sum()


def check_alphabet(path: str | Path, fmt: str | None, alphabet: str) -> None:
    """Refuse a file whose first records look like the other alphabet (DNA vs protein)."""
    from barloc.io.fasta import guess_alphabet

    found = guess_alphabet(path, fmt)
    if found != alphabet:
        raise InputError(
            path,
            f"the sequences look like {found} but the model expects {alphabet} "
            f"(a {'DNA-barcode' if alphabet == 'dna' else 'protein'} model)",
        )


def iter_chunks(
    path: str | Path, alphabet: str, fmt: str | None, size: int, limits: dict | None = None
) -> Iterator[tuple[list[str], list[str]]]:
    """(ids, sequences) in chunks of at most ``size`` records, streamed from the file.

    ``limits`` (model.json ``length_limit``) clips or refuses over-long sequences exactly as
    the workflow's ingest did for the training data.
    """
    from barloc.io.fasta import iter_sequences
    from barloc.records import limit_length

    def emit(ids: list[str], seqs: list[str]) -> tuple[list[str], list[str]]:
        if not limits or limits.get("max_length") is None:
            return ids, seqs
        df = limit_length(pd.DataFrame({"id": ids, "sequence": seqs}), {"alphabet": alphabet, **limits}, path)
        return ids, df["sequence"].tolist()

    ids: list[str] = []
    seqs: list[str] = []
    for rid, seq, _ in iter_sequences(path, alphabet, fmt):
        ids.append(rid)
        seqs.append(seq)
        if len(ids) >= size:
            yield emit(ids, seqs)
            ids, seqs = [], []
    if ids:
        yield emit(ids, seqs)


def class_and_extra_logits(
    pred: Predictor, seqs: list[str], batch_size: int, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class logits of ``seqs`` and the extra heads' logits ((n, heads); None without extra
    heads), from one forward pass, as the workflow's predict step scores them."""
    from barloc.data import EncodedDataset, predict_logits

    meta = pred.meta
    ds = EncodedDataset(seqs, meta.encoder, meta.alphabet)
    model = extra_heads.WithExtraHeads(pred.model) if meta.heads else pred.model
    logits = predict_logits(model, ds, batch_size, device)
    k = len(meta.classes)
    return logits[:, :k], (logits[:, k:] if meta.heads else None)


class Progress:
    """A one-line record counter on stderr, drawn only when stderr is a terminal."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        every: float = 0.2,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label, self.total, self.every = label, total, every
        self.count = 0
        self.start = self._last = time.monotonic()

    def update(self, n: int) -> None:
        self.count += n
        now = time.monotonic()
        if self.enabled and now - self._last >= self.every:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.count / max(now - self.start, 1e-9)
        if self.total:
            done = min(self.count / self.total, 1.0)
            bar = "#" * int(done * 30)
            text = f"{self.label} [{bar:<30}] {self.count:,}/{self.total:,} records ({rate:,.0f}/s)"
        else:
            text = f"{self.label} {self.count:,} records ({rate:,.0f}/s)"
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class PredictResult:
    n: int
    n_uncertain: int
    method: str  # "none" | "known" | "em"
    classes: list[str] = field(default_factory=list)
    query_priors: np.ndarray | None = None
    converged: bool | None = None
    #: per extra head: {call: number of records}, e.g. {"membrane": {"membrane": 3, "soluble": 9}}
    extra_calls: dict[str, dict[str, int]] = field(default_factory=dict)


def predict_file(
    model_path: str | Path,
    input_path: str | Path,
    out_path: str | Path,
    *,
    fmt: str | None = None,
    priors: str | Path | None = None,
    estimate_priors: bool = False,
    uncertain_below: float | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    batch_size: int = 128,
    prior_strength: float | None = None,
    device: str = "cpu",
    progress: bool | None = None,
    seed: int = 0,
) -> PredictResult:
    """Write ``calls.tsv`` for every record of ``input_path`` with the model at ``model_path``.

    Without ``priors``/``estimate_priors`` the calls use calibrated probabilities. ``priors``
    (TSV: class, prior) applies the known-prior correction; ``estimate_priors`` estimates the
    query priors by EM over the whole input (two passes, O(n * K) floats of memory) and
    corrects with them. The table is written to a temporary file that is renamed to
    ``out_path`` only when every record succeeded.
    """
    if priors is not None and estimate_priors:
        raise InputError(None, "give either --priors or --estimate-priors, not both")
    if chunk_size < 1 or batch_size < 1:
        raise InputError(None, "chunk and batch sizes must be at least 1")
    pred = load_predictor(model_path, uncertain_below)
    caller = pred.caller
    kind, classes, train = caller.kind, caller.classes, caller.train_priors
    target = read_priors_tsv(priors, classes, kind, train) if priors is not None else None
    check_alphabet(input_path, fmt, pred.meta.alphabet)

    def chunks(label: str, total: int | None = None) -> Iterator[tuple[list[str], list[str]]]:
        bar = Progress(label, total, enabled=progress)
        for ids, seqs in iter_chunks(input_path, pred.meta.alphabet, fmt, chunk_size, pred.meta.length_limit):
            yield ids, seqs
            bar.update(len(ids))
        bar.close()

    result = PredictResult(0, 0, "none", classes)
    em_probs: np.ndarray | None = None
    em_extra: np.ndarray | None = None
    em_z: np.ndarray | None = None
    em_before: np.ndarray | None = None
    if estimate_priors:
        # Pass 1: calibrated probabilities of every record, kept as one float32 matrix (and
        # the extra heads' float32 logits, as the model gives them, and the class logits when the
        # call ratio compares them, for pass 2's calls).
        parts, extra_parts, z_parts = [], [], []
        for _, seqs in chunks("pass 1/2: predicting"):
            z, extra = class_and_extra_logits(pred, seqs, batch_size, device)
            parts.append(caller.calibrate(z).astype(np.float32))
            if extra is not None:
                extra_parts.append(extra)
            if caller.needs_logits:
                z_parts.append(z.astype(np.float32))
        if not parts:
            raise InputError(input_path, "no records to classify")
        all_probs = np.concatenate(parts)
        em_extra = np.concatenate(extra_parts) if extra_parts else None
        em_z = np.concatenate(z_parts).astype(np.float64) if z_parts else None
        del parts, extra_parts, z_parts
        pcfg = {**task_default("prior_shift"), "method": "em", "bootstrap": 0}
        if prior_strength is not None:
            pcfg["prior_strength"] = prior_strength
        em_probs, info = correct(kind, all_probs.astype(np.float64), train, pcfg, classes, seed)
        em_before = all_probs if em_z is not None else None  # what EM moved, for the logits' move
        del all_probs
        result = PredictResult(0, 0, "em", classes, np.asarray(info["query_priors"]), bool(info.get("converged")))
        if pred.priors_info and decision_of(pred.priors_info.to_dict())["code"] in ("check_failed", "not_applied"):
            log.warning("the workflow did not apply EM prior correction for this model: %s", pred.priors_info.reason)
    elif target is not None:
        result = PredictResult(0, 0, "known", classes, target)

    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            n = n_uncertain = 0
            label = "pass 2/2: writing" if em_probs is not None else "predicting"
            for ids, seqs in chunks(label, len(em_probs) if em_probs is not None else None):
                if em_probs is not None:
                    if n + len(ids) > len(em_probs):
                        raise InputError(input_path, "the file changed between the two passes")
                    probs = em_probs[n : n + len(ids)]
                    extra = None if em_extra is None else em_extra[n : n + len(ids)]
                    z = None if em_z is None else em_z[n : n + len(ids)]
                    before = None if em_before is None else em_before[n : n + len(ids)].astype(np.float64)
                else:
                    z, extra = class_and_extra_logits(pred, seqs, batch_size, device)
                    before = caller.calibrate(z)
                    probs = caller.corrected(before, target)
                table = caller.calls(ids, probs, extra, z, before)
                table.to_csv(fh, sep="\t", index=False, header=n == 0)
                n += len(ids)
                n_uncertain += int(table["uncertain"].sum())
                for name in pred.meta.heads:
                    counts = result.extra_calls.setdefault(name, dict.fromkeys(extra_heads.CALL_WORDS.get(name, ()), 0))
                    for call, k in table[f"{name}_call"].value_counts().items():
                        counts[call] = counts.get(call, 0) + int(k)
            if n == 0:
                raise InputError(input_path, "no records to classify")
            if em_probs is not None and n != len(em_probs):
                raise InputError(input_path, "the file changed between the two passes")
    result.n, result.n_uncertain = n, n_uncertain
    return result


def summary(result: PredictResult, out_path: str | Path) -> str:
    """What `barloc predict` prints on stderr when it is done."""
    lines = [f"{result.n:,} calls written to {out_path} ({result.n_uncertain:,} uncertain)"]
    if result.method == "none":
        lines.append("probabilities: calibrated, without prior correction")
    else:
        how = "estimated by EM" if result.method == "em" else "given"
        pri = ", ".join(f"{c} {p:.3f}" for c, p in zip(result.classes, result.query_priors))
        lines.append(f"probabilities: calibrated and corrected to the query priors {how}: {pri}")
        if result.method == "em" and result.converged is False:
            lines.append("warning: EM did not converge; the priors are its last estimate")
    for name, counts in result.extra_calls.items():
        lines.append(
            f"{name} head: "
            + ", ".join(f"{k:,} {call}" for call, k in counts.items())
            + f" (column {name}_call, at the calibrated threshold)"
        )
    return "\n".join(lines)
