"""Shared pytest fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

#: The repository root holds BoneQCTLib, the Slicer support package the modules share; Slicer
#: finds it in its scripted-modules folder, the tests find it here.
REPO_DIR = Path(__file__).resolve().parents[1]
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

#: Small real CT files and crops kept in the repository (made by Data/make_real_crops.py from
#: the full files; see each folder's SOURCE.md), so a fresh clone tests on its own.
REAL_DATA_DIR = Path(__file__).resolve().parent / "Data"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder of the real CT test files."""
    assert REAL_DATA_DIR.is_dir(), f"real CT test data not found at {REAL_DATA_DIR}"
    return REAL_DATA_DIR
