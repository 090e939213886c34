"""Shared fixture paths for the reader tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
BUNDLED_BOLD = REPO / "resources" / "barcodes" / "tuna_bold_v4.tsv"
DEEPLOC_FULL = REPO.parent / "shared" / "data" / "protein" / "deeploc2_swissprot_train_val.csv.gz"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data: small real-data fixtures (see its README.md)."""
    return DATA


@pytest.fixture(scope="session")
def bundled_bold() -> Path:
    """The tuna BOLD v4 export shipped in resources/ (cp1252/UTF-8 mix, 1,665 records)."""
    return BUNDLED_BOLD
