"""Every output says where it came from (seed, versions, input checksums), and model files
cannot run code or be silently mismatched with their metadata."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import torch

from barloc.artifacts import ModelMeta, parquet_meta, read_json, write_parquet
from barloc.config import with_defaults
from barloc.errors import InputError
from barloc.modelio import build_model, load_model, save_model
from barloc.steps import ingest

VERSION_KEYS = {"barloc", "python", "torch", "lightning", "numpy", "pandas"}


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- records.parquet and model.json -------------------------------------------------------


def test_records_parquet_records_input_checksums_and_versions(small_runs):
    run, _, cfg = small_runs
    meta = parquet_meta(run / "records.parquet")
    expected = {cfg["reference"]: digest(cfg["reference"]), cfg["query"]: digest(cfg["query"])}
    if cfg["format"] == "bold":  # ocean-basin labels come from the geography table too
        geo = next(p for p in meta["inputs"] if p.endswith("country_basin.tsv"))
        expected[geo] = digest(geo)
    assert meta["inputs"] == expected
    assert set(meta["versions"]) == VERSION_KEYS
    assert meta["task"] in ("localization", "fish_origin")


def test_model_json_records_seed_versions_and_the_same_inputs(small_runs):
    from conftest import SMALL_SEED

    run, _, _ = small_runs
    model = read_json(run / "model.json")
    assert model["seed"] == SMALL_SEED
    assert set(model["versions"]) == VERSION_KEYS
    assert model["inputs"] == parquet_meta(run / "records.parquet")["inputs"]
    assert all(len(sha) == 64 for sha in model["inputs"].values())


def test_labels_sheet_is_checksummed_and_a_changed_byte_shows(tmp_path):
    fasta, sheet = tmp_path / "ref.fasta", tmp_path / "labels.tsv"
    fasta.write_text(">s1\nACGTACGT\n>s2\nACGTTTGA\n")
    sheet.write_text("id\tlabel\ns1\tAtlantic\ns2\tPacific\n")
    cfg = {
        "kind": "multiclass",
        "alphabet": "dna",
        "reference": str(fasta),
        "format": "fasta",
        "labels": str(sheet),
        "min_class_size": 1,
    }

    def ingest_to(name: str) -> dict:
        out = tmp_path / name
        ingest.run(NS(), NS(records=str(out)), NS(task="t", cfg=with_defaults(cfg)))
        return parquet_meta(out)["inputs"]

    before = ingest_to("a.parquet")
    assert before == {str(fasta): digest(fasta), str(sheet): digest(sheet)}
    sheet.write_text("id\tlabel\ns1\tAtlantic\ns2\tAtlantic\n")
    after = ingest_to("b.parquet")
    assert after[str(fasta)] == before[str(fasta)] and after[str(sheet)] != before[str(sheet)]


def test_parquet_metadata_round_trip_keeps_pandas_reading_the_table(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"id": ["a", "b"], "x": [1.5, 2.5]})
    write_parquet(df, tmp_path / "t.parquet", {"inputs": {"f.fa": "0" * 64}, "seed": 3})
    assert parquet_meta(tmp_path / "t.parquet") == {"inputs": {"f.fa": "0" * 64}, "seed": 3}
    assert pd.read_parquet(tmp_path / "t.parquet").equals(df)
    df.to_parquet(tmp_path / "plain.parquet")
    assert parquet_meta(tmp_path / "plain.parquet") == {}


# --- safe model files ----------------------------------------------------------------------


def small_meta(classes=("a", "b", "c")) -> ModelMeta:
    return ModelMeta(
        kind="multiclass",
        classes=list(classes),
        alphabet="dna",
        encoder={"type": "kmer", "k": 2, "hidden": 4},
        loss={},
        train_priors=[1 / len(classes)] * len(classes),
        train_counts=[3] * len(classes),
        n_train=3 * len(classes),
        n_features=16,
    )


@pytest.fixture
def saved(tmp_path):
    meta = small_meta()
    model = build_model(meta)
    save_model(model, meta, tmp_path / "model.ckpt", tmp_path / "model.json")
    return model, tmp_path / "model.ckpt", tmp_path / "model.json"


class Payload:
    """Stands for any object a checkpoint could smuggle in; unpickling it would run code."""

    def __reduce__(self):
        return (Path("/tmp/barloc-pwned").touch, ())


def test_lightning_style_checkpoint_with_an_object_is_refused(saved):
    model, ckpt, meta_path = saved
    # What Lightning's ModelCheckpoint writes: weights nested under state_dict, beside
    # hyper-parameters, loop state and callbacks, all pickled together.
    torch.save(
        {
            "epoch": 3,
            "global_step": 12,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": OrderedDict(model.state_dict()),
            "hyper_parameters": {"encoder": Payload()},
            "callbacks": {},
            "optimizer_states": [],
        },
        ckpt,
    )
    with pytest.raises(InputError, match="refused to load: not a plain weights file"):
        load_model(ckpt, meta_path)
    assert not Path("/tmp/barloc-pwned").exists()


def test_plain_state_dict_round_trips_exactly(saved):
    model, ckpt, meta_path = saved
    loaded, meta = load_model(ckpt, meta_path)
    assert meta.classes == ["a", "b", "c"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_classes_not_matching_the_head_is_a_clear_input_error(saved):
    _, ckpt, meta_path = saved
    meta = json.loads(meta_path.read_text())
    meta["classes"] = ["a", "b"]  # someone edited model.json, or paired it with another ckpt
    meta["train_counts"] = [3, 3]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(InputError) as err:
        load_model(ckpt, meta_path)
    msg = str(err.value)
    assert "model.json" in msg and "2 classes" in msg and "3" in msg
