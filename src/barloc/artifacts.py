"""The files passed between steps: column names, one JSON reader, one atomic writer, and
typed dataclasses for model.json, calibration.json and priors.json (docs/artifacts.md).

Everything a step hands to the next goes through here, so a key or a column has one home.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from barloc.errors import InputError

# ---------------------------------------------------------------- column names
ID, SPLIT, LABEL, ROLE, GROUP, SEQUENCE = "id", "split", "label", "role", "group", "sequence"
#: logits.parquet: one float column per class, ``logit::{class}``
LOGIT = "logit::"
#: calls.tsv: one probability column per class, ``p::{class}``
PROB = "p::"
#: calls.tsv's leading columns, before the ``p::`` ones and any extra head's ``{name}_prob``/``{name}_call``
CALLS_COLUMNS = [ID, "call", "probability", "alternatives", "uncertain"]
#: ``split`` of the analyst's samples in logits.parquet (labelled records are train, val or test)
QUERY = "query"
#: ``split`` of the out-of-fold rows in logits.parquet: every non-test labelled record, scored
#: by the cross-fitting fold model that did not train on it (barloc.training.crossfit)
OOF = "val"
#: logits.parquet and splits.tsv: a non-test record's cross-fitting fold
FOLD = "fold"


def logit_columns(classes: list[str]) -> list[str]:
    return [LOGIT + c for c in classes]


# ---------------------------------------------------------------- writing and reading files
def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any threads.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it into place only if the block succeeds.

    A crash mid-write then leaves no file that Snakemake could mistake for a finished output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); a finished output gets the usual
        # umask-based mode, like any file the user's tools create.
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x)}")


def write_json(obj: Any, path: str | Path) -> None:
    """The one JSON writer: atomic, indented, numpy arrays as lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = obj.to_dict()
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=True, default=_jsonable) + "\n")


def read_json(path: str | Path, what: str | None = None) -> Any:
    """The one JSON reader. With ``what`` (e.g. "model.json") a missing, unreadable or
    non-object file is an InputError naming it; without, errors pass through."""
    path = Path(path)
    if what is None:
        return json.loads(path.read_text())
    if not path.is_file():
        raise InputError(path, f"{what} not found")
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise InputError(path, f"cannot read {what}: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(path, f"{what} is not a JSON object")
    return data


PARQUET_META_KEY = b"barloc"


def write_parquet(df: Any, path: str | Path, meta: dict | None = None) -> None:
    """Write ``df`` (no index) atomically, with ``meta`` as JSON under the parquet key-value
    metadata key ``barloc`` (read it back with :func:`parquet_meta`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if meta is not None:
        extra = {PARQUET_META_KEY: json.dumps(meta, sort_keys=True, default=_jsonable).encode()}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_tsv(df: Any, path: str | Path) -> None:
    """Write ``df`` (no index) as a tab-separated file, atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False)


def present_columns(path: str | Path, names: list[str]) -> list[str]:
    """Those of ``names`` that the parquet file at ``path`` has, in order (optional columns)."""
    import pyarrow.parquet as pq

    have = set(pq.read_schema(path).names)
    return [n for n in names if n in have]


def parquet_meta(path: str | Path) -> dict:
    """The ``barloc`` metadata dict of a parquet file written by :func:`write_parquet`
    (empty when it has none)."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(PARQUET_META_KEY)
    return json.loads(raw) if raw else {}


# ---------------------------------------------------------------- typed JSON artifacts
T = TypeVar("T", bound="_Artifact")


class _Artifact:
    """load/save/to_dict for the dataclasses below. Unknown keys in a file are ignored (a newer
    barloc may add some); a missing required key is an InputError naming the file."""

    FILE: ClassVar[str] = "artifact"

    @classmethod
    def from_dict(cls: type[T], data: dict, source: object = None) -> T:
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        required = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [n for n in required if n not in data]
        if missing:
            raise InputError(source, f"{cls.FILE} lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in fields})

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        return cls.from_dict(read_json(path, cls.FILE), path)

    def to_dict(self) -> dict:
        # Optional keys that are unset stay out of the file, as before the dataclasses.
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if not (getattr(self, f.name) is None and f.metadata.get("omit_none", True))
        }

    def save(self, path: str | Path) -> None:
        write_json(self.to_dict(), path)


@dataclasses.dataclass
class ModelMeta(_Artifact):
    """model.json: everything needed to rebuild a model and use its outputs."""

    FILE: ClassVar[str] = "model.json"

    kind: str  # multiclass | multilabel
    classes: list[str]
    train_priors: list[float]  # class (multiclass) or label (multilabel) frequencies in training
    alphabet: str | None = None  # dna | protein; needed to score sequences, not to call from logits
    encoder: dict = dataclasses.field(default_factory=dict)
    train_counts: list[float] = dataclasses.field(default_factory=list)
    n_train: int = 0
    task: str = ""
    loss: dict = dataclasses.field(default_factory=dict)
    optim: dict = dataclasses.field(default_factory=dict)
    n_features: int | None = None
    seed: int | None = None
    val_metric: str | None = None
    #: barloc predict clips or refuses long queries as ingest did: {max_length, on_long}
    length_limit: dict | None = None
    extra_heads: list[str] | None = None
    n_reference: int | None = None
    reference_groups: list[str] | None = None
    device: str | None = None
    precision: str | None = None
    world_size: int | None = None
    epochs: int | None = None
    monitor: str | None = None
    best_epoch: int | None = None
    train_seconds: float | None = None
    versions: dict | None = None
    #: the cross-fitting fold models' facts (barloc.training.crossfit), see docs/artifacts.md
    crossfit: dict | None = None
    inputs: dict | None = None

    def __post_init__(self) -> None:
        # The encoder and loss blocks as the schema completes them, so that a model.json written
        # with fewer keys (older barloc, or built in code) rebuilds the same model.
        from barloc.config import block_defaults

        self.encoder = block_defaults("encoder", self.encoder)
        self.loss = block_defaults("loss", self.loss)

    @property
    def heads(self) -> list[str]:
        """The extra sigmoid heads (e.g. ["membrane"]); empty for most models."""
        return list(self.extra_heads or [])

    @property
    def priors(self) -> np.ndarray:
        return np.asarray(self.train_priors, dtype=np.float64)


@dataclasses.dataclass
class Calibration(_Artifact):
    """calibration.json: how raw logits become calibrated probabilities and, for sigmoid heads,
    calls (per-label thresholds and the call ratio)."""

    FILE: ClassVar[str] = "calibration.json"

    temperature: Any  # float, or one per class/label
    kind: str | None = None
    classes: list[str] | None = None
    method: str | None = None
    offset: Any = None  # logit offset undoing the loss's class weighting
    #: true: z / T + offset + bias; absent (files from before cross-fitting): (z + offset) / T + bias
    offset_after_temperature: bool | None = None
    bias: Any = None
    thresholds: list[float] | None = None
    call_ratio: float | None = None
    #: "logits": the call ratio compares the logits' softmax; absent: the calibrated
    #: probabilities (docs/method.md#calls)
    call_ratio_on: str | None = None
    extra_heads: dict | None = None
    #: how the method was chosen: every candidate's cross-validated NLL and calls (barloc.posthoc)
    choice: dict | None = None
    val: dict | None = None
    reliability: dict | None = None

    def params(self) -> dict:
        """The keys :func:`barloc.calibrate.apply` reads."""
        return {
            k: v
            for k, v in (
                ("temperature", self.temperature),
                ("bias", self.bias),
                ("offset", self.offset),
                ("offset_after_temperature", self.offset_after_temperature),
            )
            if v is not None
        }

    @property
    def ratio_on_logits(self) -> bool:
        return self.call_ratio_on == "logits"

    def call_rule(self, n_labels: int) -> tuple[np.ndarray, float]:
        """(thresholds, call_ratio); files from before the ratio call with 0, without thresholds at 0.5."""
        thresholds = self.thresholds if self.thresholds is not None else [0.5] * n_labels
        return np.asarray(thresholds, dtype=np.float64), float(self.call_ratio or 0.0)


#: priors.json ``decision.code``: why the calls are, or are not, prior-corrected
DECISION_CODES = ("applied", "not_requested", "no_query", "check_failed")


def decision_of(priors: Mapping) -> dict:
    """priors.json's ``decision`` ({"code": ..., figures}); for a file written before the code,
    one read from ``applied`` (``not_applied`` when it was refused, ``{"code": None}`` when
    nothing was recorded)."""
    decision = priors.get("decision")
    if isinstance(decision, Mapping) and decision.get("code"):
        return dict(decision)
    if priors.get("method", "none") == "none":
        return {"code": "not_requested"}
    if not priors.get("query_priors"):
        return {"code": "no_query"}
    applied = priors.get("applied")
    return {"code": None} if applied is None else {"code": "applied" if applied else "not_applied"}


@dataclasses.dataclass
class Priors(_Artifact):
    """priors.json: the query set's class priors (given or estimated) and whether the calls use them."""

    FILE: ClassVar[str] = "priors.json"

    kind: str
    classes: list[str]
    train_priors: Any
    method: str
    applied: bool
    #: {"code": one of DECISION_CODES, plus the figures behind it (check_failed: metric, before, after)}
    decision: dict = dataclasses.field(default_factory=dict)
    reason: str = ""  # the decision as a sentence, for logs
    n_query: int = 0
    query_priors: Any = None
    ci_low: Any = None
    ci_high: Any = None
    converged: bool | None = None
    iterations: int | None = None
    n_val: int | None = None
    bbse: dict | None = None
    #: what the correction did to the calls on held-out folds (barloc.posthoc.heldout_shift)
    heldout: dict | None = None
    #: the estimator run on the labelled test split as if it were a query (scored, never decides)
    test: dict | None = None
