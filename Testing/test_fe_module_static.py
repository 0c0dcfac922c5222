"""The FiniteElement module's choices match the core (parsed statically: no Slicer needed)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def module_constants() -> dict:
    tree = ast.parse((REPO / "FiniteElement" / "FiniteElement.py").read_text())
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id.isupper()}


def test_choices_match_the_core():
    from boneqct.fe.analysis import CRITERIA
    from boneqct.fe.materials import LAWS
    from boneqct.spine.levels import LEVEL_NAMES

    constants = module_constants()
    assert sorted(constants["LAWS"]) == sorted(LAWS)
    assert sorted(constants["CRITERIA"]) == sorted(CRITERIA)
    assert set(constants["LEVELS"]) <= set(LEVEL_NAMES)


def test_color_fields_match_the_adapters():
    pytest.importorskip("slicer")
    sys.path.insert(0, str(REPO / "QCTBoneDensity"))
    sys.path.insert(0, str(REPO / "FiniteElement"))
    from FiniteElementLib import COLOR_FIELDS

    assert module_constants()["COLOR_FIELDS"] == list(COLOR_FIELDS)
