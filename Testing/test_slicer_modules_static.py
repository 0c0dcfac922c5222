"""Static checks of the Slicer side of the extension (the parts that run only inside Slicer).

These parse the real files: module scripts (ast), Qt Designer .ui files (XML), CMakeLists,
icons (PNG header). They need neither Slicer nor slicer-core.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = ("QCTBoneDensity", "HipCTXA", "FiniteElement")
#: The widget layer shared by the three module widgets (lifecycle, guarded actions, calibration).
WIDGET_LIFECYCLE = REPO / "BoneQCTLib" / "widgets.py"
#: The calibration section shared by QCTBoneDensity and HipCTXA.
CALIBRATION_SECTION = REPO / "BoneQCTLib" / "Resources" / "UI" / "CalibrationSection.ui"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- helpers

def module_script(module: str) -> Path:
    return REPO / module / f"{module}.py"


def module_ui(module: str) -> Path:
    return REPO / module / "Resources" / "UI" / f"{module}.ui"


def parse_python(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def module_ui_files(module: str) -> list[Path]:
    """The module's .ui and the shared sections its widget inserts (``sharedSections``)."""
    shared = "CalibratingModuleWidget" in module_script(module).read_text()
    return [module_ui(module), *([CALIBRATION_SECTION] if shared else [])]


def ui_widget_names(ui_path: Path) -> set[str]:
    """objectNames of every widget (and layout/spacer) declared in a .ui file."""
    root = ET.parse(ui_path).getroot()
    return {el.get("name") for el in root.iter() if el.tag in ("widget", "layout", "spacer")}


def ui_parameter_bindings(ui_path: Path) -> dict[str, str]:
    """widget objectName -> value of its SlicerParameterName dynamic property."""
    bindings = {}
    for widget in ET.parse(ui_path).getroot().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bindings[widget.get("name")] = prop.findtext("string")
    return bindings


def name_of(node: ast.expr) -> str | None:
    """``X`` of a name ``X`` or an attribute ``module.X``."""
    return node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)


def class_fields(node: ast.ClassDef) -> dict[str, ast.AnnAssign]:
    return {item.target.id: item for item in node.body
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}


def parameter_wrapper_fields(tree: ast.Module) -> dict[str, dict[str, ast.AnnAssign]]:
    """class name -> {field: annotation node} for every @parameterNodeWrapper class, with the
    fields it inherits from the shared classes of BoneQCTLib/widgets.py (the wrapper reads
    inherited annotations)."""
    shared = {n.name: class_fields(n) for n in parse_python(WIDGET_LIFECYCLE).body
              if isinstance(n, ast.ClassDef)}
    wrappers = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names = {d.id if isinstance(d, ast.Name) else getattr(d, "attr", None) for d in node.decorator_list}
            if "parameterNodeWrapper" in names:
                fields = {}
                for base in node.bases:
                    fields.update(shared.get(name_of(base), {}))
                wrappers[node.name] = {**fields, **class_fields(node)}
    return wrappers


def shared_and_module_constants(module: str) -> dict[str, ast.expr]:
    """Module-level constants of BoneQCTLib/widgets.py and of the module script."""
    return {**module_constants(parse_python(WIDGET_LIFECYCLE)),
            **module_constants(parse_python(module_script(module)))}


def slot_connections(module: str) -> dict[str, str]:
    """button objectName -> slot method name, from the ``loadModuleUI`` call of ``setup``."""
    tree = parse_python(module_script(module))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "attr", "") == "loadModuleUI")
    slots = next(a for a in call.args if isinstance(a, ast.Dict))
    connected = {ast.literal_eval(k): v.attr for k, v in zip(slots.keys, slots.values, strict=True)}
    if CALIBRATION_SECTION in module_ui_files(module):  # connected by CalibratingModuleWidget
        connected["calibrateButton"] = "onCalibrateButton"
    return connected


def imported_modules(tree: ast.Module) -> set[str]:
    """Top-level package names imported anywhere in a module (including inside functions)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _strip_cmake_comment(line: str) -> str:
    """A CMake line without its ``#`` comment (a ``#`` inside a quoted string is kept)."""
    quoted = False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == "#" and not quoted:
            return line[:index]
    return line


def cmake_text(path: Path) -> str:
    """CMake source without comments."""
    return "\n".join(_strip_cmake_comment(line) for line in path.read_text().splitlines())


def cmake_sets(text: str) -> dict[str, list[str]]:
    """Variables assigned with set(NAME values...)."""
    return {m.group(1): m.group(2).split() for m in re.finditer(r"\bset\(\s*(\w+)\s*([^)]*)\)", text)}


def cmake_calls(text: str, command: str) -> list[str]:
    """Argument strings of every call to ``command`` (case-insensitive)."""
    return [m.group(1).strip() for m in re.finditer(rf"\b{command}\(([^)]*)\)", text, re.IGNORECASE)]


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), value)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG file"
    assert data[12:16] == b"IHDR", f"{path} has no PNG header chunk"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# ----------------------------------------------------------------------------- module scripts

@pytest.mark.parametrize("module", MODULES)
def test_module_python_files_compile(module):
    paths = sorted((REPO / module).rglob("*.py"))
    assert module_script(module) in paths
    for path in paths:
        compile(path.read_text(encoding="utf-8"), str(path), "exec")


@pytest.mark.parametrize("module", MODULES)
def test_module_follows_the_scripted_module_template(module):
    tree = parse_python(module_script(module))
    bases = {node.name: {getattr(b, "id", getattr(b, "attr", None)) for b in node.bases}
             for node in tree.body if isinstance(node, ast.ClassDef)}
    # the template's base classes, directly or through BoneQCTLib's shared bases
    shared = {node.name: {getattr(b, "id", getattr(b, "attr", None)) for b in node.bases}
              for node in parse_python(WIDGET_LIFECYCLE).body if isinstance(node, ast.ClassDef)}

    def ancestors(names: set) -> set:
        found = set(names)
        for name in names:
            found |= ancestors(shared.get(name, set()))
        return found

    assert "ScriptedLoadableModule" in bases.get(module, set())
    assert {"ScriptedLoadableModuleWidget", "VTKObservationMixin", "ParameterNodeWidgetMixin"} <= \
        ancestors(bases.get(f"{module}Widget", set()))
    assert "ScriptedLoadableModuleLogic" in bases.get(f"{module}Logic", set())
    assert "ScriptedLoadableModuleTest" in ancestors(bases.get(f"{module}Test", set()))
    assert f"{module}ParameterNode" in parameter_wrapper_fields(tree)
    source = module_script(module).read_text()
    # the widget loads its own .ui through the shared lifecycle mixin, which resolves it in
    # the module's Resources/UI folder
    assert f'self.loadModuleUI("{module}.ui", {module}Logic(), {{' in source
    assert 'self.resourcePath(f"UI/{uiFileName}")' in WIDGET_LIFECYCLE.read_text()
    assert "from __main__ import" not in source


def test_shared_widget_lifecycle_loads_nothing_heavy_and_defines_the_template_methods():
    tree = parse_python(WIDGET_LIFECYCLE)
    imported = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in tree.body
                 if isinstance(node, ast.ImportFrom) and node.module}
    # module files import it at load time: the standard library, Slicer, Qt and the guard
    # only (the core's progress is imported inside moduleAction, after the guard)
    assert imported <= {"functools", "importlib", "logging", "pathlib", "typing", "slicer", "qt", "vtk",
                   "BoneQCTLib"}
    mixin = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ParameterNodeWidgetMixin")
    methods = {n.name for n in mixin.body if isinstance(n, ast.FunctionDef)}
    assert {"loadModuleUI", "cleanup", "enter", "exit", "onSceneStartClose", "onSceneEndClose",
            "initializeParameterNode", "setParameterNode"} <= methods
    # the guarded action runs the dependency guard before the slot
    action = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "moduleAction")
    assert "ensure_python_packages" in _calls(action)


@pytest.mark.parametrize("module", MODULES)
def test_every_ui_attribute_used_exists_in_the_ui_file(module):
    used = set(re.findall(r"\bself\.ui\.(\w+)", module_script(module).read_text()))
    assert used or module != "QCTBoneDensity"
    names = set().union(*(ui_widget_names(path) for path in module_ui_files(module)))
    missing = used - names
    assert not missing, f"{module}.py uses self.ui.{sorted(missing)} not defined in {module}.ui"
    if CALIBRATION_SECTION in module_ui_files(module):
        shared = set(re.findall(r"\bself\.ui\.(\w+)", WIDGET_LIFECYCLE.read_text()))
        assert shared and shared <= names, sorted(shared - names)


@pytest.mark.parametrize("module", MODULES)
def test_ui_parameter_names_match_parameter_node_fields(module):
    fields = parameter_wrapper_fields(parse_python(module_script(module)))[f"{module}ParameterNode"]
    bindings = {}
    for path in module_ui_files(module):
        bindings.update(ui_parameter_bindings(path))
    assert bindings, f"{module}.ui binds no widget to the parameter node"
    unknown = {w: p for w, p in bindings.items() if p not in fields}
    assert not unknown, f"{module}.ui binds widgets to parameters that do not exist: {unknown}"
    assert len(set(bindings.values())) == len(bindings), "a parameter is bound to two widgets"
    unbound = set(fields) - set(bindings.values())
    assert not unbound, f"{module}ParameterNode fields without a widget in the .ui: {sorted(unbound)}"


@pytest.mark.parametrize("module", [*MODULES, "CalibrationSection"])
def test_ui_is_a_qt_designer_file_for_the_module(module):
    root = ET.parse(CALIBRATION_SECTION if module == "CalibrationSection" else module_ui(module)).getroot()
    assert root.tag == "ui" and root.get("version") == "4.0"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == module
    classes = {el.get("class") for el in root.iter("widget")}
    assert "ctkCollapsibleButton" in classes and "qMRMLNodeComboBox" in classes
    declared = {cw.findtext("class") for cw in root.iter("customwidget")}
    custom = {c for c in classes if not c.startswith("Q")}
    assert custom <= declared, f"custom widgets not declared in <customwidgets>: {custom - declared}"
    names = [el.get("name") for el in root.iter("widget")]
    assert len(names) == len(set(names)), "duplicate widget objectName"
    # every MRML widget gets the scene from the top-level widget
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml_widgets = {el.get("name") for el in root.iter("widget")
                    if el.get("class", "").startswith("qMRML") and el is not top}
    assert mrml_widgets <= receivers, f"MRML widgets without the scene: {mrml_widgets - receivers}"


def test_qct_module_choices_match_the_core():
    from boneqct.calibration.definitions import MATERIALS, bundled_phantom_names

    tree = parse_python(module_script("QCTBoneDensity"))
    constants = shared_and_module_constants("QCTBoneDensity")
    assert ast.literal_eval(constants["MATERIALS"]) == list(MATERIALS)
    assert {"mindways-model3", "qrm-bdc-3", "qrm-bdc-6", "b-mas-200"} <= set(bundled_phantom_names())
    fields = parameter_wrapper_fields(tree)["QCTBoneDensityParameterNode"]
    assert ast.literal_eval(fields["phantomName"].value) in bundled_phantom_names()
    assert ast.literal_eval(fields["manualMaterial"].value) in MATERIALS


# ----------------------------------------------------------------------------- layering

@pytest.mark.parametrize("module", MODULES)
def test_lib_adapters_do_not_import_qt_or_ctk(module):
    lib = REPO / module / f"{module}Lib"
    paths = sorted(lib.glob("*.py"))
    assert lib / "__init__.py" in paths
    for path in paths:
        forbidden = imported_modules(parse_python(path)) & {"qt", "ctk", "__main__"}
        assert not forbidden, f"{path.relative_to(REPO)} imports {sorted(forbidden)}"


def test_core_package_never_imports_slicer_qt_or_ctk():
    paths = sorted((REPO / "boneqct").rglob("*.py"))
    assert len(paths) > 3
    for path in paths:
        forbidden = imported_modules(parse_python(path)) & {"slicer", "qt", "ctk", "__main__"}
        assert not forbidden, f"{path.relative_to(REPO)} imports {sorted(forbidden)}"


# ----------------------------------------------------------------------------- CMake

@pytest.mark.parametrize("module", MODULES)
def test_module_cmakelists_lists_exactly_the_module_files(module):
    folder = REPO / module
    text = cmake_text(folder / "CMakeLists.txt")
    call = cmake_calls(text, "boneqct_add_scripted_module")
    assert len(call) == 1 and call[0].split()[0] == module
    scripts = [f"{module}.py", *call[0].split()[1:]]
    resources = [f"Resources/UI/{module}.ui", f"Resources/Icons/{module}.png"]
    for listed in scripts + resources:
        assert (folder / listed).is_file(), f"{module}/CMakeLists.txt lists missing file {listed}"
    shipped = {p.relative_to(folder).as_posix() for p in folder.rglob("*.py")
               if "Testing" not in p.relative_to(folder).parts and "__pycache__" not in p.parts}
    assert shipped == set(scripts), f"scripts not listed: {shipped - set(scripts)}"
    # the recipe (top-level CMakeLists) is Slicer's template: scripts, resources, generic tests,
    # the self-test as a ctest, and the Testing folder
    recipe = cmake_text(REPO / "CMakeLists.txt")
    body = recipe[recipe.index("function(boneqct_add_scripted_module"):]
    body = body[:body.index("endfunction()")]
    build = cmake_calls(body, "slicerMacroBuildScriptedModule")
    assert build and "WITH_GENERIC_TESTS" in build[0]
    sets = cmake_sets(body)
    assert sets["MODULE_PYTHON_RESOURCES"] == ["Resources/Icons/${MODULE_NAME}.png",
                                               "Resources/UI/${MODULE_NAME}.ui"]
    assert [c.split()[-1] for c in cmake_calls(body, "slicer_add_python_unittest")] == ["${MODULE_NAME}.py"]
    assert cmake_calls(body, "add_subdirectory") == ["Testing"]
    for sub in ("Testing", "Testing/Python"):
        assert (folder / sub / "CMakeLists.txt").is_file()
    assert cmake_calls(cmake_text(folder / "Testing" / "CMakeLists.txt"), "add_subdirectory") == ["Python"]
    for call in cmake_calls(cmake_text(folder / "Testing" / "Python" / "CMakeLists.txt"),
                            "slicer_add_python_unittest"):
        assert (folder / "Testing" / "Python" / call.split()[-1]).is_file()


def test_top_level_cmakelists_is_a_slicer_extension():
    text = cmake_text(REPO / "CMakeLists.txt")
    assert re.search(r"cmake_minimum_required\(", text)
    assert re.search(r"\bproject\(\s*BoneQCT\s*\)", text)
    sets = {m.group(1): m.group(2) for m in re.finditer(r'set\((EXTENSION_\w+)\s+"([^"]*)"', text)}
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS",
                "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS",
                "EXTENSION_DEPENDS"):
        assert sets.get(key), f"{key} is not set"
    assert sets["EXTENSION_CATEGORY"] == "Quantification"
    assert sets["EXTENSION_DEPENDS"] == "NA"
    assert sets["EXTENSION_ICONURL"].endswith("Resources/Icons/BoneQCT.png")
    assert "find_package(Slicer REQUIRED)" in text
    assert "include(${Slicer_USE_FILE})" in text
    assert "include(${Slicer_EXTENSION_GENERATE_CONFIG})" in text
    assert "include(${Slicer_EXTENSION_CPACK})" in text
    outside_recipes = re.sub(r"function\(.*?endfunction\(\)", "", text, flags=re.S)
    subdirs = cmake_calls(outside_recipes, "add_subdirectory")
    assert subdirs == ["boneqct", "BoneQCTLib", *MODULES]
    for sub in subdirs:
        assert (REPO / sub / "CMakeLists.txt").is_file(), f"add_subdirectory({sub}) has no CMakeLists.txt"


def assert_python_package_recipe():
    """The top-level recipe installs a package next to the scripted modules, as DICOMLib."""
    text = cmake_text(REPO / "CMakeLists.txt")
    body = text[text.index("function(boneqct_add_python_package"):]
    call = cmake_calls(body[:body.index("endfunction()")], "ctkMacroCompilePythonScript")
    assert call and "Slicer_QTSCRIPTEDMODULES_LIB_DIR" in call[0]
    assert "Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR" in call[0] and "NO_INSTALL_SUBDIR" in call[0]


def test_core_cmakelists_installs_the_package_files():
    text = cmake_text(REPO / "boneqct" / "CMakeLists.txt")
    call = cmake_calls(text, "boneqct_add_python_package")
    assert call, "boneqct/CMakeLists.txt does not install the package (boneqct_add_python_package)"
    assert_python_package_recipe()
    globs = {}
    for m in re.finditer(r"file\(\s*GLOB_RECURSE\s+(\w+)([^)]*)\)", text):
        patterns = [p.replace("${CMAKE_CURRENT_SOURCE_DIR}/", "") for p in m.group(2).split()
                    if "*" in p]
        globs[m.group(1)] = patterns
    assert set(globs) == {"BONEQCT_PYTHON_SCRIPTS", "BONEQCT_PYTHON_RESOURCES"}
    assert "${BONEQCT_PYTHON_SCRIPTS}" in call[0] and "${BONEQCT_PYTHON_RESOURCES}" in call[0]
    package = REPO / "boneqct"

    def matched(patterns):
        found = set()
        for pattern in patterns:
            folder, _, name = pattern.rpartition("/")
            found |= {p.relative_to(package).as_posix() for p in (package / folder).rglob(name)}
        return found

    scripts = matched(globs["BONEQCT_PYTHON_SCRIPTS"])
    assert {"__init__.py", "volume.py", "calibration/__init__.py", "calibration/definitions.py"} <= scripts
    assert {p.relative_to(package).as_posix() for p in package.rglob("*.py")} == scripts
    resources = matched(globs["BONEQCT_PYTHON_RESOURCES"])
    data = {p.relative_to(package).as_posix() for p in (package / "data").rglob("*") if p.is_file()}
    assert data and data == resources, f"data files not installed: {data - resources}"


# ----------------------------------------------------------------------------- icons

@pytest.mark.parametrize("icon", [
    *(f"{m}/Resources/Icons/{m}.png" for m in MODULES),
    "Resources/Icons/BoneQCT.png",
])
def test_icons_are_valid_pngs(icon):
    width, height = png_size(REPO / icon)
    assert 32 <= width <= 512 and width == height


# ----------------------------------------------------------------------------- bindings in detail

def annotation_node_classes(annotation: ast.expr) -> set[str]:
    """vtkMRML class names in a field annotation (a class, Union[...], X | Y, Annotated[...])."""
    return {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(annotation)
            if isinstance(n, (ast.Name, ast.Attribute))
            and (n.id if isinstance(n, ast.Name) else n.attr).startswith("vtkMRML")}


def ui_node_types(ui_path: Path) -> dict[str, set[str]]:
    """widget objectName -> nodeTypes of every qMRMLNodeComboBox."""
    types = {}
    for widget in ET.parse(ui_path).getroot().iter("widget"):
        if widget.get("class") == "qMRMLNodeComboBox":
            for prop in widget.findall("property"):
                if prop.get("name") == "nodeTypes":
                    types[widget.get("name")] = {s.text for s in prop.iter("string")}
    return types


@pytest.mark.parametrize("module", MODULES)
def test_node_selectors_offer_exactly_the_parameter_node_types(module):
    fields = parameter_wrapper_fields(parse_python(module_script(module)))[f"{module}ParameterNode"]
    bindings, types_by_widget = {}, {}
    for path in module_ui_files(module):
        bindings.update(ui_parameter_bindings(path))
        types_by_widget.update(ui_node_types(path))
    for widget, types in types_by_widget.items():
        if widget in bindings:
            expected = annotation_node_classes(fields[bindings[widget]].annotation)
            assert types == expected, f"{module}.ui {widget} offers {sorted(types)}, the field wants {sorted(expected)}"


def module_constants(tree: ast.Module) -> dict[str, ast.expr]:
    return {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def test_qct_spine_parameters_match_the_core():
    from boneqct.spine.levels import LABEL_SCHEMES, LEVEL_NAMES, VFA_LEVEL_NAMES

    tree = parse_python(module_script("QCTBoneDensity"))
    constants = shared_and_module_constants("QCTBoneDensity")
    assert ast.literal_eval(constants["LABEL_SCHEMES"]) == list(LABEL_SCHEMES)
    assert ast.literal_eval(constants["PATIENT_SEXES"]) == ["unknown", "F", "M"]
    # seed points name T4-L5 (the fracture assessment's levels), the BMD levels stay T11-L5
    assert ast.literal_eval(constants["SEED_LEVEL_NAMES"]) == list(VFA_LEVEL_NAMES)
    fields = parameter_wrapper_fields(tree)["QCTBoneDensityParameterNode"]
    assert ast.literal_eval(fields["labelScheme"].value) in LABEL_SCHEMES
    choices = [a for a in fields["lowestSeedLevel"].annotation.slice.elts[1:]
               if isinstance(a, ast.Call) and a.func.id == "Choice"]
    assert [a.id for a in choices[0].args] == ["SEED_LEVEL_NAMES"]
    assert ast.literal_eval(fields["lowestSeedLevel"].value) in VFA_LEVEL_NAMES
    levels_used = ast.literal_eval(fields["levelsUsed"].value).split(",")
    assert levels_used and set(levels_used) <= set(LEVEL_NAMES)
    assert annotation_node_classes(fields["spineLabels"].annotation) == {
        "vtkMRMLLabelMapVolumeNode", "vtkMRMLSegmentationNode"}
    assert annotation_node_classes(fields["spineSeeds"].annotation) == {"vtkMRMLMarkupsFiducialNode"}
    from boneqct.spine.options import SpineOptions

    options = {f.name: f for f in dataclasses.fields(SpineOptions)}
    assert tuple(levels_used) == SpineOptions().levels_used
    for parameter, name in (("roiThicknessMm", "roi_thickness_mm"), ("roiMarginMm", "margin_mm"),
                            ("cementThresholdMgCm3", "cement_threshold_mg_cm3")):
        assert ast.literal_eval(fields[parameter].value) == getattr(SpineOptions(), name)
        within = [a for a in fields[parameter].annotation.slice.elts[1:]
                  if isinstance(a, ast.Call) and a.func.id == "WithinRange"]
        assert [ast.literal_eval(v) for v in within[0].args] == [
            options[name].metadata["low"], options[name].metadata["high"]], parameter


def test_qct_spine_buttons_are_connected_and_the_module_imports_no_core_at_load():
    source = module_script("QCTBoneDensity").read_text()
    slots = slot_connections("QCTBoneDensity")
    for button, slot in (("spineApplyButton", "onSpineApplyButton"),
                         ("exportReportButton", "onExportReportButton")):
        assert slots[button] == slot
    tree = parse_python(module_script("QCTBoneDensity"))
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.add(node.module.split(".")[0])
    # the core and its numeric dependencies load lazily (they may still have to be installed)
    assert not top_level & {"boneqct", "numpy", "scipy", "QCTBoneDensityLib"}
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "QCTBoneDensityLogic")
    methods = {n.name for n in logic.body if isinstance(n, ast.FunctionDef)}
    assert {"runSpine", "spineSummary", "exportSpineReport", "canExportSpineReport"} <= methods
    # the report is written by the Lib from the table alone (no per-session result cache)
    assert "export_spine_report(path, tableNode, anonymize=anonymize)" in source
    assert "_spineResults" not in source
    lib = (REPO / "QCTBoneDensity" / "QCTBoneDensityLib" / "spine.py").read_text()
    assert "boneqct.spine.report import write_spine_report" in lib


def test_qct_spine_lib_uses_only_mrml_adapters():
    tree = parse_python(REPO / "QCTBoneDensity" / "QCTBoneDensityLib" / "spine.py")
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert {"spine_result_to_table_node", "roi_labelmap_to_node", "roi_centers_to_markups",
            "reference_plot", "run_spine"} <= functions
    # the vertebral inputs are shared with the finite-element module
    vertebrae = parse_python(REPO / "BoneQCTLib" / "vertebrae.py")
    assert {"seeds_from_markups_node", "labels_from_node"} <= {
        n.name for n in vertebrae.body if isinstance(n, ast.FunctionDef)}
    assert imported_modules(tree) <= {"__future__", "json", "math", "re", "numpy", "slicer", "vtk",
                                      "BoneQCTLib", "QCTBoneDensityLib", "boneqct"}


def test_qct_calibration_tissue_and_qa_parameters_match_the_core():
    from importlib import resources

    tree = parse_python(module_script("QCTBoneDensity"))
    constants = shared_and_module_constants("QCTBoneDensity")
    fields = parameter_wrapper_fields(tree)["QCTBoneDensityParameterNode"]
    qa_types = sorted(p.name[:-5] for p in (resources.files("boneqct") / "data" / "qa").iterdir()
                      if p.name.endswith(".json"))
    assert {"esp", "digital-esp"} <= set(qa_types)
    assert ast.literal_eval(fields["qaPhantomType"].value) in qa_types
    methods = [ast.literal_eval(constants[name]) for name in
               ("CALIBRATION_PHANTOM", "CALIBRATION_INTERNAL", "CALIBRATION_MANUAL")]
    assert [n.id for n in constants["CALIBRATION_METHODS"].elts] == [
        "CALIBRATION_PHANTOM", "CALIBRATION_INTERNAL", "CALIBRATION_MANUAL"]
    assert len(set(methods)) == 3
    assert fields["calibrationMethod"].value.id == "CALIBRATION_PHANTOM"
    for name in ("internalCalibrationPoints", "tissueL3Point"):
        assert annotation_node_classes(fields[name].annotation) == {"vtkMRMLMarkupsFiducialNode"}
    for name in ("tissueTable", "tissueMeasuresTable", "qaTable"):
        assert annotation_node_classes(fields[name].annotation) == {"vtkMRMLTableNode"}
    # the QA log path is a pathlib.Path bound to a ctkPathLineEdit (the wrapper's path connector)
    assert ast.unparse(fields["qaLogPath"].annotation) == "pathlib.Path"
    bindings = {param: widget for path in module_ui_files("QCTBoneDensity")
                for widget, param in ui_parameter_bindings(path).items()}
    classes = {el.get("name"): el.get("class") for path in module_ui_files("QCTBoneDensity")
               for el in ET.parse(path).getroot().iter("widget")}
    assert classes[bindings["qaLogPath"]] == "ctkPathLineEdit"
    assert classes[bindings["calibrationMethod"]] == "QComboBox"
    assert classes[bindings["tissueWholeScan"]] == "QCheckBox"


def test_qct_tissue_and_qa_buttons_call_the_logic_and_the_lib_stays_mrml_only():
    slots = slot_connections("QCTBoneDensity")
    for button, slot in (("tissueApplyButton", "onTissueApplyButton"),
                         ("tissueExportReportButton", "onTissueExportReportButton"),
                         ("qaApplyButton", "onQAApplyButton")):
        assert slots[button] == slot
    tree = parse_python(module_script("QCTBoneDensity"))
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "QCTBoneDensityLogic")
    assert "CalibrationLogicMixin" in {getattr(b, "id", None) for b in logic.bases}
    shared = next(n for n in parse_python(BONEQCTLIB / "logic.py").body if isinstance(n, ast.ClassDef))
    methods = {n.name for n in [*logic.body, *shared.body] if isinstance(n, ast.FunctionDef)}
    assert {"calibrateInternally", "runTissue", "tissueSummary", "hasTissueResult",
            "exportTissueReport", "runQA", "qaSummary"} <= methods
    test = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "QCTBoneDensityTest")
    assert "test_TissueWithInternalCalibration" in {n.name for n in test.body if isinstance(n, ast.FunctionDef)}
    lib = REPO / "QCTBoneDensity" / "QCTBoneDensityLib"
    for name in ("tissue.py", "qa.py"):
        lib_tree = parse_python(lib / name)
        assert imported_modules(lib_tree) <= {"__future__", "json", "math", "pathlib", "datetime",
                                              "numpy", "slicer", "vtk", "BoneQCTLib",
                                              "QCTBoneDensityLib", "boneqct"}
        # the core is imported lazily, inside the functions
        top = {n.module.split(".")[0] for n in lib_tree.body if isinstance(n, ast.ImportFrom) and n.module}
        assert "boneqct" not in top


def test_hip_module_choices_and_defaults_match_the_core():
    from boneqct.hip.extraction import FEMUR_LABELS
    from boneqct.hip.interpret import REFERENCE_SETS
    from boneqct.hip.projection import DEFAULT_PIXEL_MM
    from boneqct.hip.rois import DISTAL_BORDER_BELOW_HEAD_MM, NECK_BOX_WIDTH_MM

    tree = parse_python(module_script("HipCTXA"))
    constants = module_constants(tree)
    assert ast.literal_eval(constants["LABEL_SCHEMES"]) == list(FEMUR_LABELS)
    assert ast.literal_eval(constants["REFERENCE_POPULATIONS"]) == [*REFERENCE_SETS, "none"]
    assert ast.literal_eval(constants["SIDES"]) == ["left", "right"]
    fields = parameter_wrapper_fields(tree)["HipCTXAParameterNode"]
    assert ast.literal_eval(fields["pixelMm"].value) == DEFAULT_PIXEL_MM
    assert ast.literal_eval(fields["neckBoxWidthMm"].value) == NECK_BOX_WIDTH_MM
    assert ast.literal_eval(fields["distalBorderBelowHeadMm"].value) == DISTAL_BORDER_BELOW_HEAD_MM
    assert annotation_node_classes(fields["femurLabels"].annotation) == {
        "vtkMRMLLabelMapVolumeNode", "vtkMRMLSegmentationNode"}


def test_hip_ctxa_parameters_match_the_core():
    """Every HipCTXA parameter that is a HipOptions field has its default and range (or
    choices); the neck centre's 0 is the option's "automatic"."""
    from boneqct.hip.options import HipOptions

    tree = parse_python(module_script("HipCTXA"))
    fields = parameter_wrapper_fields(tree)["HipCTXAParameterNode"]
    options = {f.name: f for f in dataclasses.fields(HipOptions)}
    assert ast.literal_eval(module_constants(tree)["LABEL_SCHEMES"]) == list(
        options["label_scheme"].metadata["choices"])
    assert ast.literal_eval(fields["labelScheme"].value) == HipOptions().label_scheme
    for parameter, name in (("pixelMm", "pixel_mm"), ("neckBoxWidthMm", "neck_box_width_mm"),
                            ("neckCenterMm", "neck_center_s_mm"),
                            ("distalBorderBelowHeadMm", "distal_border_below_head_mm")):
        assert ast.literal_eval(fields[parameter].value) == getattr(HipOptions(), name), parameter
        within = [a for a in fields[parameter].annotation.slice.elts[1:]
                  if isinstance(a, ast.Call) and a.func.id == "WithinRange"]
        assert [ast.literal_eval(v) for v in within[0].args] == [
            options[name].metadata["low"], options[name].metadata["high"]], parameter
    assert HipOptions().automatic_neck_center


def test_hip_logic_takes_options_instead_of_restating_them():
    """``HipCTXALogic.runHip`` takes a HipOptions (built from the parameter node by
    ``hipOptionsFromParameterNode``) and restates none of its fields; the report is exported
    from the results table, not from a per-session cache."""
    from boneqct.hip.options import HipOptions

    tree = parse_python(module_script("HipCTXA"))
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "HipCTXALogic")
    run = next(n for n in logic.body if isinstance(n, ast.FunctionDef) and n.name == "runHip")
    parameters = {a.arg for a in (*run.args.args, *run.args.kwonlyargs)}
    names = {f.name for f in dataclasses.fields(HipOptions)}
    camel = {re.sub(r"_(\w)", lambda m: m.group(1).upper(), name) for name in names}
    assert "options" in parameters and not parameters & (names | camel | {
        "pixelMm", "neckBoxWidthMm", "neckCenterMm", "distalBorderBelowHeadMm"})
    source = module_script("HipCTXA").read_text()
    assert "hipOptionsFromParameterNode(p)" in source and "HipOptions(" in source
    assert "_hipResults" not in source
    assert "export_hip_report(folder, tableNode, anonymize=anonymize)" in source


def test_hip_module_buttons_are_connected_and_the_core_loads_lazily():
    slots = slot_connections("HipCTXA")
    for button, slot in (("calibrateButton", "onCalibrateButton"), ("applyButton", "onApplyButton"),
                         ("exportReportButton", "onExportReportButton")):
        assert slots[button] == slot
    tree = parse_python(module_script("HipCTXA"))
    top_level = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import)
                 for alias in node.names}
    top_level |= {node.module.split(".")[0] for node in tree.body
                  if isinstance(node, ast.ImportFrom) and node.module}
    assert not top_level & {"boneqct", "numpy", "scipy", "HipCTXALib", "QCTBoneDensityLib"}
    lib = parse_python(REPO / "HipCTXA" / "HipCTXALib" / "hip.py")
    assert imported_modules(lib) <= {"__future__", "json", "math", "numpy", "slicer", "vtk",
                                     "BoneQCTLib", "boneqct"}


def test_finite_element_parameters_match_the_core():
    """The FiniteElement parameter node's defaults, ranges and choices are FEOptions'."""
    from boneqct.fe.options import FEOptions

    tree = parse_python(module_script("FiniteElement"))
    constants = module_constants(tree)
    fields = parameter_wrapper_fields(tree)["FiniteElementParameterNode"]
    options = {f.name: f for f in dataclasses.fields(FEOptions)}
    for parameter, name in (("elementMm", "element_mm"), ("law", "law"),
                            ("criterion", "criterion"), ("labelScheme", "label_scheme")):
        assert ast.literal_eval(fields[parameter].value) == getattr(FEOptions(), name), parameter
        marks = [a for a in fields[parameter].annotation.slice.elts[1:] if isinstance(a, ast.Call)]
        if options[name].metadata["choices"]:
            assert marks[0].func.id == "Choice", parameter
            offered = ast.literal_eval(constants[marks[0].args[0].id])
            assert sorted(offered) == sorted(options[name].metadata["choices"]), parameter
        else:
            assert marks[0].func.id == "WithinRange", parameter
            assert [ast.literal_eval(v) for v in marks[0].args] == [
                options[name].metadata["low"], options[name].metadata["high"]], parameter


# ----------------------------------------------------------------------------- BoneQCTLib

BONEQCTLIB = REPO / "BoneQCTLib"
MODULE_LIBS = {f"{m}Lib" for m in MODULES} | {"BoneQCTWidgetLib"}


def test_boneqctlib_cmakelists_installs_exactly_its_files_like_dicomlib():
    text = cmake_text(BONEQCTLIB / "CMakeLists.txt")
    sets = cmake_sets(text)
    scripts, resources = sets["BONEQCTLIB_PYTHON_SCRIPTS"], sets["BONEQCTLIB_PYTHON_RESOURCES"]
    for listed in scripts + resources:
        assert (BONEQCTLIB / listed).is_file(), f"BoneQCTLib/CMakeLists.txt lists missing file {listed}"
    shipped = {p.relative_to(BONEQCTLIB).as_posix() for p in BONEQCTLIB.rglob("*.py")
               if "__pycache__" not in p.parts}
    assert shipped == set(scripts), f"scripts not listed: {shipped - set(scripts)}"
    assert resources == ["requirements.txt", "Resources/columns.json", "Resources/UI/CalibrationSection.ui"]
    call = cmake_calls(text, "boneqct_add_python_package")
    assert call and "${BONEQCTLIB_PYTHON_SCRIPTS}" in call[0] and "${BONEQCTLIB_PYTHON_RESOURCES}" in call[0]
    assert_python_package_recipe()
    # the package imports nothing itself: the widget mixin loads without numpy or the core
    assert not [n for n in parse_python(BONEQCTLIB / "__init__.py").body
                if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_boneqctlib_imports_no_qt_ctk_or_module_libs():
    """Only the widget layer (widgets.py) may use Qt; no file imports a module's Lib."""
    for path in sorted(BONEQCTLIB.glob("*.py")):
        qt = set() if path == WIDGET_LIFECYCLE else {"qt", "ctk"}
        forbidden = imported_modules(parse_python(path)) & ({"__main__"} | qt | MODULE_LIBS)
        assert not forbidden, f"{path.relative_to(REPO)} imports {sorted(forbidden)}"


@pytest.mark.parametrize("module", MODULES)
def test_modules_import_boneqctlib_and_their_own_lib_only(module):
    folder = REPO / module
    for path in sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts):
        others = imported_modules(parse_python(path)) & (MODULE_LIBS - {f"{module}Lib"})
        assert not others, f"{path.relative_to(REPO)} imports {sorted(others)}: use BoneQCTLib"
    assert not (folder / "BoneQCTWidgetLib").exists()


def test_volume_from_node_has_one_name():
    """Defined in BoneQCTLib.volumes and re-exported by no package ``__init__``."""
    defined, reexported = [], []
    for path in [*BONEQCTLIB.glob("*.py"), *(p for m in MODULES for p in (REPO / m).rglob("*.py"))]:
        tree = parse_python(path)
        if any(isinstance(n, ast.FunctionDef) and n.name == "volume_from_node" for n in tree.body):
            defined.append(path.relative_to(REPO).as_posix())
        if path.name == "__init__.py" and any(
                isinstance(n, ast.ImportFrom) and any(a.name == "volume_from_node" for a in n.names)
                for n in tree.body):
            reexported.append(path.relative_to(REPO).as_posix())
    assert defined == ["BoneQCTLib/volumes.py"] and reexported == []


def _calls(function: ast.FunctionDef) -> set[str]:
    return {n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", "")
            for n in ast.walk(function) if isinstance(n, ast.Call)}


@pytest.mark.parametrize("module", MODULES)
def test_every_module_action_calls_the_dependency_guard_first(module):
    """Every button slot (``on...Button``, the module's own and the shared calibration
    section's) is a ``moduleAction``, which calls BoneQCTLib's ``ensure_python_packages``
    before the slot touches boneqct; every connected button has such a slot; the guard is
    BoneQCTLib's, not a per-module copy."""
    tree = parse_python(module_script(module))
    shared = parse_python(WIDGET_LIFECYCLE)
    widgets = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == f"{module}Widget"]
    shared_classes = {n.name: n for n in shared.body if isinstance(n, ast.ClassDef)}
    for widget in widgets:  # grows while the shared bases are found
        widgets += [shared_classes[name_of(b)] for b in widget.bases if name_of(b) in shared_classes]
    slots = {n.name: n for w in widgets for n in w.body if isinstance(n, ast.FunctionDef)
             and n.name.startswith("on") and n.name.endswith("Button")}
    assert len(slots) >= 2 and set(slot_connections(module).values()) <= set(slots)
    for slot in slots.values():
        decorators = {name_of(d.func) for d in slot.decorator_list if isinstance(d, ast.Call)}
        assert "moduleAction" in decorators, f"{module}Widget.{slot.name} skips the guard"
    action = next(n for n in shared.body if isinstance(n, ast.FunctionDef) and n.name == "moduleAction")
    assert "ensure_python_packages" in _calls(action)
    imports = {(n.module, a.name) for n in shared.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("BoneQCTLib.dependencies", "ensure_python_packages") in imports
    assert "pip_install" not in module_script(module).read_text()


def test_qct_calibration_and_qa_parameters_match_the_core():
    """The calibration and QA defaults of the QCTBoneDensity parameter node are those of the
    core's options classes (issue 12: one source for every default)."""
    from boneqct.calibration.options import CalibrationOptions
    from boneqct.qa import QAOptions

    fields = parameter_wrapper_fields(parse_python(module_script("QCTBoneDensity")))[
        "QCTBoneDensityParameterNode"]
    assert ast.literal_eval(fields["phantomName"].value) == CalibrationOptions().phantom
    assert ast.literal_eval(fields["qaPhantomType"].value) == QAOptions().phantom_type
    assert ast.literal_eval(fields["qaSession"].value) == QAOptions().session


def test_column_catalogue_declares_every_result_table_once_with_units():
    """Resources/columns.json: each table used by a Lib, each column with a known type, a
    description, and the unit its name shows ("BMD (mg/cm3)" has unit mg/cm3)."""
    import json

    catalogue = json.loads((BONEQCTLIB / "Resources" / "columns.json").read_text(encoding="utf-8"))
    sources = "".join(p.read_text() for p in [*BONEQCTLIB.glob("*.py"),
                                                *(p for m in MODULES for p in (REPO / m).rglob("*.py"))])
    for table, columns in catalogue.items():
        assert f'columns("{table}"' in sources, f"table {table} of the catalogue is not used"
        names = [c["name"] for c in columns]
        assert len(set(names)) == len(names), table
        for column in columns:
            assert set(column) == {"name", "value", "type", "unit", "description"}
            assert column["type"] in {"text", "number", "count"} and column["description"]
            shown = re.search(r"\(([^)]+)\)$", column["name"])
            # "(volume)"/"(mass)" say how a ratio is formed, the rest is the unit
            if shown and column["type"] != "text" and shown.group(1) not in ("volume", "mass"):
                assert shown.group(1) == column["unit"], (table, column["name"])


def test_sample_data_offers_the_digital_phantoms_made_locally():
    """QCTBoneDensity offers the spine phantom and HipCTXA the femur phantom in Sample Data;
    the loader makes them with the core after the dependency guard (nothing downloaded)."""
    shared = parse_python(WIDGET_LIFECYCLE)
    kinds = ast.literal_eval(module_constants(shared)["SAMPLE_PHANTOMS"])
    assert sorted(kinds.values()) == ["femur", "spine"]
    for module, kind in (("QCTBoneDensity", "spine"), ("HipCTXA", "femur")):
        assert f'widgets.registerSampleData(\n                "{kind}"' in module_script(module).read_text()
    loader = next(n for n in shared.body if isinstance(n, ast.FunctionDef) and n.name == "loadSamplePhantom")
    assert {"ensure_python_packages", "make_spine_phantom", "make_femur_phantom"} <= _calls(loader)
    from boneqct.phantoms import make_spine_phantom  # the names the loader calls exist
    from boneqct.phantoms.femur import make_femur_phantom

    assert callable(make_spine_phantom) and callable(make_femur_phantom)


def assert_field_is_the_option(field, options_class, name: str) -> None:
    """A numeric parameter-node field has the default and the WithinRange of the option
    ``name`` of the core's ``options_class``."""
    option = {f.name: f for f in dataclasses.fields(options_class)}[name]
    assert ast.literal_eval(field.value) == getattr(options_class(), name)
    within = [a for a in field.annotation.slice.elts[1:]
              if isinstance(a, ast.Call) and a.func.id == "WithinRange"]
    assert [ast.literal_eval(v) for v in within[0].args] == [option.metadata["low"],
                                                              option.metadata["high"]]


def test_qct_screw_parameters_match_the_core():
    """The screw section's diameter default and range are ScrewOptions'; its button is guarded
    and measures through the Lib's run_screws."""
    from boneqct.screw.options import ScrewOptions

    fields = parameter_wrapper_fields(parse_python(module_script("QCTBoneDensity")))[
        "QCTBoneDensityParameterNode"]
    assert_field_is_the_option(fields["screwDiameterMm"], ScrewOptions, "diameter_mm")
    assert slot_connections("QCTBoneDensity")["screwApplyButton"] == "onScrewApplyButton"
    assert "run_screws(" in module_script("QCTBoneDensity").read_text()


def test_finite_element_femur_section_matches_the_core():
    """The femur sideways-fall section's element size default and range are FemurFEOptions',
    its sides those analyze_femur_fall takes; its buttons are connected and the logic runs
    and exports through the Lib's run_fe_hip / export_fe_hip_report."""
    from boneqct.fe.femur import FemurFEOptions

    tree = parse_python(module_script("FiniteElement"))
    fields = parameter_wrapper_fields(tree)["FiniteElementParameterNode"]
    assert_field_is_the_option(fields["femurElementMm"], FemurFEOptions, "element_mm")
    assert ast.literal_eval(module_constants(tree)["FEMUR_SIDES"]) == ["left", "right"]
    connections = slot_connections("FiniteElement")
    assert connections["femurApplyButton"] == "onFemurApplyButton"
    assert connections["exportFemurReportButton"] == "onExportFemurReportButton"
    source = module_script("FiniteElement").read_text()
    assert "run_fe_hip(" in source and "export_fe_hip_report(" in source
