"""Plumbing shared by every step: logging, checksums, and turning user errors into exit 2
(files between steps are written by barloc.artifacts)."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from barloc.errors import InputError

log = logging.getLogger("barloc")


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def input_checksums(paths: Iterable[str | Path | None]) -> dict[str, str]:
    """path (as given) -> sha256 of its bytes, for every input file that is set."""
    return {str(p): sha256(p) for p in paths if p}


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
