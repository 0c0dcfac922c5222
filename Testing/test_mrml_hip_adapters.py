"""HipCTXA MRML adapters on Slicer's real MRML libraries (PyPI ``slicer-core``).

The digital femur phantom goes into a volume node, through ``run_hip`` (scene -> core ->
scene) once per module, and every output node is checked against the core's ``HipResult`` at
full precision: table cells (read from the vtkTable arrays), the projection node's geometry and
values, the region label map, the DXA transform, the femur segmentation. The report is written
from the results table (its document and referenced images) and again, equal, after the scene
is saved and reloaded. Input adapters (seed markups, femur label map / segmentation) are
checked on their own. Skipped as a whole when slicer-core is not installed.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pypdf
import pytest
import vtk

slicer = pytest.importorskip("slicer")
pytest.importorskip("slicer.util")
from slicer import vtkMRMLScene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "HipCTXA"))

from HipCTXALib.hip import (  # noqa: E402
    HIP_COLUMNS,
    REGIONS,
    can_export_hip_report,
    export_hip_report,
    femur_labels_from_node,
    has_hip_result,
    hip_frame_text,
    hip_result_from_table_node,
    hip_summary_text,
    projection_volume,
    run_hip,
    transform_matrix,
)
from test_mrml_adapters import save_and_reload  # noqa: E402

from boneqct.calibration import manual_calibration  # noqa: E402
from boneqct.hip import NoCalibrationError  # noqa: E402
from boneqct.hip.extraction import FEMUR_LABELS  # noqa: E402
from boneqct.phantoms.femur import make_femur_phantom  # noqa: E402
from BoneQCTLib.calibration import calibration_to_table_node  # noqa: E402
from BoneQCTLib.tables import read_document  # noqa: E402
from BoneQCTLib.volumes import update_node_from_volume, volume_from_node  # noqa: E402


def node_matrix(node) -> np.ndarray:
    matrix = slicer.util.vtkMatrixFromArray(np.eye(4))
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


@pytest.fixture(scope="module")
def phantom():
    return make_femur_phantom()


@pytest.fixture(scope="module")
def analysed(phantom):
    """The phantom through the scene once: (scene, CT node, run_hip outputs)."""
    slicer.mrmlScene = vtkMRMLScene()
    ct_node = update_node_from_volume(phantom.volume, name="femur phantom")
    line = phantom.truth["calibration"]
    table = calibration_to_table_node(manual_calibration(line["slope_hu_per_mg_cm3"],
                                                         line["intercept_hu"]))
    outputs = run_hip(ct_node, table, "left", sex="F")
    yield slicer.mrmlScene, ct_node, outputs
    slicer.mrmlScene.Clear(True)


@pytest.fixture
def scene():
    """A fresh MRML scene for the input-adapter tests."""
    slicer.mrmlScene = vtkMRMLScene()
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(True)


# ----------------------------------------------------------------------------- end to end

def test_the_core_gets_the_scene_volume_and_measures_the_analytic_neck(analysed, phantom):
    _, ct_node, outputs = analysed
    volume = outputs["volume"]
    np.testing.assert_array_equal(volume.array_kji, phantom.volume.array_kji)
    np.testing.assert_allclose(volume.ijk_to_ras, phantom.volume.ijk_to_ras, atol=1e-12)
    np.testing.assert_array_equal(volume_from_node(ct_node).array_kji, phantom.volume.array_kji)
    neck = outputs["result"].rois["neck"]["abmd_g_cm2"]
    assert neck == pytest.approx(phantom.truth["neck_abmd_g_cm2"], rel=0.02)


def test_table_holds_the_core_result_at_full_precision_with_units(analysed):
    _, _, outputs = analysed
    result, node = outputs["result"], outputs["table"]
    table = node.GetTable()
    assert node.GetNumberOfRows() == 4
    regions = table.GetColumnByName("Region")
    assert [regions.GetValue(r) for r in range(4)] == list(REGIONS)
    assert node.GetColumnDescription("Region")
    expected_units = {"aBMD (g/cm2)": "g/cm2", "vBMD (mg/cm3)": "mg/cm3", "BMC (g)": "g",
                      "Area (cm2)": "cm2", "Volume (cm3)": "cm3", "T-score": "SD"}
    for column_name, unit in expected_units.items():
        assert node.GetColumnUnitLabel(column_name) == unit
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == [
        "Region", *expected_units, "Z-score"]
    assert HIP_COLUMNS[0].name == "Region"
    for spec in HIP_COLUMNS[1:]:
        assert node.GetColumnUnitLabel(spec.name) == spec.unit
        assert node.GetColumnDescription(spec.name) == spec.description
        column = table.GetColumnByName(spec.name)
        for row, region in enumerate(REGIONS):
            value = result.rois[region].get(spec.value)
            if value is None:
                assert math.isnan(column.GetValue(row)), (region, spec.name)
            else:
                assert column.GetValue(row) == value, (region, spec.name)
    # T-scores where NHANES III has data (neck, total hip), none for the trochanter
    tscores = table.GetColumnByName("T-score")
    assert not math.isnan(tscores.GetValue(0)) and not math.isnan(tscores.GetValue(3))
    assert math.isnan(tscores.GetValue(1))


def test_table_attributes_hold_the_frame_and_the_interpretation(analysed):
    _, _, outputs = analysed
    result, node = outputs["result"], outputs["table"]
    frame = result.frame
    assert float(node.GetAttribute("BoneQCT.Hip.NeckShaftAngleDeg")) == frame.neck_shaft_angle_deg
    assert float(node.GetAttribute("BoneQCT.Hip.AnteversionDeg")) == frame.anteversion_deg
    assert float(node.GetAttribute("BoneQCT.Hip.HeadRadiusMm")) == frame.head_radius_mm
    assert float(node.GetAttribute("BoneQCT.Hip.HeadFitRmsMm")) == frame.head_fit_rms_mm
    assert float(node.GetAttribute("BoneQCT.Hip.NeckLengthMm")) == frame.neck_length_mm
    assert node.GetAttribute("BoneQCT.Hip.Side") == "left"
    assert node.GetAttribute("BoneQCT.Hip.WHOCategory") == result.interpretation["category"]
    assert float(node.GetAttribute("BoneQCT.Hip.TScoreMin")) == result.interpretation["t_score_min"]
    document = json.loads(node.GetAttribute("BoneQCT.Hip.JSON"))
    assert document["rois"]["total"]["bmc_g"] == result.rois["total"]["bmc_g"]
    assert has_hip_result(node)
    summary = hip_summary_text(node)
    assert summary.startswith("Left hip: Femoral neck ") and "WHO category" in summary
    frame_text = hip_frame_text(node)
    assert frame_text == (f"Neck-shaft angle {frame.neck_shaft_angle_deg:.1f} deg, anteversion "
                          f"(to the scanner) {frame.anteversion_deg:.1f} deg, head radius "
                          f"{frame.head_radius_mm:.1f} mm")
    assert summary.endswith(frame_text) and hip_frame_text(None) == ""
    head_neck = result.head_neck["regions"]
    assert (f"Head / subcapital / neck vBMD: {head_neck['head']['vbmd_mg_cm3']:.0f} / "
            f"{head_neck['subcapital']['vbmd_mg_cm3']:.0f} / {head_neck['neck']['vbmd_mg_cm3']:.0f}"
            f" mg/cm3 {result.calibration.material}") in summary


def test_projection_node_is_the_core_projection_in_g_cm2(analysed):
    _, _, outputs = analysed
    result, node = outputs["result"], outputs["projection"]
    expected = projection_volume(result)
    array = slicer.util.arrayFromVolume(node)
    assert array.shape == (1, *result.projection.bmc_g.shape)
    np.testing.assert_array_equal(array, expected.array_kji)
    np.testing.assert_array_equal(array[0], result.projection.areal_density_g_cm2.astype(np.float32))
    np.testing.assert_allclose(node_matrix(node), expected.ijk_to_ras, atol=1e-9)
    spacing = node.GetSpacing()
    assert spacing[0] == pytest.approx(result.projection.pixel_mm)
    assert spacing[1] == pytest.approx(result.projection.pixel_mm)
    assert node.GetAttribute("BoneQCT.Quantity") == "Areal BMD (g/cm2)"
    # the image conserves the femur's mineral
    assert float(array.astype(np.float64).sum()) * result.projection.pixel_area_cm2 == pytest.approx(
        result.qc["femur_mineral_g"], rel=1e-5)


def test_region_labelmap_is_on_the_projection_grid_and_named(analysed):
    _, _, outputs = analysed
    result, node = outputs["result"], outputs["roi_labelmap"]
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node)[0], result.roi_labels)
    np.testing.assert_allclose(node_matrix(node), node_matrix(outputs["projection"]), atol=1e-12)
    colors = node.GetDisplayNode().GetColorNode()
    assert [colors.GetColorName(v) for v in (1, 2, 3)] == ["neck", "trochanter", "intertrochanter"]


def test_transform_node_is_the_dxa_rotation(analysed):
    _, _, outputs = analysed
    result, node = outputs["result"], outputs["transform"]
    assert node.IsA("vtkMRMLLinearTransformNode")
    np.testing.assert_allclose(transform_matrix(node), result.frame.dxa_rotation_ras(), atol=1e-12)


def test_segmentation_holds_the_femur_mask(analysed, phantom):
    _, _, outputs = analysed
    result, node = outputs["result"], outputs["segmentation"]
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    segment_id = segmentation.GetNthSegmentID(0)
    assert segmentation.GetSegment(segment_id).GetName() == "femur_left"
    grid = update_node_from_volume(result.volume_bmd, name="grid")
    exported = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "exported")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(node, ids, exported, grid)
    array = slicer.util.arrayFromVolume(exported)
    np.testing.assert_array_equal(array > 0, result.femur_mask_kji)
    head = np.asarray(phantom.truth["femurs"][0]["head_center_ras_mm"])
    i, j, k = np.rint(result.volume_bmd.ras_to_ijk_points(head)[0]).astype(int)
    assert array[k, j, i]  # the femur holds the head centre
    slicer.mrmlScene.RemoveNode(grid)
    slicer.mrmlScene.RemoveNode(exported)


def test_rotated_volume_is_in_the_dxa_position(analysed):
    _, _, outputs = analysed
    node = outputs["rotated_volume"]
    assert node is not None and node.GetAttribute("BoneQCT.Quantity").startswith("BMD (mg/cm3")
    matrix = node_matrix(node)
    np.testing.assert_allclose(matrix[:3, :3], np.diag(np.diag(matrix[:3, :3])), atol=1e-12)
    assert float(slicer.util.arrayFromVolume(node).max()) > 500.0  # cortical bone


def test_report_files_are_written_from_the_results_table(analysed, tmp_path):
    _, ct_node, outputs = analysed
    table = outputs["table"]
    assert table.GetNodeReference("BoneQCT.Projection") is outputs["projection"]
    assert table.GetNodeReference("BoneQCT.Regions") is outputs["roi_labelmap"]
    assert can_export_hip_report(table)
    paths = export_hip_report(tmp_path, table)
    assert paths["report"].read_bytes()[:4] == b"%PDF"
    document = json.loads(paths["json"].read_text())
    assert document["side"] == "left"
    assert document["exam"] == {"series_description": ct_node.GetName(),
                                "patient_age_years": None, "patient_sex": "F"}
    again = hip_result_from_table_node(table)
    assert again.to_dict() == read_document(table, "Hip")
    np.testing.assert_array_equal(again.roi_labels, outputs["result"].roi_labels)
    np.testing.assert_array_equal(again.projection_image.array_kji,
                                  outputs["result"].projection_image.array_kji)


def write_storable_nodes(scene, folder: Path, node_class: str, extension: str) -> None:
    """Give every ``node_class`` node of ``scene`` its default storage node and write its data
    into ``folder`` (as Slicer's Save does before the scene file)."""
    for index in range(scene.GetNumberOfNodesByClass(node_class)):
        node = scene.GetNthNodeByClass(index, node_class)
        storage = node.CreateDefaultStorageNode()
        scene.AddNode(storage)
        storage.SetFileName(str(folder / f"{node.GetID()}{extension}"))
        node.SetAndObserveStorageNodeID(storage.GetID())
        assert storage.WriteData(node), node.GetName()


def report_text(path: Path) -> str:
    """The text of a PDF report, its generation time left out."""
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(path).pages)
    return re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "generated <time>", text)


def test_report_exports_alike_after_scene_save_and_reload(tmp_path):
    """Measure, export; save the scene (tables, volumes), load it into a new scene, export from
    the reloaded table: the same document and the same report text."""
    phantom = make_femur_phantom()
    slicer.mrmlScene = scene = vtkMRMLScene()
    ct_node = update_node_from_volume(phantom.volume, name="femur phantom")
    line = phantom.truth["calibration"]
    calibration = calibration_to_table_node(manual_calibration(line["slope_hu_per_mg_cm3"],
                                                               line["intercept_hu"]))
    outputs = run_hip(ct_node, calibration, "left", sex="F", age_years=70.0,
                      rotated_volume=False)
    before = export_hip_report(tmp_path / "before", outputs["table"])
    table_name = outputs["table"].GetName()
    saved = tmp_path / "scene"
    saved.mkdir()
    write_storable_nodes(scene, saved, "vtkMRMLScalarVolumeNode", ".nrrd")

    reloaded = save_and_reload(scene, saved)
    slicer.mrmlScene = reloaded
    try:
        table = reloaded.GetFirstNodeByName(table_name)
        assert read_document(table, "Hip") == read_document(outputs["table"], "Hip")
        assert can_export_hip_report(table)
        after = export_hip_report(tmp_path / "after", table)
        assert json.loads(after["json"].read_text()) == json.loads(before["json"].read_text())
        assert after["csv"].read_text() == before["csv"].read_text()
        text = report_text(after["report"])
        assert "generated <time>" in text and "neck-shaft angle" in text
        assert text == report_text(before["report"])
    finally:
        reloaded.Clear(True)
        scene.Clear(True)


# ----------------------------------------------------------------------------- inputs

def test_seed_is_the_first_placed_point_in_world_ras(scene):
    from BoneQCTLib.markups import first_point

    assert first_point(None, "in the femoral head") is None
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seed")
    with pytest.raises(ValueError, match="no placed point: place one in the femoral head"):
        first_point(node, "in the femoral head")
    node.AddControlPoint(-80.0, 5.5, 12.25, "head")
    node.AddControlPoint(1.0, 2.0, 3.0, "other")
    np.testing.assert_array_equal(first_point(node, "in the femoral head"), [-80.0, 5.5, 12.25])


def test_femur_labels_from_a_labelmap_and_from_a_segmentation(scene, phantom):
    ct_node = update_node_from_volume(phantom.volume, name="ct")
    labels = phantom.labels
    label_node = update_node_from_volume(labels, name="labels", node_class="vtkMRMLLabelMapVolumeNode")
    from_labelmap = femur_labels_from_node(label_node, ct_node, "left", "phantom")
    np.testing.assert_array_equal(from_labelmap.array_kji, labels.array_kji)

    value = FEMUR_LABELS["phantom"]["left"]
    only_left = labels.with_array((labels.array_kji == value).astype(np.uint8))
    left_node = update_node_from_volume(only_left, name="left", node_class="vtkMRMLLabelMapVolumeNode")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "femurs")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(left_node, segmentation)
    segmentation.GetSegmentation().GetNthSegment(0).SetName("femur_left")
    exported = femur_labels_from_node(segmentation, ct_node, "left", "totalsegmentator")
    np.testing.assert_allclose(exported.ijk_to_ras, phantom.volume.ijk_to_ras, atol=1e-9)
    expected = np.where(labels.array_kji == value, FEMUR_LABELS["totalsegmentator"]["left"], 0)
    np.testing.assert_array_equal(exported.array_kji, expected)
    with pytest.raises(ValueError, match="exactly one segment of the right femur"):
        femur_labels_from_node(segmentation, ct_node, "right", "totalsegmentator")


def test_run_hip_refuses_missing_inputs(scene, phantom):
    ct_node = update_node_from_volume(phantom.volume, name="ct")
    with pytest.raises(ValueError, match="Select the CT volume"):
        run_hip(None, None, "left")
    seed = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seed")
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    with pytest.raises(ValueError, match="either a seed point or a femur label map"):
        run_hip(ct_node, None, "left", seed_node=seed, labels_node=labels)
    with pytest.raises(NoCalibrationError, match="needs calibrated bone mineral density"):
        run_hip(ct_node, None, "left")
