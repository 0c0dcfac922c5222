"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Small real CT files, kept beside the repository (../shared/data/real); see their SOURCE.md.
REAL_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder of real CT test files; it must exist (CI lays shared/ beside the clone)."""
    assert REAL_DATA_DIR.is_dir(), f"real CT test data not found at {REAL_DATA_DIR}"
    return REAL_DATA_DIR
