"""Render the module panels from their Qt Designer files, for the README, without Slicer.

Run from the repository root with PyQt5 installed (not a project dependency: the panels are
pictures for the documentation): ``QT_QPA_PLATFORM=offscreen python
Resources/make_panel_screenshots.py``. Writes ``Resources/Screenshots/<Module>-panel.png``.

Slicer's widgets are drawn as the Qt widgets they extend, so the pictures show the panels'
real layout, labels, sections (expanded or collapsed as a first visit shows them) and
defaults: a ctkCollapsibleButton is a titled frame (its body hidden when it starts collapsed),
a qMRMLNodeComboBox a combo box naming the node types it offers, a qMRMLTableView an empty
table. QCTBoneDensity and HipCTXA get the shared calibration section inserted below their
Input section, as ``BoneQCTLib.widgets.CalibratingModuleWidget`` does in Slicer.
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from PyQt5 import QtWidgets, uic

ROOT = Path(__file__).resolve().parents[1]
SECTION = ROOT / "BoneQCTLib" / "Resources" / "UI" / "CalibrationSection.ui"
MODULES = {"QCTBoneDensity": True, "HipCTXA": True, "FiniteElement": False}
#: Slicer's widget classes -> the Qt class drawn in their place.
STAND_INS = {"ctkCollapsibleButton": "QGroupBox", "qMRMLNodeComboBox": "QComboBox",
             "qMRMLTableView": "QTableView", "ctkPathLineEdit": "QLineEdit",
             "qMRMLWidget": "QWidget"}


def parameter_defaults(module: str) -> dict:
    """Default of every parameter-node field of ``module`` (its own and the shared calibration
    parameters), read from the sources: a literal, or a module-level constant."""
    trees = [ast.parse((ROOT / "BoneQCTLib" / "widgets.py").read_text()),
             ast.parse((ROOT / module / f"{module}.py").read_text())]
    constants = {}
    for tree in trees:
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                try:
                    constants[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    pass
    defaults = {}
    for tree in trees:
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            for item in cls.body:
                if isinstance(item, ast.AnnAssign) and item.value is not None:
                    value = item.value
                    name = getattr(value, "attr", getattr(value, "id", None))
                    defaults[item.target.id] = (constants[name] if name in constants
                                                else ast.literal_eval(value))
    return defaults


def plain_qt_ui(path: Path) -> tuple[str, list[tuple[str, list[str]]], set[str], dict]:
    """The .ui with Slicer's widgets replaced by Qt stand-ins; the node types of each node
    selector; the names of the sections that start collapsed; widget -> parameter bound."""
    tree = ET.parse(path)
    root = tree.getroot()
    selectors, collapsed, bindings = [], set(), {}
    for widget in root.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bindings[widget.get("name")] = prop.findtext("string")
        cls = widget.get("class")
        if cls == "ctkCollapsibleButton":
            for prop in widget.findall("property"):
                if prop.get("name") == "text":
                    prop.set("name", "title")
                elif prop.get("name") == "collapsed":
                    if prop.findtext("bool") == "true":
                        collapsed.add(widget.get("name"))
                    widget.remove(prop)
        if cls == "qMRMLNodeComboBox":
            types = [s.text for p in widget.findall("property") if p.get("name") == "nodeTypes"
                     for s in p.iter("string")]
            selectors.append((widget.get("name"), types))
        if cls in STAND_INS:
            widget.set("class", STAND_INS[cls])
        for prop in list(widget.findall("property")):
            if prop.get("stdset") == "0" or prop.get("name") in (
                    "nodeTypes", "showChildNodeTypes", "noneEnabled", "addEnabled", "removeEnabled",
                    "renameEnabled", "noneDisplay", "filters", "nameFilters", "currentPath",
                    "selectNodeUponCreation", "settingKey", "showHistoryButton",
                    "showHidden", "editEnabled"):
                widget.remove(prop)
    for block in (root.find("customwidgets"), root.find("connections")):
        if block is not None:
            root.remove(block)
    return ET.tostring(root, encoding="unicode"), selectors, collapsed, bindings


def load(path: Path, defaults: dict) -> QtWidgets.QWidget:
    """The panel of a .ui file, showing the parameter defaults a new scene starts with."""
    text, selectors, collapsed, bindings = plain_qt_ui(path)
    plain = Path("/tmp") / f"panel-{path.stem}.ui"
    plain.write_text(text, encoding="utf-8")
    widget = uic.loadUi(str(plain))
    for name, types in selectors:
        combo = widget.findChild(QtWidgets.QComboBox, name)
        combo.addItem("(" + ", ".join(t.replace("vtkMRML", "").replace("Node", "") for t in types) + ")")
    for name, parameter in bindings.items():
        value, child = defaults.get(parameter), widget.findChild(QtWidgets.QWidget, name)
        if value is None or child is None:
            continue
        if isinstance(child, QtWidgets.QComboBox):
            child.addItem(str(value))
        elif isinstance(child, (QtWidgets.QSpinBox, QtWidgets.QDoubleSpinBox)):
            child.setValue(value)
        elif isinstance(child, QtWidgets.QCheckBox):
            child.setChecked(bool(value))
        elif isinstance(child, QtWidgets.QLineEdit):
            child.setText(str(value))
    for name in collapsed:
        box = widget.findChild(QtWidgets.QGroupBox, name)
        for child in box.findChildren(QtWidgets.QWidget):
            child.hide()
        box.setTitle("\u25b8 " + box.title())
        box.setFixedHeight(28)
    return widget


def main() -> int:
    app = QtWidgets.QApplication(sys.argv)
    out = ROOT / "Resources" / "Screenshots"
    for module, calibrating in MODULES.items():
        defaults = parameter_defaults(module)
        panel = load(ROOT / module / "Resources" / "UI" / f"{module}.ui", defaults)
        if calibrating:
            panel.layout().insertWidget(1, load(SECTION, defaults))
        panel.resize(420, panel.sizeHint().height())
        panel.adjustSize()
        path = out / f"{module}-panel.png"
        panel.grab().save(str(path))
        print(path)
    app.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
