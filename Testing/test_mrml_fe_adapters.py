"""FiniteElement MRML adapters on Slicer's real MRML libraries (PyPI ``slicer-core``): the mesh
as a model node with cell fields, the results table with units, the load-displacement chart,
the whole scene -> core -> scene run on the digital phantom (from seeds, and from a vertebra
label map or segmentation, equal to the core's own result), and the report exported from the
results table, equal after the scene is saved and reloaded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import vtk

slicer = pytest.importorskip("slicer")
pytest.importorskip("slicer.util")
from slicer import vtkMRMLScene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "FiniteElement"))

from FiniteElementLib.fe import (  # noqa: E402
    COLOR_FIELDS,
    can_export_fe_report,
    color_model_by,
    export_fe_report,
    fe_document_from_table_node,
    fe_result_to_table_node,
    fe_summary_text,
    run_fe,
)
from test_mrml_adapters import save_and_reload  # noqa: E402
from test_mrml_hip_adapters import report_text, write_storable_nodes  # noqa: E402

from boneqct.calibration import manual_calibration  # noqa: E402
from boneqct.errors import FEError  # noqa: E402
from boneqct.fe.options import FEOptions  # noqa: E402
from boneqct.fe.pipeline import analyze_fe  # noqa: E402
from boneqct.phantoms import make_spine_phantom  # noqa: E402
from boneqct.spine.levels import label_for_level  # noqa: E402
from BoneQCTLib.calibration import calibration_to_table_node  # noqa: E402
from BoneQCTLib.tables import read_document  # noqa: E402
from BoneQCTLib.volumes import update_node_from_volume  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    return make_spine_phantom()


def calibration_table(ph):
    cal = ph.truth["calibration"]
    return calibration_to_table_node(manual_calibration(cal["slope_hu_per_mg_cm3"],
                                                        cal["intercept_hu"]))


def vertebra_labels(ph, scheme: str):
    """The phantom's vertebra labels renumbered to ``scheme`` (a core Volume on the CT grid)."""
    labels = np.zeros(ph.labels.array_kji.shape, np.uint8)
    for v in ph.truth["vertebrae"]:
        labels[ph.labels.array_kji == v["label"]] = label_for_level(v["level"], scheme)
    assert labels.any()
    return ph.labels.with_array(labels)


@pytest.fixture
def scene():
    slicer.mrmlScene = vtkMRMLScene()
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(True)


def test_phantom_level_through_the_scene(scene, phantom):
    ph = phantom
    ct_node = update_node_from_volume(ph.volume, name="phantom")
    cal = ph.truth["calibration"]
    table = calibration_to_table_node(manual_calibration(cal["slope_hu_per_mg_cm3"],
                                                         cal["intercept_hu"]))
    seeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
    for v in ph.truth["vertebrae"]:
        seeds.AddControlPoint(*v["body_center_ras_mm"], v["level"])
    out = run_fe(ct_node, table, "L2", FEOptions(element_mm=2.0, criterion="nonlinear"),
                 seeds_node=seeds, sex="F")
    result = out["result"]
    # Mesh: one cell per element, fields as cell data, points in RAS around the body centre.
    mesh = out["model"].GetMesh()
    assert mesh.GetNumberOfCells() == result.n_elements
    for field in COLOR_FIELDS:
        assert mesh.GetCellData().GetArray(field) is not None, field
    centre = np.array(mesh.GetCenter())
    truth_centre = np.array(ph.truth["vertebrae"][1]["body_center_ras_mm"])
    assert np.linalg.norm(centre - truth_centre) < 4.0
    display = out["model"].GetDisplayNode()
    assert display.GetActiveScalarName() == "effective_strain"
    color_model_by(out["model"], "von_mises_mpa")
    assert display.GetActiveScalarName() == "von_mises_mpa"
    low, high = display.GetScalarRange()
    assert high > low >= 0.0
    # Table: values and units, the full document kept as an attribute.
    t = out["table"]
    assert t.GetTable().GetColumnByName("Strength (N)").GetValue(0) == pytest.approx(result.strength_n)
    assert t.GetColumnUnitLabel("Stiffness (N/mm)") == "N/mm"
    assert t.GetColumnDescription("Strength (N)")
    assert fe_document_from_table_node(t) == json.loads(json.dumps(result.to_dict()))
    # 2 mm elements are not the fragile thresholds' configuration: no flag (this asserted a
    # flag for every configuration before issue 13)
    fragile = t.GetTable().GetColumnByName("Fragile").GetValue(0)
    assert result.fragile is None and "element size 2 mm" in result.fragile_reason
    assert fragile == "unknown"
    # Chart: the nonlinear load-displacement curve.
    chart = out["chart"]
    series = chart.GetNthPlotSeriesNode(0)
    curve_table = series.GetTableNode().GetTable()
    forces = [curve_table.GetColumnByName("Force (N)").GetValue(i)
              for i in range(curve_table.GetNumberOfRows())]
    assert forces == pytest.approx([p["force_n"] for p in result.curve])
    # Re-running into the same nodes replaces, does not add.
    n_nodes = scene.GetNumberOfNodes()
    run_fe(ct_node, table, "L2", FEOptions(element_mm=2.5, criterion="linear"),
           seeds_node=seeds, table_node=t, model_node=out["model"], chart_node=chart)
    assert scene.GetNumberOfNodes() == n_nodes


def test_missing_calibration_and_seed_are_value_errors(scene, phantom):
    ph = phantom
    ct_node = update_node_from_volume(ph.volume, name="phantom")
    with pytest.raises(ValueError, match="calibrated density"):
        run_fe(ct_node, None, "L1", seeds_node=None)
    cal = ph.truth["calibration"]
    table = calibration_to_table_node(manual_calibration(cal["slope_hu_per_mg_cm3"],
                                                         cal["intercept_hu"]))
    seeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
    seeds.AddControlPoint(*ph.truth["vertebrae"][0]["body_center_ras_mm"], "L1")
    with pytest.raises(FEError, match="L3"):
        run_fe(ct_node, table, "L3", seeds_node=seeds)
    with pytest.raises(ValueError, match="not both"):
        run_fe(ct_node, table, "L1", seeds_node=seeds, labels_node=seeds)
    with pytest.raises(ValueError, match="seed points or a vertebra label map"):
        run_fe(ct_node, table, "L1")


def core_result(ph, labels, level: str, options: FEOptions, sex: str):
    """What the core computes by itself from the same CT, calibration and label map."""
    cal = ph.truth["calibration"]
    calibration = manual_calibration(cal["slope_hu_per_mg_cm3"], cal["intercept_hu"])
    return analyze_fe(ph.volume, calibration, options, level=level, labels=labels, sex=sex)


@pytest.mark.parametrize("scheme", ["totalsegmentator", "verse"])
def test_label_map_through_the_scene_equals_the_core(scene, phantom, scheme):
    ph = phantom
    ct_node = update_node_from_volume(ph.volume, name="phantom")
    labels = vertebra_labels(ph, scheme)
    labels_node = update_node_from_volume(labels, name="vertebrae",
                                          node_class="vtkMRMLLabelMapVolumeNode")
    options = FEOptions(element_mm=2.0, criterion="linear", law="kopperdahl2002",
                        label_scheme=scheme)
    out = run_fe(ct_node, calibration_table(ph), "L2", options, labels_node=labels_node, sex="M")
    expected = core_result(ph, labels, "L2", options, "M")
    result = out["result"]
    assert result.level == "L2"
    assert result.n_elements == expected.n_elements and result.n_dof == expected.n_dof
    assert result.stiffness_n_mm == pytest.approx(expected.stiffness_n_mm, rel=1e-9)
    assert result.strength_n == pytest.approx(expected.strength_n, rel=1e-9)
    assert out["model"].GetMesh().GetNumberOfCells() == result.n_elements
    doc = fe_document_from_table_node(out["table"])
    assert doc["strength_n"] == pytest.approx(expected.strength_n, rel=1e-9)
    assert fe_summary_text(out["table"]).startswith(f"L2: strength {expected.strength_n:.0f} N")
    # the same labels through a segmentation whose segments are named by level
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "vertebrae segmentation")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
        labels_node, segmentation)
    level_of_value = {label_for_level(v["level"], scheme): v["level"] for v in ph.truth["vertebrae"]}
    for index in range(segmentation.GetSegmentation().GetNumberOfSegments()):
        segment = segmentation.GetSegmentation().GetNthSegment(index)
        segment.SetName(f"vertebrae_{level_of_value[segment.GetLabelValue()]}")
    from_segmentation = run_fe(ct_node, calibration_table(ph), "L2", options,
                               labels_node=segmentation, sex="M")["result"]
    assert from_segmentation.strength_n == pytest.approx(expected.strength_n, rel=1e-9)


def test_labels_without_the_level_say_so(scene, phantom):
    ph = phantom
    ct_node = update_node_from_volume(ph.volume, name="phantom")
    labels_node = update_node_from_volume(vertebra_labels(ph, "totalsegmentator"),
                                          name="vertebrae", node_class="vtkMRMLLabelMapVolumeNode")
    # the phantom has L1-L3 only; "verse" numbering does not match TotalSegmentator values
    with pytest.raises(Exception, match="absent"):
        run_fe(ct_node, calibration_table(ph), "L2",
               FEOptions(label_scheme="verse", element_mm=2.0, criterion="linear"),
               labels_node=labels_node)


def test_export_writes_json_vtu_and_pdf_from_the_table(scene, phantom, tmp_path):
    ph = phantom
    ct_node = update_node_from_volume(ph.volume, name="phantom")
    labels_node = update_node_from_volume(vertebra_labels(ph, "totalsegmentator"),
                                          name="vertebrae", node_class="vtkMRMLLabelMapVolumeNode")
    out = run_fe(ct_node, calibration_table(ph), "L1",
                 FEOptions(element_mm=2.5, criterion="linear"), labels_node=labels_node, sex="F")
    result, table = out["result"], out["table"]
    assert table.GetNodeReference("BoneQCT.Mesh") is out["model"]
    assert can_export_fe_report(table)
    folder = tmp_path / "report" / "L1"
    paths = export_fe_report(folder, table, anonymize=True)
    assert {key: path.name for key, path in paths.items()} == {
        "json": "fe.json", "vtu": "fe.vtu", "report": "fe_report.pdf"}
    assert all(path.parent == folder and path.stat().st_size > 0 for path in paths.values())
    doc = json.loads(paths["json"].read_text())
    assert doc == json.loads(json.dumps(result.to_dict()))
    assert paths["report"].read_bytes().startswith(b"%PDF")
    reader = vtk.vtkXMLUnstructuredGridReader()
    reader.SetFileName(str(paths["vtu"]))
    reader.Update()
    assert reader.GetOutput().GetNumberOfCells() == result.n_elements
    # the report again from a table without its mesh: no fe.vtu, the same document
    again = export_fe_report(tmp_path / "again", fe_result_to_table_node(result), anonymize=True)
    assert sorted(again) == ["json", "report"] and again["report"].read_bytes().startswith(b"%PDF")
    assert json.loads(again["json"].read_text()) == doc


def test_documents_of_scenes_saved_before_are_read(scene, phantom, tmp_path):
    """A table of a scene saved before the document was ``BoneQCT.FE.JSON`` (``BoneQCT.FEJSON``)
    still gives its result and report."""
    ct_node = update_node_from_volume(phantom.volume, name="phantom")
    seeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
    seeds.AddControlPoint(*phantom.truth["vertebrae"][0]["body_center_ras_mm"], "L1")
    table = run_fe(ct_node, calibration_table(phantom), "L1",
                   FEOptions(element_mm=2.5, criterion="linear"), seeds_node=seeds)["table"]
    document = read_document(table, "FE")
    table.RemoveAttribute("BoneQCT.FE.JSON")
    assert not can_export_fe_report(table)
    table.SetAttribute("BoneQCT.FEJSON", json.dumps(document))
    assert fe_document_from_table_node(table) == document
    assert json.loads(export_fe_report(tmp_path, table)["json"].read_text()) == document


def test_report_exports_alike_after_scene_save_and_reload(scene, phantom, tmp_path):
    """Solve, export; save the scene (tables, volumes, the mesh), load it into a new scene,
    export from the reloaded table: the same document, report text and mesh."""
    ct_node = update_node_from_volume(phantom.volume, name="phantom")
    seeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
    for v in phantom.truth["vertebrae"]:
        seeds.AddControlPoint(*v["body_center_ras_mm"], v["level"])
    out = run_fe(ct_node, calibration_table(phantom), "L2",
                 FEOptions(element_mm=2.5, criterion="nonlinear"), seeds_node=seeds, sex="M")
    before = export_fe_report(tmp_path / "before", out["table"])
    table_name = out["table"].GetName()
    saved = tmp_path / "scene"
    saved.mkdir()
    write_storable_nodes(scene, saved, "vtkMRMLScalarVolumeNode", ".nrrd")
    write_storable_nodes(scene, saved, "vtkMRMLModelNode", ".vtu")

    reloaded = save_and_reload(scene, saved)
    slicer.mrmlScene = reloaded
    try:
        table = reloaded.GetFirstNodeByName(table_name)
        assert read_document(table, "FE") == read_document(out["table"], "FE")
        assert fe_summary_text(table) == fe_summary_text(out["table"])
        after = export_fe_report(tmp_path / "after", table)
        assert sorted(after) == ["json", "report", "vtu"]
        assert json.loads(after["json"].read_text()) == json.loads(before["json"].read_text())
        text = report_text(after["report"])
        assert "generated <time>" in text and "L2" in text
        assert text == report_text(before["report"])
        reader = vtk.vtkXMLUnstructuredGridReader()
        reader.SetFileName(str(after["vtu"]))
        reader.Update()
        assert reader.GetOutput().GetNumberOfCells() == out["result"].n_elements
    finally:
        reloaded.Clear(True)
