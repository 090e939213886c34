"""Plumbing shared by every step: atomic writes, logging, and turning user errors into exit 2."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from barloc.errors import InputError

log = logging.getLogger("barloc")


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


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any threads.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_json(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=True, default=_jsonable) + "\n")


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x)}")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def input_checksums(paths: Iterable[str | Path | None]) -> dict[str, str]:
    """path (as given) -> sha256 of its bytes, for every input file that is set."""
    return {str(p): sha256(p) for p in paths if p}


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


def process_rank() -> int:
    """This process's global rank in multi-process (DDP) training, from the variables its
    launcher set, read in Lightning's order; 0 for the process the user or Snakemake started."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if os.environ.get(key):
            return int(os.environ[key])
    return 0


def setup_logging(logfile: str | Path | None = None, debug: bool = False) -> None:
    """Log to stderr and, under Snakemake, to the rule's log file.

    DDP workers (rank > 0, started by Lightning rerunning the step's script) log to stderr
    only, with their rank: opening the rule's log for writing would truncate rank 0's."""
    rank = process_rank()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile and rank == 0:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logfile, mode="w"))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s" + (f" [rank {rank}]" if rank else "") + ": %(message)s",
        handlers=handlers,
        force=True,
    )


def _names(files: Any) -> str:
    """File names of a Snakemake Namedlist (or of a plain namespace, as tests pass)."""
    items = files if isinstance(files, (list, tuple)) else vars(files).values()
    return ", ".join(map(str, items))


def run_step(smk: Any, step: Callable[..., None]) -> None:
    """Entry point for workflow/scripts: log to the rule's log, call the step with the rule's
    inputs, outputs, params and threads, and exit 2 with one line on a user mistake."""
    setup_logging(smk.log[0] if smk.log else None)
    import torch

    torch.set_num_threads(max(1, int(smk.threads)))
    name = getattr(smk, "rule", step.__module__)
    # Every log says what ran on what, even for steps that have nothing else to report.
    log.info("%s: start (threads %s) inputs %s", name, smk.threads, _names(smk.input))
    t0 = time.perf_counter()
    try:
        step(inputs=smk.input, outputs=smk.output, params=smk.params, threads=smk.threads)
    except InputError as err:
        log.error("%s", err)
        print(f"barloc: error: {err}", file=sys.stderr)
        sys.exit(2)
    if process_rank() == 0:  # DDP workers write nothing
        log.info("%s: wrote %s in %.1f s", name, _names(smk.output), time.perf_counter() - t0)


def versions() -> dict[str, str]:
    import lightning
    import numpy
    import pandas
    import torch

    import barloc

    return {
        "barloc": barloc.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
    }
