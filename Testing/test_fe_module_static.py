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


def module_source() -> str:
    return (REPO / "FiniteElement" / "FiniteElement.py").read_text()


def test_choices_match_the_core():
    from boneqct.fe.analysis import CRITERIA
    from boneqct.fe.materials import LAWS
    from boneqct.spine.levels import LABEL_SCHEMES, LEVEL_NAMES

    constants = module_constants()
    assert sorted(constants["LAWS"]) == sorted(LAWS)
    assert sorted(constants["CRITERIA"]) == sorted(CRITERIA)
    assert set(constants["LEVELS"]) <= set(LEVEL_NAMES)
    assert constants["LABEL_SCHEMES"] == list(LABEL_SCHEMES)


def test_label_input_and_report_are_wired():
    """The widget passes the labels to the logic, the logic to run_fe; Export calls the logic,
    which writes through the adapters (the core's write_fe_outputs), not by itself."""
    source = module_source()
    assert 'self.ui.exportReportButton.connect("clicked(bool)", self.onExportReportButton)' in source
    assert "labelsNode=p.vertebraLabels, labelScheme=p.labelScheme" in source
    assert "labels_node=labelsNode" in source and "label_scheme=labelScheme" in source
    assert "anonymize=p.anonymizeReport" in source
    assert "export_fe_report(folder, result, metadata, anonymize=anonymize)" in source
    lib = (REPO / "FiniteElement" / "FiniteElementLib" / "fe.py").read_text()
    assert "write_fe_outputs(" in lib
    # the Lib calls the core's one entry point, not the steps below it
    assert "analyze_fe(" in lib and "analyze_vertebra" not in lib
    assert "convert_volume_to_bmd" not in lib and "delineate_body_from_seed" not in lib
    # the label adapter is QCTBoneDensityLib's, not a copy
    assert "def labels_from_node" not in lib
    assert "labels_from_node," in lib


def test_color_fields_match_the_adapters():
    pytest.importorskip("slicer")
    sys.path.insert(0, str(REPO / "QCTBoneDensity"))
    sys.path.insert(0, str(REPO / "FiniteElement"))
    from FiniteElementLib import COLOR_FIELDS

    assert module_constants()["COLOR_FIELDS"] == list(COLOR_FIELDS)
