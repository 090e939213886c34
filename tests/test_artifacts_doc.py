"""docs/artifacts.md documents every field of the typed artifacts in barloc.artifacts."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from barloc import artifacts

DOC = (Path(__file__).resolve().parents[1] / "docs/artifacts.md").read_text()


def section(name: str) -> str:
    m = re.search(rf"^## `{re.escape(name)}`.*?(?=^## |\Z)", DOC, flags=re.S | re.M)
    assert m, f"docs/artifacts.md has no section for {name}"
    return m.group(0)


@pytest.mark.parametrize("cls", [artifacts.ModelMeta, artifacts.Calibration, artifacts.Priors])
def test_every_field_is_documented(cls):
    text = section(cls.FILE) if cls.FILE != "model.json" else section("model.ckpt` + `model.json")
    missing = [f.name for f in dataclasses.fields(cls) if f"`{f.name}`" not in text and f'"{f.name}"' not in text]
    assert not missing, f"docs/artifacts.md ({cls.FILE}) does not describe {missing}"


def test_decision_codes_are_documented():
    text = section("priors.json")
    assert all(f'"{code}"' in text for code in artifacts.DECISION_CODES)


def test_round_trip_keeps_every_key(tmp_path):
    meta = artifacts.ModelMeta(
        kind="multiclass",
        classes=["a", "b"],
        alphabet="dna",
        encoder={"type": "kmer"},
        train_priors=[0.4, 0.6],
        n_train=10,
        monitor=None,
    )
    meta.save(tmp_path / "model.json")
    back = artifacts.ModelMeta.load(tmp_path / "model.json")
    assert back == meta and "monitor" not in (tmp_path / "model.json").read_text()


def test_missing_key_is_an_input_error(tmp_path):
    (tmp_path / "calibration.json").write_text('{"kind": "multiclass"}')
    with pytest.raises(artifacts.InputError, match="calibration.json lacks temperature"):
        artifacts.Calibration.load(tmp_path / "calibration.json")
    with pytest.raises(artifacts.InputError, match="not found"):
        artifacts.Priors.load(tmp_path / "priors.json")
