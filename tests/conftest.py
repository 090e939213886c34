"""Shared fixture paths for the reader tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
BUNDLED_BOLD = REPO / "resources" / "barcodes" / "tuna_bold_v4.tsv"
DEEPLOC_FULL = REPO.parent / "shared" / "data" / "protein" / "deeploc2_swissprot_train_val.csv.gz"


def wait_for_epochs(last: Path, epochs: int, proc: subprocess.Popen, timeout: float = 600) -> int:
    """How many epochs the Lightning checkpoint ``last`` has finished, polled while ``proc``
    runs until it has at least ``epochs`` (fewer if ``proc`` ends or time runs out); for the
    tests that kill a training run part-way."""
    from barloc.training.resume import checkpoint_epochs

    done, deadline = 0, time.monotonic() + timeout
    while done < epochs and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            done = checkpoint_epochs(last) if last.exists() else 0
        except Exception:  # being written
            continue
    return done


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data: small real-data fixtures (see its README.md)."""
    return DATA


@pytest.fixture(scope="session")
def bundled_bold() -> Path:
    """The tuna BOLD v4 export shipped in resources/ (cp1252/UTF-8 mix, 1,665 records)."""
    return BUNDLED_BOLD


# --- a small real pipeline (ingest -> split -> train -> predict), for reproducibility and
# provenance tests ------------------------------------------------------------------------

DEEPLOC_DEMO = REPO / "resources" / "protein" / "deeploc2_demo.csv"
PROTEIN_QUERY = REPO / "resources" / "protein" / "query.fasta"
SMALL_SEED = 11


def small_localization_inputs(where: Path) -> dict:
    """300 real DeepLoc proteins (60 from each homology partition) and 40 real query proteins,
    with a tiny CNN config that trains in seconds on a CPU."""
    import pandas as pd

    where.mkdir(parents=True, exist_ok=True)
    ref = where / "deeploc_300.csv"
    demo = pd.read_csv(DEEPLOC_DEMO, dtype=str, keep_default_na=False)
    demo.groupby("Partition", sort=True).head(60).to_csv(ref, index=False)
    query = where / "query_40.fasta"
    records = PROTEIN_QUERY.read_text().split(">")[1:41]
    query.write_text("".join(">" + r for r in records))
    return {
        "kind": "multilabel",
        "alphabet": "protein",
        "reference": str(ref),
        "format": "deeploc",
        "query": str(query),
        "query_format": "fasta",
        "max_length": 600,
        "split": {"method": "given", "test_groups": ["4"]},
        "encoder": {"type": "cnn", "embed_dim": 8, "channels": 8, "kernel_sizes": [3, 9], "max_len": 300},
        "loss": {"type": "bce", "pos_weight": True},
        "train": {"max_epochs": 3, "batch_size": 32, "lr": 0.003, "patience": 2},
    }


GEO_TABLE = REPO / "resources" / "geo" / "country_basin.tsv"
MARKET_QUERY = REPO / "resources" / "barcodes" / "market_samples.fasta"


def small_fish_origin_inputs(where: Path) -> dict:
    """The bundled tuna BOLD COI records labelled by ocean basin, the real market samples as
    the query, and a tiny k-mer model."""
    return {
        "kind": "multiclass",
        "alphabet": "dna",
        "reference": str(BUNDLED_BOLD),
        "format": "bold",
        "markers": ["COI-5P"],
        "label": "ocean_basin",
        "min_class_size": 20,
        "query": str(MARKET_QUERY),
        "query_format": "fasta",
        "max_length": 700,
        "split": {"method": "grouped", "n_folds": 5, "test_fold": 0},
        "encoder": {"type": "kmer", "k": 4, "hidden": 16, "dropout": 0.1},
        "loss": {"type": "cross_entropy", "class_weights": "inverse"},
        "train": {"max_epochs": 3, "batch_size": 64, "lr": 0.003, "patience": 2},
    }


SMALL_TASKS = {"localization": small_localization_inputs, "fish_origin": small_fish_origin_inputs}


STEP_FILES = (
    "records.parquet",
    "splits.tsv",
    "model.ckpt",
    "model.json",
    "history.tsv",
    "oof_logits.parquet",
    "logits.parquet",
    "calibration.json",
    "priors.json",
    "calls.tsv",
    "metrics.json",
)


def run_post_hoc(out: Path, cfg: dict, task: str, seed: int) -> None:
    """Run the calibrate, prior_shift and evaluate steps' ``run()`` on the model and logits in
    ``out``, each given its rule's share of the task block ``cfg`` (defaults filled in)."""
    from types import SimpleNamespace as NS

    from barloc.config import rule_config, with_defaults
    from barloc.steps import calibrate, evaluate, prior_shift

    full = with_defaults(cfg)
    f = {name: str(out / name) for name in STEP_FILES}

    def params(rule: str) -> NS:
        return NS(task=task, cfg=rule_config(full, rule), seed=seed)

    logits, meta, calibration, priors = f["logits.parquet"], f["model.json"], f["calibration.json"], f["priors.json"]
    calibrate.run(NS(meta=meta, logits=logits), NS(calibration=calibration), params("calibrate"))
    prior_shift.run(
        NS(meta=meta, calibration=calibration, logits=logits),
        NS(priors=priors, calls=f["calls.tsv"]),
        params("prior_shift"),
    )
    evaluate.run(
        NS(meta=meta, calibration=calibration, logits=logits, priors=priors),
        NS(metrics=f["metrics.json"]),
        params("evaluate"),
    )


def run_small_pipeline(
    cfg: dict,
    out: Path,
    seed: int = SMALL_SEED,
    task: str | None = None,
    geo_table: Path | None = GEO_TABLE,
    to_evaluate: bool = False,
) -> Path:
    """Run the ingest, split, train and predict steps' ``run()`` on ``cfg`` into ``out`` (the
    files named in STEP_FILES); with ``to_evaluate`` also calibrate, prior_shift and evaluate."""
    from types import SimpleNamespace as NS

    import torch

    from barloc.config import rule_config, trainer_defaults, with_defaults
    from barloc.steps import ingest, predict, split, train

    files = {name: str(out / name) for name in STEP_FILES}
    task = task or ("localization" if cfg["kind"] == "multilabel" else "fish_origin")
    full = with_defaults(cfg)
    trainer = trainer_defaults({"accelerator": "cpu", "devices": 1, "precision": "32-true"})

    def params(rule: str) -> NS:  # as the workflow's rules pass them: each its own keys
        return NS(task=task, cfg=rule_config(full, rule), seed=seed, trainer=trainer)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as run_step does with the rule's threads: 1
    try:
        ingest.run(
            NS(geo_table=str(geo_table) if geo_table else None), NS(records=files["records.parquet"]), params("ingest")
        )
        split.run(NS(records=files["records.parquet"]), NS(splits=files["splits.tsv"]), params("split"))
        train.run(
            NS(records=files["records.parquet"], splits=files["splits.tsv"]),
            NS(
                model=files["model.ckpt"],
                meta=files["model.json"],
                history=files["history.tsv"],
                oof_logits=files["oof_logits.parquet"],
            ),
            params("train"),
        )
        predict.run(
            NS(
                records=files["records.parquet"],
                splits=files["splits.tsv"],
                model=files["model.ckpt"],
                meta=files["model.json"],
                oof_logits=files["oof_logits.parquet"],
            ),
            NS(logits=files["logits.parquet"]),
            params("predict"),
        )
        if to_evaluate:
            run_post_hoc(out, full, task, seed)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def _small_pipeline_pairs(tmp_path_factory) -> dict[str, tuple[Path, Path, dict]]:
    base = tmp_path_factory.mktemp("small_pipeline")
    cfgs = {task: make(base / task / "inputs") for task, make in SMALL_TASKS.items()}
    firsts = {task: run_small_pipeline(cfg, base / task / "run1") for task, cfg in cfgs.items()}
    # The second runs are in a fresh interpreter with another string-hash seed, so set
    # ordering, import-time state or anything left over in this process cannot make the
    # runs agree by accident.
    jobs = [[cfg, str(base / task / "run2")] for task, cfg in cfgs.items()]
    code = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import conftest\n"
        "for cfg, out in json.loads(sys.argv[2]): conftest.run_small_pipeline(cfg, Path(out))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), json.dumps(jobs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {task: (firsts[task], base / task / "run2", cfgs[task]) for task in cfgs}


@pytest.fixture(params=list(SMALL_TASKS))
def small_runs(request, _small_pipeline_pairs) -> tuple[Path, Path, dict]:
    """Two runs of a small pipeline (each task in turn) with the same seed on the same input
    files, one in this process and one in another: (first run's dir, second run's dir, config)."""
    return _small_pipeline_pairs[request.param]


@pytest.fixture(scope="session")
def workflow_run(tmp_path_factory) -> Path:
    """One end-to-end run of the workflow (tests/integration/config.yaml) shared by every test
    that reads its outputs: it is the slowest thing in the suite."""
    from test_workflow import make_workdir, snakemake

    wd = make_workdir(tmp_path_factory.mktemp("workflow_run"))
    res = snakemake(wd)
    assert res.returncode == 0, res.stderr[-4000:]
    return wd
