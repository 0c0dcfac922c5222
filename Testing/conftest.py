"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Small real CT files and crops kept in the repository (made by Data/make_real_crops.py from
#: the full files; see each folder's SOURCE.md), so a fresh clone tests on its own.
REAL_DATA_DIR = Path(__file__).resolve().parent / "Data"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder of the real CT test files."""
    assert REAL_DATA_DIR.is_dir(), f"real CT test data not found at {REAL_DATA_DIR}"
    return REAL_DATA_DIR
