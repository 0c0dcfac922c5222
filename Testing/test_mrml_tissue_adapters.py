"""Tissue, internal-calibration and QA MRML adapter tests on Slicer's real MRML libraries
(PyPI ``slicer-core``).

The digital spine phantom goes into a volume node; the internal calibration and the tissue
composition run through the adapters, and every table cell is compared with the core's own
result at full precision (read from the vtkTable arrays, not as text). Skipped as a whole
when slicer-core is not installed.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
pytest.importorskip("slicer.util")
from slicer import vtkMRMLScene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "QCTBoneDensity"))

from QCTBoneDensityLib.qa import (  # noqa: E402
    qa_result_from_table_node,
    qa_summary_text,
    run_qa,
)
from QCTBoneDensityLib.tissue import (  # noqa: E402
    ATTRIBUTE_TISSUE_LABEL_COLORS,
    COMPARTMENT_COLUMNS,
    FAT_COMPARTMENTS,
    MEASURE_COLUMNS,
    MEASURES_TABLE_ROLE,
    REGION_TISSUES,
    export_tissue_report,
    has_tissue_result,
    l3_point_from_markups,
    run_tissue,
    tissue_document_from_table_node,
    tissue_summary_text,
)

from boneqct.calibration import calibrate_with_phantom  # noqa: E402
from boneqct.calibration.internal import internal_calibration  # noqa: E402
from boneqct.phantoms import make_spine_phantom  # noqa: E402
from boneqct.qa import QAOptions  # noqa: E402
from boneqct.tissue import TissueOptions, analyze_tissue, tissue_label_map  # noqa: E402
from boneqct.volume import Volume  # noqa: E402
from BoneQCTLib.calibration import (  # noqa: E402
    calibration_from_table_node,
    calibration_summary_text,
    calibration_to_table_node,
    internal_calibration_to_table_node,
    internal_points_from_markups,
)
from BoneQCTLib.volumes import update_node_from_volume, volume_from_node  # noqa: E402


@pytest.fixture
def scene():
    """A fresh MRML scene installed as ``slicer.mrmlScene``."""
    slicer.mrmlScene = vtkMRMLScene()
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(True)


@pytest.fixture(scope="module")
def phantom():
    return make_spine_phantom(seed=2)


@pytest.fixture(scope="module")
def core_calibration(phantom):
    """The core's internal calibration of the phantom (the adapters' expected one)."""
    return internal_calibration(phantom.volume)


@pytest.fixture(scope="module")
def l3_slab(phantom):
    """The phantom's 13 slices around L3's centre as a scan of their own (a whole-scan tissue
    analysis of the phantom takes four times as long)."""
    centre_k = int(round(phantom.volume.ras_to_ijk_points([_l3_center(phantom)])[0][2]))
    first = centre_k - 6
    ijk_to_ras = phantom.volume.ijk_to_ras.copy()
    ijk_to_ras[:3, 3] = phantom.volume.ijk_to_ras_points([[0, 0, first]])[0]
    return Volume(phantom.volume.array_kji[first:first + 13].copy(), ijk_to_ras,
                  dict(phantom.volume.metadata))


def _markups(name, points):
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    for label, position in points:
        node.AddControlPoint(*map(float, position), label)
    return node


def _column(table_node, name):
    column = table_node.GetTable().GetColumnByName(name)
    assert column is not None, f"no column {name}"
    return [column.GetValue(row) for row in range(column.GetNumberOfTuples())]


def _l3_center(phantom):
    return next(v for v in phantom.truth["vertebrae"] if v["level"] == "L3")["body_center_ras_mm"]


# ----------------------------------------------------------------------------- markups inputs

def test_internal_points_from_markups(scene):
    node = _markups("tissues", [(" Fat ", (1, 2, 3)), ("BLOOD", (4.5, 5, 6))])
    points = internal_points_from_markups(node)
    assert set(points) == {"fat", "blood"}
    np.testing.assert_array_equal(points["blood"], [4.5, 5.0, 6.0])
    assert internal_points_from_markups(None) == {}
    node.AddControlPoint(0.0, 0.0, 0.0, "bone")
    with pytest.raises(ValueError, match="air, fat, muscle, blood"):
        internal_points_from_markups(node)
    twice = _markups("twice", [("fat", (0, 0, 0)), ("fat", (1, 1, 1))])
    with pytest.raises(ValueError, match="two points named fat"):
        internal_points_from_markups(twice)


def test_l3_point_from_markups(scene):
    assert l3_point_from_markups(None) is None
    np.testing.assert_array_equal(l3_point_from_markups(_markups("one", [("P-1", (1, 2, 3))])), [1, 2, 3])
    seeds = _markups("seeds", [("L1", (0, 0, 10)), ("l3", (0, 0, -20)), ("L2", (0, 0, 0))])
    np.testing.assert_array_equal(l3_point_from_markups(seeds), [0, 0, -20])
    with pytest.raises(ValueError, match="none is named L3"):
        l3_point_from_markups(_markups("two", [("a", (0, 0, 0)), ("b", (1, 1, 1))]))


# ----------------------------------------------------------------------------- internal calibration

def test_internal_calibration_through_the_adapter_equals_the_core(scene, phantom, core_calibration):
    ct = update_node_from_volume(phantom.volume, name="phantom")
    calibration, table = internal_calibration_to_table_node(ct, kvp=120.0)
    expected = core_calibration   # the phantom's metadata says 120 kVp
    assert _without_scan(calibration.to_dict()) == _without_scan(expected.to_dict())
    rebuilt = calibration_from_table_node(table)
    assert rebuilt.slope_hu_per_mg_cm3 == expected.slope_hu_per_mg_cm3
    assert rebuilt.intercept_hu == expected.intercept_hu
    assert rebuilt.method == "internal"
    assert _column(table, "Rod") == [r["name"] for r in expected.rods]
    assert _column(table, "Measured (HU)") == [r["measured_hu"] for r in expected.rods]
    assert _column(table, "Residual (HU)") == [r["residual_hu"] for r in expected.rods]
    assert table.GetAttribute("BoneQCT.CalibrationMethod") == "internal"
    summary = calibration_summary_text(table)
    assert summary.startswith("Internal (phantomless): HU = ")
    assert "R2 = " in summary and "air (automatic)" in summary
    # a volume node carries no DICOM header here: the kVp is unknown, and the effective-energy
    # fit does not need it
    unknown, table = internal_calibration_to_table_node(ct, table_node=table)
    assert unknown.slope_hu_per_mg_cm3 == expected.slope_hu_per_mg_cm3
    assert unknown.scan["kvp"] is None and calibration.scan["kvp"] == 120.0


def _without_scan(document: dict) -> dict:
    """A calibration document without its scanner record (a volume node has no DICOM header)."""
    return {key: value for key, value in document.items() if key != "scan"}


def test_internal_calibration_with_a_point_replaces_the_automatic_roi(scene, phantom):
    ct = update_node_from_volume(phantom.volume, name="phantom")
    automatic, _ = internal_calibration_to_table_node(ct, kvp=120)
    muscle = next(r for r in automatic.rods if r["name"] == "muscle")
    points = _markups("internal ROIs", [("muscle", muscle["center_ras_mm"])])
    calibration, table = internal_calibration_to_table_node(ct, points, kvp=120)
    expected = internal_calibration(phantom.volume, {"muscle": muscle["center_ras_mm"]})
    assert _without_scan(calibration.to_dict()) == _without_scan(expected.to_dict())
    assert {r["name"]: r["placed"] for r in calibration.rods}["muscle"] == "point"
    assert "muscle (point)" in calibration_summary_text(table)


def test_phantom_calibration_summary_names_its_method(scene, phantom):
    table = calibration_to_table_node(calibrate_with_phantom(phantom.volume, "mindways-model3"))
    assert calibration_summary_text(table).startswith("Phantom: HU = ")
    assert calibration_summary_text(None) == ""


# ----------------------------------------------------------------------------- tissue composition

def _assert_tables_equal_result(table, measures, result):
    expected_rows = [(region, tissue, result.regions[region][tissue])
                     for region in ("image", "spine") for tissue in REGION_TISSUES]
    expected_rows += [("image", name, result.fat_compartments[name]) for name in FAT_COMPARTMENTS]
    assert table.GetNumberOfRows() == len(expected_rows) == 12
    assert _column(table, "Region") == [r[0] for r in expected_rows]
    assert _column(table, "Compartment") == [r[1] for r in expected_rows]
    # the amounts (after the region and compartment columns checked above)
    for column in COMPARTMENT_COLUMNS[2:]:
        assert _column(table, column.name) == [r[2][column.value] for r in expected_rows], column.name
        assert table.GetColumnUnitLabel(column.name) == column.unit
    assert [table.GetColumnUnitLabel(n) for n in ("Mass (g)", "Area (cm2)", "Volume (cm3)")] == \
        ["g", "cm2", "cm3"]
    assert _column(measures, "Region") == ["image", "spine"]
    for column in MEASURE_COLUMNS[1:]:
        values = _column(measures, column.name)
        for value, region in zip(values, ("image", "spine"), strict=True):
            want = result.regions[region][column.value]
            assert (math.isnan(value) if want is None else value == want), (column.name, region)
        assert measures.GetColumnUnitLabel(column.name) == column.unit
    for node in (table, measures):
        for c in range(node.GetNumberOfColumns()):
            assert node.GetColumnDescription(node.GetColumnName(c)), node.GetColumnName(c)
    assert table.GetNodeReference(MEASURES_TABLE_ROLE) is measures
    reference = result.reference
    for key in ("fat_hu", "muscle_hu", "fat_muscle_threshold_hu", "fat_hu_measured",
                "muscle_hu_measured", "cortical_threshold_hu", "cortical_threshold_mg_cm3",
                "air_threshold_hu", "muscle_upper_hu", "fat_density_g_cm3", "muscle_density_g_cm3"):
        assert float(table.GetAttribute(f"BoneQCT.Tissue.Reference.{key}")) == reference[key], key


def test_tissue_with_internal_calibration_equals_the_core(scene, phantom, l3_slab):
    ct = update_node_from_volume(l3_slab, name="phantom")
    _, calibration_table = internal_calibration_to_table_node(ct, kvp=120)
    l3_node = _markups("L3", [("L3", _l3_center(phantom))])
    outputs = run_tissue(ct, calibration_table, l3_node=l3_node)
    table, measures = outputs["table"], outputs["measures_table"]
    assert has_tissue_result(table)

    # the core on the same inputs, independent of the adapter
    slab_calibration = internal_calibration(l3_slab)
    expected = analyze_tissue(l3_slab, slab_calibration, l3_point_ras_mm=_l3_center(phantom))
    _assert_tables_equal_result(table, measures, expected)
    area = expected.skeletal_muscle_l3["area_cm2"]
    assert float(table.GetAttribute("BoneQCT.Tissue.SkeletalMuscleAreaL3Cm2")) == area
    assert table.GetAttribute("BoneQCT.Tissue.Slices") == f"0:{l3_slab.array_kji.shape[0] - 1}"
    summary = tissue_summary_text(table)
    assert "internal (K2HPO4)" in summary and "Skeletal muscle area at L3" in summary
    document = tissue_document_from_table_node(table)
    assert document["regions"]["image"]["fat"]["mass_g"] == expected.regions["image"]["fat"]["mass_g"]
    assert "masks_kji" not in document

    # outputs given are overwritten, not duplicated
    n_tables = scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    again = run_tissue(ct, calibration_table, TissueOptions(slices=(4, 5)), table_node=table,
                       measures_table_node=measures)
    assert again["table"] is table and again["measures_table"] is measures
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == n_tables
    _assert_tables_equal_result(table, measures, analyze_tissue(
        l3_slab, slab_calibration, TissueOptions(slices=(4, 5))))
    assert table.GetAttribute("BoneQCT.Tissue.SkeletalMuscleAreaL3Cm2") == ""
    assert "Skeletal muscle" not in tissue_summary_text(table)


def _ijk_to_ras(node):
    matrix = slicer.util.vtkMatrixFromArray(np.eye(4))
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def _assert_labelmap_equals_core(labelmap, ct, volume, result):
    """Geometry of the CT node, voxels of the core's label map, colour names of its label table."""
    assert labelmap.IsA("vtkMRMLLabelMapVolumeNode")
    np.testing.assert_array_equal(_ijk_to_ras(labelmap), _ijk_to_ras(ct))
    assert labelmap.GetImageData().GetDimensions() == ct.GetImageData().GetDimensions()
    expected = tissue_label_map(volume, result)
    voxels = slicer.util.arrayFromVolume(labelmap)
    assert voxels.dtype == expected.array_kji.dtype == np.uint8
    np.testing.assert_array_equal(voxels, expected.array_kji)
    colors = labelmap.GetDisplayNode().GetColorNode()
    assert colors.GetAttribute(ATTRIBUTE_TISSUE_LABEL_COLORS) == "1"
    table = expected.metadata["label_table"]
    assert colors.GetNumberOfColors() == len(table) == 8
    assert {value: colors.GetColorName(int(value)) for value in table} == table
    rgba = [[0.0] * 4 for _ in table]
    for value in table:
        colors.GetColor(int(value), rgba[int(value)])
    assert rgba[0][3] == 0.0                                   # outside: transparent
    shown = [tuple(c[:3]) for c in rgba[1:]]
    assert len(set(shown)) == len(shown) and all(c[3] == 1.0 for c in rgba[1:])


def test_tissue_classes_labelmap_equals_the_core(scene, phantom, core_calibration):
    ct = update_node_from_volume(phantom.volume, name="phantom")
    _, calibration_table = internal_calibration_to_table_node(ct, kvp=120)
    outputs = run_tissue(ct, calibration_table, TissueOptions(slices=(5, 29)))
    labelmap = outputs["labelmap"]
    expected = analyze_tissue(phantom.volume, core_calibration, TissueOptions(slices=(5, 29)))
    _assert_labelmap_equals_core(labelmap, ct, phantom.volume, expected)
    voxels = slicer.util.arrayFromVolume(labelmap)
    assert set(np.unique(voxels[5:30])) >= {0, 1, 2, 4, 5, 6}   # the phantom's classes show
    assert not voxels[:5].any() and not voxels[30:].any()      # outside the analysed slices
    assert labelmap.GetName() == "phantom tissue classes"
    assert labelmap.GetAttribute("BoneQCT.Quantity").startswith("Tissue classes (0 outside, 1 skin")

    # a given node and its colour table are overwritten, not duplicated
    n_volumes = scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode")
    n_colors = scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")
    color_node = labelmap.GetDisplayNode().GetColorNode()
    again = run_tissue(ct, calibration_table, TissueOptions(slices=(10, 11)), labelmap_node=labelmap)
    assert again["labelmap"] is labelmap
    assert labelmap.GetDisplayNode().GetColorNode() is color_node
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == n_volumes
    assert scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") == n_colors
    _assert_labelmap_equals_core(labelmap, ct, phantom.volume, again["result"])
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(labelmap), tissue_label_map(
        phantom.volume, analyze_tissue(phantom.volume, core_calibration,
                                       TissueOptions(slices=(10, 11)))).array_kji)


def test_tissue_labelmap_keeps_an_oblique_anisotropic_ct_geometry(scene, phantom):
    """The label map is on the CT node's grid whatever its direction and spacing."""
    matrix = np.array(phantom.volume.ijk_to_ras, dtype=float)
    angle = np.deg2rad(7.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    matrix[:3, :3] = rotation @ matrix[:3, :3] @ np.diag([1.0, 1.1, 1.3])
    matrix[:3, 3] += (3.5, -2.0, 11.25)
    volume = Volume(phantom.volume.array_kji, matrix, dict(phantom.volume.metadata))
    ct = update_node_from_volume(volume, name="oblique")
    calibration_table = calibration_to_table_node(internal_calibration(volume))
    outputs = run_tissue(ct, calibration_table, TissueOptions(slices=(15, 17)))
    _assert_labelmap_equals_core(outputs["labelmap"], ct, volume, outputs["result"])
    np.testing.assert_array_equal(_ijk_to_ras(outputs["labelmap"]), matrix)


def test_tissue_report_export_from_the_table(scene, phantom, tmp_path):
    pytest.importorskip("reportlab")
    ct = update_node_from_volume(phantom.volume, name="phantom")
    calibration_table = calibration_to_table_node(calibrate_with_phantom(phantom.volume, "mindways-model3"))
    outputs = run_tissue(ct, calibration_table, TissueOptions(slices=(20, 20)))
    paths = export_tissue_report(tmp_path / "report", outputs["table"], {"patient_name": "X"})
    assert paths["report"].stat().st_size > 1000
    rows = list(csv.reader(paths["csv"].read_text().splitlines()))
    assert rows[0] == ["region", "tissue", "mass_g", "area_cm2", "volume_cm3"]
    assert len(rows) == 1 + outputs["table"].GetNumberOfRows()


def test_tissue_errors_say_what_to_do(scene, phantom):
    ct = update_node_from_volume(phantom.volume, name="phantom")
    with pytest.raises(ValueError, match="needs a calibration"):
        run_tissue(ct, None)
    with pytest.raises(ValueError, match="Select the CT volume"):
        run_tissue(None, None)
    empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "empty")
    with pytest.raises(ValueError, match="no tissue composition"):
        tissue_document_from_table_node(empty)
    assert tissue_summary_text(empty) == "" and tissue_summary_text(None) == ""


# ----------------------------------------------------------------------------- QA

def test_qa_session_appended_to_the_log_with_flags(scene, tmp_path):
    from boneqct.qa import load_nominal, measure_esp, read_log

    phantom = make_spine_phantom(seed=11)
    ct = update_node_from_volume(phantom.volume, name="esp")
    calibration_table = calibration_to_table_node(calibrate_with_phantom(phantom.volume, "mindways-model3"))
    log = tmp_path / "qa.csv"
    with pytest.raises(ValueError, match="QA log"):
        run_qa(ct, calibration_table, QAOptions(phantom_type="digital-esp"), log_path=tmp_path)
    first = run_qa(ct, calibration_table, QAOptions(phantom_type="digital-esp", session="s1"),
                   log_path=log)
    second = run_qa(ct, calibration_table, QAOptions(phantom_type="digital-esp", session="s2"),
                    log_path=log, table_node=first["table"])
    table = second["table"]
    assert table is first["table"]
    expected = measure_esp(volume_from_node(ct), load_nominal("digital-esp"),
                           calibration_from_table_node(calibration_table))
    assert _column(table, "Insert") == [r["insert"] for r in expected]
    assert _column(table, "Measured") == [r["value"] for r in expected]
    assert _column(table, "Mean (HU)") == [r["mean_hu"] for r in expected]
    deviations = _column(table, "Deviation (%)")
    for value, row in zip(deviations, expected, strict=True):
        want = row["deviation_percent"]
        assert math.isnan(value) if want is None else value == want
    assert table.GetColumnUnitLabel("Measured") == "mg K2HPO4/cm3"
    assert table.GetColumnUnitLabel("Deviation (%)") == "%"
    assert set(_column(table, "Drift")) == {"no"}
    assert {r["session"] for r in read_log(log)} == {"s1", "s2"}
    summary = qa_summary_text(table)
    assert "2 session(s)" in summary and "No drift" in summary and "s2 (given" in summary
    # the session is kept in the scene: its document comes back from the table
    stored = qa_result_from_table_node(table)
    assert stored.to_dict() == second["result"].to_dict() and stored.session == "s2"


def test_qa_session_label_is_the_core_rule(scene, tmp_path, monkeypatch):
    """No label given: the study date (from the DICOM database), or the current time said in
    the summary (one rule with the command line, ``boneqct.qa.session_label``)."""
    from boneqct.io.dicom_writer import write_dicom_series
    header = write_dicom_series(Volume(np.zeros((1, 2, 2), np.int16), np.eye(4)), tmp_path / "dicom",
                                study_date="20240506")[0]

    class Database:  # Slicer's DICOM database as the adapters use it
        def fileForInstance(self, uid):
            return str(header) if uid == "1.2.3" else ""

    phantom = make_spine_phantom(seed=11)
    options = QAOptions(phantom_type="digital-esp")
    ct = update_node_from_volume(phantom.volume, name="esp")
    outputs = run_qa(ct, None, options, log_path=tmp_path / "qa.csv")
    assert outputs["result"].session_source == "current time"
    assert "(current time" in qa_summary_text(outputs["table"])
    monkeypatch.setattr(slicer, "dicomDatabase", Database(), raising=False)
    ct.SetAttribute("DICOM.instanceUIDs", "1.2.3")
    outputs = run_qa(ct, None, options, log_path=tmp_path / "qa.csv")
    assert outputs["result"].session == "2024-05-06"
    assert "2024-05-06 (study date" in qa_summary_text(outputs["table"])


# ----------------------------------------------------------------------------- module logic

def test_module_self_test_runs_on_slicer_core(scene, monkeypatch):
    """The module's Logic and its in-Slicer self-test (tissue path included) on real MRML.

    slicer-core has no Qt application, so only what the module imports at load time for its
    widget and parameter node (qt, parameterNodeWrapper, ScriptedLoadableModule) is stubbed;
    the Logic methods and the test methods run unchanged against slicer-core's MRML.
    """
    import importlib.util
    import types
    import unittest

    class Base:
        def __init__(self, *args, **kwargs):
            pass

    class Widget(Base):
        pass

    class Mixin:
        def __init__(self, *args, **kwargs):
            pass

    class Test(unittest.TestCase):
        def delayDisplay(self, message, *args, **kwargs):
            pass

    def stub(name, **attributes):
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)

    stub("qt")
    stub("slicer.parameterNodeWrapper", Choice=lambda *a: None, WithinRange=lambda *a: None,
         parameterNodeWrapper=lambda cls: cls)
    stub("slicer.ScriptedLoadableModule", ScriptedLoadableModule=Base,
         ScriptedLoadableModuleLogic=Base, ScriptedLoadableModuleTest=Test,
         ScriptedLoadableModuleWidget=Widget)
    if not hasattr(slicer.util, "VTKObservationMixin"):
        monkeypatch.setattr(slicer.util, "VTKObservationMixin", Mixin, raising=False)
    spec = importlib.util.spec_from_file_location(
        "QCTBoneDensityUnderTest", REPO / "QCTBoneDensity" / "QCTBoneDensity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    test = module.QCTBoneDensityTest("runTest")
    test.setUp = lambda: slicer.mrmlScene.Clear(False)
    test.runTest()


# ----------------------------------------------------------------------------- saved scene

def _assert_saved_table_equals(reloaded, original):
    """Same columns, units, descriptions and cells (numbers to the 6 significant digits of the
    table's TSV file)."""
    assert reloaded.GetNumberOfRows() == original.GetNumberOfRows() > 0
    names = [original.GetColumnName(c) for c in range(original.GetNumberOfColumns())]
    assert [reloaded.GetColumnName(c) for c in range(reloaded.GetNumberOfColumns())] == names
    for name in names:
        assert reloaded.GetColumnUnitLabel(name) == original.GetColumnUnitLabel(name), name
        assert reloaded.GetColumnDescription(name) == original.GetColumnDescription(name), name
        values, expected = _column(reloaded, name), _column(original, name)
        if isinstance(expected[0], str):
            assert values == expected, name
        else:
            np.testing.assert_allclose(values, expected, rtol=1e-5, err_msg=name)


def test_tissue_report_and_qa_result_come_back_from_the_saved_and_reloaded_scene(scene, phantom, tmp_path):
    """Tissue and QA tables carry their documents through a saved and reloaded scene: the
    tissue report exported from the reloaded table equals the one exported before saving
    (PDF text, tissue.json, tissue.csv), the QA result reads back unchanged."""
    pytest.importorskip("reportlab")
    pytest.importorskip("pypdf")
    from test_mrml_adapters import report_text, save_with_volumes_and_reload

    ct = update_node_from_volume(phantom.volume, name="phantom")
    calibration_table = calibration_to_table_node(calibrate_with_phantom(phantom.volume, "mindways-model3"))
    tissue = run_tissue(ct, calibration_table, TissueOptions(slices=(20, 21)))
    qa = run_qa(ct, calibration_table, QAOptions(phantom_type="digital-esp", session="s1"),
                log_path=tmp_path / "qa.csv")
    before = export_tissue_report(tmp_path / "before", tissue["table"])

    folder = tmp_path / "scene"
    folder.mkdir()
    reloaded = save_with_volumes_and_reload(scene, folder)
    slicer.mrmlScene = reloaded
    table = reloaded.GetNodeByID(tissue["table"].GetID())
    assert has_tissue_result(table)
    _assert_saved_table_equals(table, tissue["table"])
    _assert_saved_table_equals(table.GetNodeReference(MEASURES_TABLE_ROLE), tissue["measures_table"])
    assert tissue_summary_text(table) == tissue_summary_text(tissue["table"])
    after = export_tissue_report(tmp_path / "after", table)
    assert report_text(after["report"]) == report_text(before["report"])
    assert "Tissue" in report_text(after["report"])
    for key in ("json", "csv"):
        assert after[key].read_text() == before[key].read_text(), key
    qa_table = reloaded.GetNodeByID(qa["table"].GetID())
    assert qa_result_from_table_node(qa_table).to_dict() == qa["result"].to_dict()
    _assert_saved_table_equals(qa_table, qa["table"])
    assert qa_summary_text(qa_table) == qa_summary_text(qa["table"])
