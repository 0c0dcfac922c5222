"""The FiniteElement module's choices match the core (parsed statically: no Slicer needed)."""

from __future__ import annotations

import ast
import dataclasses
import re
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


def option_parameter_names(options_class) -> set[str]:
    """The fields of an options dataclass, as they are and in camelCase (``elementMm``)."""
    names = {f.name for f in dataclasses.fields(options_class)}
    return names | {re.sub(r"_(\w)", lambda m: m.group(1).upper(), name) for name in names}


def test_choices_match_the_core():
    from boneqct.fe.analysis import CRITERIA
    from boneqct.fe.materials import LAWS
    from boneqct.spine.levels import LABEL_SCHEMES, LEVEL_NAMES

    constants = module_constants()
    assert sorted(constants["LAWS"]) == sorted(LAWS)
    assert sorted(constants["CRITERIA"]) == sorted(CRITERIA)
    assert set(constants["LEVELS"]) <= set(LEVEL_NAMES)
    assert constants["LABEL_SCHEMES"] == list(LABEL_SCHEMES)


def test_label_input_options_and_report_are_wired():
    """The widget builds FEOptions from the parameter node and passes the labels to the logic,
    the logic to run_fe; Export calls the logic, which writes from the results table through
    the adapters (the core's write_fe_outputs), not by itself."""
    source = module_source()
    assert '"exportReportButton": self.onExportReportButton' in source  # loadModuleUI's slots
    assert "feOptionsFromParameterNode(p)" in source and "FEOptions(" in source
    assert "labelsNode=p.vertebraLabels" in source and "labels_node=labelsNode" in source
    assert "anonymize=p.anonymizeReport" in source
    assert "export_fe_report(folder, tableNode, anonymize=anonymize)" in source
    assert "fe.pdf" not in source
    lib = (REPO / "FiniteElement" / "FiniteElementLib" / "fe.py").read_text()
    assert "write_fe_outputs(" in lib and "FEResult.from_dict(" in lib
    # the Lib calls the core's one entry point, not the steps below it
    assert "analyze_fe(" in lib and "analyze_vertebra" not in lib
    assert "convert_volume_to_bmd" not in lib and "delineate_body_from_seed" not in lib
    # the label adapter is BoneQCTLib's, not a copy
    assert "def labels_from_node" not in lib
    assert "labels_from_node," in lib


def test_logic_takes_options_instead_of_restating_them():
    """``FiniteElementLogic.run`` takes an FEOptions: no parameter restates an option field."""
    from boneqct.fe.options import FEOptions

    tree = ast.parse(module_source())
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "FiniteElementLogic")
    run = next(n for n in logic.body if isinstance(n, ast.FunctionDef) and n.name == "run")
    parameters = {a.arg for a in (*run.args.args, *run.args.kwonlyargs)}
    assert "options" in parameters
    assert not parameters & option_parameter_names(FEOptions)


def test_element_spin_box_range_is_the_options_range():
    import xml.etree.ElementTree as ET

    from boneqct.fe.options import FEOptions

    element = next(f for f in dataclasses.fields(FEOptions) if f.name == "element_mm")
    ui = ET.parse(REPO / "FiniteElement" / "Resources" / "UI" / "FiniteElement.ui").getroot()
    box = next(w for w in ui.iter("widget") if w.get("name") == "elementSpinBox")
    limits = {prop.get("name"): float(prop.findtext("double")) for prop in box.findall("property")
              if prop.get("name") in ("minimum", "maximum")}
    assert limits == {"minimum": element.metadata["low"], "maximum": element.metadata["high"]}


def test_color_fields_match_the_adapters():
    pytest.importorskip("slicer")
    sys.path.insert(0, str(REPO / "QCTBoneDensity"))
    sys.path.insert(0, str(REPO / "FiniteElement"))
    from FiniteElementLib.fe import COLOR_FIELDS

    assert module_constants()["COLOR_FIELDS"] == list(COLOR_FIELDS)
