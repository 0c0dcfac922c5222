"""Spine MRML adapter tests on Slicer's real MRML libraries (PyPI ``slicer-core``).

Unit tests build small results by hand (levels and ``VertebralROI`` masks); the end-to-end
test runs the core's ``analyze_spine`` on the digital spine phantom and checks every table
cell against the core's result at full precision, and the BMD against the phantom's truth.
Skipped as a whole when slicer-core is not installed.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest

from boneqct.spine.options import SpineOptions

slicer = pytest.importorskip("slicer")
pytest.importorskip("slicer.util")
from slicer import vtkMRMLScene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "QCTBoneDensity"))

from QCTBoneDensityLib.spine import (  # noqa: E402
    CT_VOLUME_ROLE,
    ROI_LABELMAP_ROLE,
    can_export_spine_report,
    export_spine_report,
    has_spine_result,
    parse_levels,
    reference_plot,
    roi_centers_to_markups,
    roi_labelmap_to_node,
    roi_segmentation_from_labelmap,
    run_spine,
    spine_columns,
    spine_result_to_table_node,
    spine_summary_text,
)

from boneqct.spine.types import VertebralROI  # noqa: E402
from boneqct.volume import Volume  # noqa: E402
from BoneQCTLib.calibration import calibration_to_table_node  # noqa: E402
from BoneQCTLib.tables import read_exam  # noqa: E402
from BoneQCTLib.vertebrae import (  # noqa: E402
    labels_from_node,
    name_points_by_level,
    seeds_from_markups_node,
)
from BoneQCTLib.volumes import update_node_from_volume, volume_from_node  # noqa: E402

COLUMN_NAMES = ["Level", "BMD (mg/cm3)", "SD (mg/cm3)", "Median (mg/cm3)", "Mean (HU)", "SD (HU)",
                "Voxels", "ROI volume (mm3)", "Cement augmentation", "QC", "Not measured because",
                "Used"]


@pytest.fixture
def scene():
    """A fresh MRML scene installed as ``slicer.mrmlScene``."""
    slicer.mrmlScene = vtkMRMLScene()
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(True)


def oblique_ijk_to_ras() -> np.ndarray:
    """IJK->RAS with an oblique rotation, anisotropic spacing and an origin."""
    axis = np.array([1.0, -2.0, 3.0]) / np.linalg.norm([1.0, -2.0, 3.0])
    angle = np.deg2rad(17.0)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    m = np.eye(4)
    m[:3, :3] = rotation * np.array([0.7, 0.9, 2.5])
    m[:3, 3] = [-20.25, 35.5, -110.0]
    return m


def node_ijk_to_ras(node) -> np.ndarray:
    matrix = slicer.util.vtkMatrixFromArray(np.eye(4))
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def small_ct() -> Volume:
    array_kji = (np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8) % 50) * 5
    return Volume(array_kji=array_kji, ijk_to_ras=oblique_ijk_to_ras())


def level(name, bmd, index, **overrides):
    """A LevelResult-like object with every field the adapters read."""
    values = dict(
        level=name, bmd_mg_cm3=bmd, sd_mg_cm3=None if bmd is None else 12.345678901,
        median_mg_cm3=None if bmd is None else bmd - 0.123456789, mean_hu=150.0 + index / 3.0,
        sd_hu=20.0 + index / 7.0, median_hu=149.0, n_voxels=1000 + index,
        roi_volume_mm3=1234.56789 + index, roi_center_ras_mm=[1.5 + index, -30.25, 100.0 + 35.0 * index],
        roi_axis_ras=[0.0, 0.0, 1.0], roi_semi_axes_mm=[12.0, 9.0], roi_thickness_mm=9.0,
        cement_augmentation=None if bmd is None else bmd < 50.0,
        qc={"cortical_fraction": 0.0, "inside_body": True, "enough_voxels": index != 2,
            "passed": index != 2},
        excluded=False)
    values.update(overrides)
    from boneqct.spine.pipeline import LevelResult

    return LevelResult(**values)


def fake_result(volume: Volume | None = None, calibrated=True, reference=None):
    """A SpineResult-like object: L1 (low BMD), L2, L3 (failed QC); ROIs on ``volume``'s grid."""
    bmds = (41.234567891, 98.76543219, 120.5) if calibrated else (None, None, None)
    levels = [level(name, bmd, n) for n, (name, bmd) in enumerate(zip(("L1", "L2", "L3"), bmds, strict=True))]
    rois = []
    if volume is not None:
        for n, lv in enumerate(levels):
            mask = np.zeros(volume.array_kji.shape, bool)
            mask[2 * n:2 * n + 2, 1 + n:4 + n, 2:5 + n] = True
            rois.append(VertebralROI(lv.level, "elliptic-cylinder", mask, np.array(lv.roi_center_ras_mm),
                                     np.array([0.0, 0.0, 1.0]), (12.0, 9.0), 9.0))
    mean = float(np.mean(bmds[:2])) if calibrated else None
    result = SimpleNamespace(
        levels=levels, levels_used=["L1", "L2"], mean_bmd_mg_cm3=mean, mean_hu=150.2,
        category="osteopenia" if calibrated else None, t_score=-1.75 if calibrated else None,
        z_score=None, reference=reference, calibrated=calibrated,
        calibration=SimpleNamespace(material="K2HPO4") if calibrated else None,
        warnings=["L3: ROI quality check failed"], rois=rois, measured_levels=levels)
    result.to_dict = lambda: {"levels": [vars(lv) for lv in levels], "mean_bmd_mg_cm3": mean}
    return result


def column(table_node, name):
    array = table_node.GetTable().GetColumnByName(name)
    assert array is not None, f"no column {name}"
    return array


def _pipeline():
    try:
        from boneqct.spine import pipeline
    except ImportError as exc:
        pytest.skip(f"boneqct.spine.pipeline has not landed yet ({exc})")
    return pipeline


# ----------------------------------------------------------------------------- seeds

def add_points(scene, points, name="seeds"):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    for label, position in points:
        node.AddControlPoint(*position, label)
    return node


def test_points_named_by_level_from_their_height(scene):
    """Points placed in any order as Slicer names them (F-1, F-2 ...) are named by level from
    the lowest one chosen upwards, and then read as seeds at the same positions."""
    node = add_points(scene, [("F-1", [0.0, 0.0, 100.0]), ("F-2", [1.0, 2.0, 140.0]),
                              ("F-3", [-1.0, 0.0, 70.0])])
    assert name_points_by_level(node, "l3") == ["L2", "L1", "L3"]
    seeds = seeds_from_markups_node(node)
    assert seeds["L1"].tolist() == [1.0, 2.0, 140.0] and seeds["L3"].tolist() == [-1.0, 0.0, 70.0]
    with pytest.raises(ValueError, match="only 2 levels from T11 down to T12"):
        name_points_by_level(node, "T12")
    with pytest.raises(ValueError, match="not a vertebral level"):
        name_points_by_level(node, "L7")


def test_points_named_up_to_thoracic_levels_for_the_fracture_assessment(scene):
    """The panel names points T4-L5 (thoracic levels are graded for fractures); seeds then
    read them with the levels given, the BMD levels (T11-L5) by default."""
    from boneqct.spine.levels import VFA_LEVEL_NAMES

    node = add_points(scene, [("F-1", [0.0, 0.0, 100.0]), ("F-2", [1.0, 2.0, 140.0]),
                              ("F-3", [-1.0, 0.0, 70.0])])
    assert name_points_by_level(node, "t12", VFA_LEVEL_NAMES) == ["T11", "T10", "T12"]
    assert seeds_from_markups_node(node, VFA_LEVEL_NAMES)["T10"].tolist() == [1.0, 2.0, 140.0]
    with pytest.raises(ValueError, match="'T10' of .* is not named by a vertebral level"):
        seeds_from_markups_node(node)
    with pytest.raises(ValueError, match="only 1 levels from T4 down to T4"):
        name_points_by_level(node, "T4", VFA_LEVEL_NAMES)


def test_seeds_from_markups_node_are_the_placed_ras_points(scene):
    placed = {"L1": [12.25, -30.5, 101.125], "L2": [-3.0, 44.0, 66.75], "T12": [0.0, 0.0, 140.0]}
    node = add_points(scene, [("L1", placed["L1"]), (" l2 ", placed["L2"]), ("t12", placed["T12"])])
    seeds = seeds_from_markups_node(node)
    assert set(seeds) == set(placed)
    for name, position in placed.items():
        assert isinstance(seeds[name], np.ndarray) and seeds[name].shape == (3,)
        np.testing.assert_array_equal(seeds[name], position)


def test_seeds_skip_unplaced_points(scene):
    node = add_points(scene, [("L1", [1.0, 2.0, 3.0])])
    index = node.AddControlPoint(0.0, 0.0, 0.0, "L2")
    node.UnsetNthControlPointPosition(index)
    assert list(seeds_from_markups_node(node)) == ["L1"]


@pytest.mark.parametrize("points, message", [
    ([("L1", [0, 0, 0]), ("liver", [1, 1, 1])], "'liver'.*not named by a vertebral level"),
    ([("L1", [0, 0, 0]), ("F-1", [1, 1, 1])], "F-1"),
    ([("L1", [0, 0, 0]), ("l1", [1, 1, 1])], "two points named L1"),
    ([], "no placed points"),
])
def test_seeds_with_bad_labels_say_what_to_fix(scene, points, message):
    node = add_points(scene, points)
    with pytest.raises(ValueError, match=message):
        seeds_from_markups_node(node)


def test_seeds_without_node_say_what_to_select():
    with pytest.raises(ValueError, match="Select"):
        seeds_from_markups_node(None)


def test_parse_levels():
    assert parse_levels("L1,L2") == ("L1", "L2")
    assert parse_levels(" l1; L2 l3 ,") == ("L1", "L2", "L3")
    assert parse_levels(["T12", "L1", "L1"]) == ("T12", "L1")
    with pytest.raises(ValueError, match="'L9' is not a vertebral level"):
        parse_levels("L1,L9")
    with pytest.raises(ValueError, match="List the levels"):
        parse_levels(" , ")


# ----------------------------------------------------------------------------- label maps

def test_labels_from_labelmap_node_keep_values_and_geometry(scene):
    labels = Volume(np.zeros((6, 7, 8), np.uint8), oblique_ijk_to_ras())
    labels.array_kji[1:3, 2:4, 2:5] = 31
    labels.array_kji[4:6, 1:3, 1:3] = 30
    node = update_node_from_volume(labels, name="labels", node_class="vtkMRMLLabelMapVolumeNode")
    back = labels_from_node(node, None)
    np.testing.assert_array_equal(back.array_kji, labels.array_kji)
    np.testing.assert_allclose(back.ijk_to_ras, labels.ijk_to_ras, atol=1e-9)


def import_segments(scene, ct_node, segments):
    """A segmentation from a label map painted with a distinct value per segment, renamed."""
    array = np.zeros(slicer.util.arrayFromVolume(ct_node).shape, np.uint8)
    for n, (_, mask) in enumerate(segments):
        array[mask] = n + 1
    labelmap = update_node_from_volume(Volume(array, node_ijk_to_ras(ct_node)), name="painted",
                                       node_class="vtkMRMLLabelMapVolumeNode")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "vertebrae")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node)
    segmentation = node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        segment.SetName(segments[segment.GetLabelValue() - 1][0])
    return node


@pytest.mark.parametrize("scheme, l1, l2", [("totalsegmentator", 31, 30), ("verse", 20, 21)])
def test_labels_from_segmentation_use_level_names_and_the_ct_grid(scene, scheme, l1, l2):
    ct_node = update_node_from_volume(small_ct(), name="ct")
    shape = (6, 7, 8)
    masks = {name: np.zeros(shape, bool) for name in ("L1 vertebra", "vertebrae_L2", "liver")}
    masks["L1 vertebra"][1:3, 2:4, 2:5] = True
    masks["vertebrae_L2"][3:5, 1:3, 1:3] = True
    masks["liver"][5, 5:7, 5:8] = True
    node = import_segments(scene, ct_node, list(masks.items()))
    labels = labels_from_node(node, ct_node, scheme)
    np.testing.assert_allclose(labels.ijk_to_ras, node_ijk_to_ras(ct_node), atol=1e-6)
    assert labels.array_kji.shape == shape
    expected = np.zeros(shape, np.uint8)
    expected[masks["L1 vertebra"]] = l1
    expected[masks["vertebrae_L2"]] = l2
    np.testing.assert_array_equal(labels.array_kji, expected)
    # no temporary node is left behind
    assert scene.GetFirstNodeByName("__BoneQCT_temporary_labels__") is None


@pytest.mark.parametrize("scheme, t8, l1", [("totalsegmentator", 36, 31), ("verse", 15, 20)])
def test_labels_from_segmentation_name_thoracic_levels_when_asked(scene, scheme, t8, l1):
    """Segments named T4-T10 are levels of the fracture assessment: kept when those levels
    are asked for, left out of the BMD levels' label map."""
    from boneqct.spine.levels import VFA_LEVEL_NAMES

    ct_node = update_node_from_volume(small_ct(), name="ct")
    masks = {name: np.zeros((6, 7, 8), bool) for name in ("vertebrae_T8", "L1")}
    masks["vertebrae_T8"][1:3, 2:4, 2:5] = True
    masks["L1"][3:5, 1:3, 1:3] = True
    node = import_segments(scene, ct_node, list(masks.items()))
    labels = labels_from_node(node, ct_node, scheme, VFA_LEVEL_NAMES)
    assert labels.array_kji[masks["vertebrae_T8"]].tolist() == [t8] * int(masks["vertebrae_T8"].sum())
    assert set(labels.array_kji[masks["L1"]].tolist()) == {l1}
    spine_only = labels_from_node(node, ct_node, scheme)
    assert set(np.unique(spine_only.array_kji).tolist()) == {0, l1}


def test_labels_from_imported_labelmap_segmentation_keep_scheme_values(scene):
    ct_node = update_node_from_volume(small_ct(), name="ct")
    array = np.zeros((6, 7, 8), np.uint8)
    array[1:3, 2:4, 2:5] = 31
    array[4:6, 1:3, 1:3] = 30
    array[0, 0, 0:3] = 5  # not a vertebra in TotalSegmentator numbering
    labelmap = update_node_from_volume(Volume(array, oblique_ijk_to_ras()), name="ts",
                                       node_class="vtkMRMLLabelMapVolumeNode")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "ts segments")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node)
    labels = labels_from_node(node, ct_node, "totalsegmentator")
    expected = np.where(array == 5, 0, array)
    np.testing.assert_array_equal(labels.array_kji, expected)


def test_labels_from_segmentation_without_levels_explain(scene):
    ct_node = update_node_from_volume(small_ct(), name="ct")
    mask = np.zeros((6, 7, 8), bool)
    mask[1:3, 1:3, 1:3] = True
    node = import_segments(scene, ct_node, [("liver", mask)])
    with pytest.raises(ValueError, match="no vertebral level"):
        labels_from_node(node, ct_node)
    with pytest.raises(ValueError, match="Select"):
        labels_from_node(None, ct_node)


# ----------------------------------------------------------------------------- table

def test_spine_table_columns_units_descriptions_and_values(scene):
    result = fake_result()
    table = spine_result_to_table_node(result)
    assert table.IsA("vtkMRMLTableNode")
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    assert names == COLUMN_NAMES == [c.name for c in spine_columns(result)]
    units = {"BMD (mg/cm3)": "mg/cm3", "SD (mg/cm3)": "mg/cm3", "Median (mg/cm3)": "mg/cm3",
             "Mean (HU)": "HU", "SD (HU)": "HU", "Voxels": "voxels", "ROI volume (mm3)": "mm3"}
    for name in names:
        assert table.GetColumnUnitLabel(name) == units.get(name, "")
        assert table.GetColumnDescription(name), f"column {name} has no description"
    assert table.GetNumberOfRows() == len(result.levels)
    for row, lv in enumerate(result.levels):
        assert column(table, "Level").GetValue(row) == lv.level
        assert column(table, "BMD (mg/cm3)").GetValue(row) == lv.bmd_mg_cm3
        assert column(table, "SD (mg/cm3)").GetValue(row) == lv.sd_mg_cm3
        assert column(table, "Median (mg/cm3)").GetValue(row) == lv.median_mg_cm3
        assert column(table, "Mean (HU)").GetValue(row) == lv.mean_hu
        assert column(table, "SD (HU)").GetValue(row) == lv.sd_hu
        assert column(table, "Voxels").GetValue(row) == lv.n_voxels
        assert column(table, "ROI volume (mm3)").GetValue(row) == lv.roi_volume_mm3
    assert [column(table, "Cement augmentation").GetValue(r) for r in range(3)] == ["yes", "no", "no"]
    qc = [column(table, "QC").GetValue(r) for r in range(3)]
    assert qc[:2] == ["pass", "pass"] and qc[2].startswith("FAIL") and "enough_voxels" in qc[2]
    assert [column(table, "Used").GetValue(r) for r in range(3)] == ["yes", "yes", ""]
    assert float(table.GetAttribute("BoneQCT.Spine.MeanBMDMgCm3")) == result.mean_bmd_mg_cm3
    assert table.GetAttribute("BoneQCT.Spine.LevelsUsed") == "L1,L2"
    assert table.GetAttribute("BoneQCT.Spine.Category") == "osteopenia"
    assert float(table.GetAttribute("BoneQCT.Spine.TScore")) == -1.75
    assert table.GetAttribute("BoneQCT.Spine.ZScore") == ""
    assert has_spine_result(table)
    summary = spine_summary_text(table)
    assert "70.0 mg/cm3 K2HPO4" in summary and "osteopenia" in summary and "T-score -1.75" in summary
    assert "Z-score" not in summary and "L3: ROI quality check failed" in summary


def test_uncalibrated_table_has_empty_bmd_and_cement(scene):
    result = fake_result(calibrated=False)
    table = spine_result_to_table_node(result)
    for row in range(3):
        assert math.isnan(column(table, "BMD (mg/cm3)").GetValue(row))
        assert column(table, "Cement augmentation").GetValue(row) == ""
        assert column(table, "Mean (HU)").GetValue(row) == result.levels[row].mean_hu
    assert table.GetAttribute("BoneQCT.Spine.MeanBMDMgCm3") == ""
    assert table.GetAttribute("BoneQCT.Spine.Category") == ""
    assert spine_summary_text(table).startswith("Uncalibrated: mean of L1,L2: 150.2 HU")


def test_spine_table_is_overwritten_in_place(scene):
    table = spine_result_to_table_node(fake_result(), name="first")
    result = fake_result()
    result.levels = result.levels[:1]
    same = spine_result_to_table_node(result, table)
    assert same is table and table.GetNumberOfRows() == 1
    assert table.GetNumberOfColumns() == len(COLUMN_NAMES)


# ----------------------------------------------------------------------------- ROIs

def test_roi_labelmap_is_on_the_ct_grid_with_level_names(scene):
    _pipeline()  # roi_label_map
    ct = small_ct()
    ct_node = update_node_from_volume(ct, name="ct")
    result = fake_result(ct)
    node = roi_labelmap_to_node(volume_from_node(ct_node), result)
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    np.testing.assert_allclose(node_ijk_to_ras(node), node_ijk_to_ras(ct_node), atol=1e-12, rtol=0)
    assert node.GetImageData().GetDimensions() == ct_node.GetImageData().GetDimensions()
    array = slicer.util.arrayFromVolume(node)
    for n, roi in enumerate(result.rois):
        assert np.all(array[roi.mask_kji] == n + 1)
    assert np.count_nonzero(array) == np.count_nonzero(np.any([r.mask_kji for r in result.rois], axis=0))
    colors = node.GetDisplayNode().GetColorNode()
    assert [colors.GetColorName(v) for v in (1, 2, 3)] == ["L1", "L2", "L3"]
    # overwrite in place: the node and its colour table are reused
    again = roi_labelmap_to_node(ct, result, node)
    assert again is node and node.GetDisplayNode().GetColorNode() is colors


def test_roi_segmentation_has_one_segment_per_level(scene):
    _pipeline()  # roi_label_map
    ct = small_ct()
    result = fake_result(ct)
    labelmap = roi_labelmap_to_node(ct, result)
    segmentation_node = roi_segmentation_from_labelmap(labelmap)
    segmentation = segmentation_node.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["L1", "L2", "L3"]
    exported = labels_from_node(segmentation_node, labelmap, "verse")
    expected = np.zeros(ct.array_kji.shape, np.uint8)
    for roi, value in zip(result.rois, (20, 21, 22), strict=True):
        expected[roi.mask_kji] = value
    np.testing.assert_array_equal(exported.array_kji, expected)
    assert roi_segmentation_from_labelmap(labelmap, segmentation_node) is segmentation_node
    assert segmentation.GetNumberOfSegments() == 3


def test_roi_centers_markups(scene):
    result = fake_result()
    node = roi_centers_to_markups(result)
    assert node.IsA("vtkMRMLMarkupsFiducialNode")
    assert node.GetNumberOfControlPoints() == 3
    for index, lv in enumerate(result.levels):
        assert node.GetNthControlPointLabel(index) == lv.level
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPosition(index, position)
        np.testing.assert_array_equal(position, lv.roi_center_ras_mm)
        assert node.GetNthControlPointLocked(index)
    # the centres read back as seeds
    seeds = seeds_from_markups_node(node)
    np.testing.assert_array_equal(seeds["L2"], result.levels[1].roi_center_ras_mm)
    assert roi_centers_to_markups(result, node) is node and node.GetNumberOfControlPoints() == 3


# ----------------------------------------------------------------------------- reference plot

def test_no_reference_curve_no_plot(scene):
    assert reference_plot(fake_result()) is None
    no_curve = {"used": None, "why_absent": ["no reference"], "curve": None, "age_years": None}
    assert reference_plot(fake_result(reference=no_curve)) is None
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode") == 0


@pytest.mark.parametrize("reference", [
    {"curve": {"age_years": [25.0, 35.0, 45.0], "mean": [180.0, 170.0, 150.0], "sd": [25.0, 26.0, 27.0]},
     "age_years": 52.0, "sex": "F"},
    {"age_years": [25.0, 35.0, 45.0], "mean_mg_cm3": [180.0, 170.0, 150.0],
     "sd_mg_cm3": [25.0, 26.0, 27.0], "patient": {"age_years": 52.0, "bmd_mg_cm3": 70.0}},
])
def test_reference_plot_has_curve_band_and_patient(scene, reference):
    result = fake_result(reference=reference)
    chart = reference_plot(result)
    assert chart.IsA("vtkMRMLPlotChartNode")
    series = [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]
    assert len(series) == 4
    mean_table = series[0].GetTableNode()
    np.testing.assert_array_equal(
        [column(mean_table, "Age (years)").GetValue(i) for i in range(3)], [25.0, 35.0, 45.0])
    np.testing.assert_array_equal(
        [column(mean_table, "Mean - 1 SD (mg/cm3)").GetValue(i) for i in range(3)], [155.0, 144.0, 123.0])
    assert mean_table.GetColumnUnitLabel("Mean (mg/cm3)") == "mg/cm3"
    patient = series[-1]
    assert patient.GetYColumnName() == "BMD (mg/cm3)"
    assert column(patient.GetTableNode(), "Age (years)").GetValue(0) == 52.0
    assert column(patient.GetTableNode(), "BMD (mg/cm3)").GetValue(0) == pytest.approx(70.0)
    # replotting without a curve removes the old chart with its series and tables
    assert reference_plot(fake_result(), chart) is None
    for cls in ("vtkMRMLPlotChartNode", "vtkMRMLPlotSeriesNode"):
        assert scene.GetNumberOfNodesByClass(cls) == 0
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 0


# ----------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def phantom():
    from boneqct.phantoms import make_spine_phantom

    return make_spine_phantom()


def test_phantom_end_to_end_table_equals_core_and_truth(scene, phantom):
    pipeline = _pipeline()
    from boneqct.calibration import calibrate_with_phantom

    ct_node = update_node_from_volume(phantom.volume, name="phantom")
    calibration = calibrate_with_phantom(phantom.volume, "mindways-model3")
    calibration_table = calibration_to_table_node(calibration)
    truth = {v["level"]: v for v in phantom.truth["vertebrae"]}
    seeds_node = add_points(scene, [(name, v["body_center_ras_mm"]) for name, v in truth.items()])

    out = run_spine(ct_node, calibration_table, SpineOptions(levels_used=("L1", "L2")),
                    seeds_node=seeds_node)
    expected = pipeline.analyze_spine(
        phantom.volume, calibration, SpineOptions(levels_used=("L1", "L2")),
        seeds={n: np.asarray(v["body_center_ras_mm"]) for n, v in truth.items()})
    result, table = out["result"], out["table"]
    assert [lv.level for lv in result.levels] == [lv.level for lv in expected.levels] == sorted(truth)
    assert table.GetNumberOfRows() == len(expected.levels)
    for row, lv in enumerate(expected.levels):
        assert column(table, "Level").GetValue(row) == lv.level
        assert column(table, "BMD (mg/cm3)").GetValue(row) == lv.bmd_mg_cm3
        assert column(table, "SD (mg/cm3)").GetValue(row) == lv.sd_mg_cm3
        assert column(table, "Median (mg/cm3)").GetValue(row) == lv.median_mg_cm3
        assert column(table, "Mean (HU)").GetValue(row) == lv.mean_hu
        assert column(table, "SD (HU)").GetValue(row) == lv.sd_hu
        assert column(table, "Voxels").GetValue(row) == lv.n_voxels
        assert column(table, "ROI volume (mm3)").GetValue(row) == lv.roi_volume_mm3
        assert column(table, "Cement augmentation").GetValue(row) == ("yes" if lv.cement_augmentation else "no")
        assert column(table, "QC").GetValue(row) == "pass"
        assert column(table, "Used").GetValue(row) == ("yes" if lv.level in ("L1", "L2") else "")
        # 2 %, or 1.5 mg/cm3 at low density: the rod calibration's own intercept error (up to
        # 1.4 HU on this phantom) is about 1.2 mg/cm3, as in test_spine_pipeline
        assert lv.bmd_mg_cm3 == pytest.approx(truth[lv.level]["trabecular_bmd_mg_cm3"], rel=0.02,
                                              abs=1.5)
    assert float(table.GetAttribute("BoneQCT.Spine.MeanBMDMgCm3")) == expected.mean_bmd_mg_cm3
    assert table.GetAttribute("BoneQCT.Spine.Category") == expected.category
    assert table.GetColumnUnitLabel("BMD (mg/cm3)") == "mg/cm3"

    labelmap = out["roi_labelmap"]
    np.testing.assert_allclose(node_ijk_to_ras(labelmap), node_ijk_to_ras(ct_node), atol=1e-12, rtol=0)
    assert labelmap.GetImageData().GetDimensions() == ct_node.GetImageData().GetDimensions()
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(labelmap),
                                  pipeline.roi_label_map(phantom.volume, expected).array_kji)
    segmentation = out["roi_segmentation"].GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] \
        == [lv.level for lv in expected.levels]
    centers = out["roi_centers"]
    for index, lv in enumerate(expected.levels):
        position = [0.0, 0.0, 0.0]
        centers.GetNthControlPointPosition(index, position)
        np.testing.assert_allclose(position, lv.roi_center_ras_mm, atol=1e-9)
    assert (out["chart"] is None) == (expected.reference is None or not expected.reference.get("curve"))

    # a second run reuses the output nodes
    again = run_spine(ct_node, calibration_table, seeds_node=seeds_node, table_node=table,
                      roi_labelmap_node=labelmap, roi_segmentation_node=out["roi_segmentation"],
                      roi_centers_node=centers)
    assert again["table"] is table and again["roi_labelmap"] is labelmap
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 1


def test_phantom_label_map_input_and_uncalibrated(scene, phantom):
    _pipeline()
    from boneqct.spine.levels import label_for_level

    ct_node = update_node_from_volume(phantom.volume, name="phantom")
    # the phantom's vertebra labels, renumbered to TotalSegmentator values
    labels = np.zeros(phantom.labels.array_kji.shape, np.uint8)
    for v in phantom.truth["vertebrae"]:
        labels[phantom.labels.array_kji == v["label"]] = label_for_level(v["level"], "totalsegmentator")
    if not labels.any():
        pytest.skip("the phantom's label map has no vertebra labels")
    labels_node = update_node_from_volume(phantom.labels.with_array(labels), name="vertebrae",
                                          node_class="vtkMRMLLabelMapVolumeNode")
    out = run_spine(ct_node, None, SpineOptions(label_scheme="totalsegmentator",
                                                levels_used=("L1", "L2"), exclude=("L2",)),
                    labels_node=labels_node)
    result, table = out["result"], out["table"]
    assert not result.calibrated and result.levels
    assert result.levels_used == ["L1", "L3"]  # excluded L2 replaced by the nearest usable
    used = {column(table, "Level").GetValue(r): column(table, "Used").GetValue(r)
            for r in range(table.GetNumberOfRows())}
    assert used["L1"] == "yes" and used["L2"] == "excluded"
    for row, lv in enumerate(result.levels):
        assert math.isnan(column(table, "BMD (mg/cm3)").GetValue(row))
        assert column(table, "Mean (HU)").GetValue(row) == lv.mean_hu
    assert table.GetAttribute("BoneQCT.Spine.Calibrated") == "false"


def test_level_not_measured_has_empty_values_and_its_reason(scene):
    from boneqct.spine.pipeline import LevelResult

    result = fake_result()
    result.levels = result.levels + [LevelResult(level="L4", measured=False,
                                                 reason="L4 is cut by the end of the scan")]
    table = spine_result_to_table_node(result)
    row = table.GetNumberOfRows() - 1
    assert column(table, "Level").GetValue(row) == "L4"
    assert math.isnan(column(table, "Mean (HU)").GetValue(row))
    assert column(table, "Voxels").GetValue(row) == 0
    assert column(table, "Not measured because").GetValue(row) == "L4 is cut by the end of the scan"
    assert column(table, "Not measured because").GetValue(0) == ""


def test_run_spine_needs_a_volume_and_an_input(scene):
    with pytest.raises(ValueError, match="CT volume"):
        run_spine(None)
    ct_node = update_node_from_volume(small_ct(), name="ct")
    with pytest.raises(ValueError, match="seed points"):
        run_spine(ct_node)


# ----------------------------------------------------------------------------- report from the scene

def _measured_phantom(phantom, table_node=None, roi_labelmap_node=None, thickness_mm=9.0):
    """The CT node and run_spine outputs of the calibrated phantom (seeds at the true centres)."""
    from boneqct.calibration import calibrate_with_phantom

    ct_node = slicer.mrmlScene.GetFirstNodeByName("phantom") or update_node_from_volume(
        phantom.volume, name="phantom")
    calibration_table = calibration_to_table_node(calibrate_with_phantom(phantom.volume, "mindways-model3"))
    seeds_node = add_points(slicer.mrmlScene, [(v["level"], v["body_center_ras_mm"])
                                               for v in phantom.truth["vertebrae"]])
    return ct_node, run_spine(ct_node, calibration_table,
                              SpineOptions(levels_used=("L1", "L2"), roi_thickness_mm=thickness_mm),
                              seeds_node=seeds_node, age_years=67.0, sex="F",
                              table_node=table_node, roi_labelmap_node=roi_labelmap_node)


def test_spine_report_exports_again_from_the_saved_and_reloaded_scene(scene, phantom, tmp_path):
    """The report is written from the table alone (document, exam, referenced CT and ROI label
    map): after the scene is saved (tables, NRRD volumes) and reloaded into a new scene, it
    exports again and equals the one exported before saving."""
    pytest.importorskip("reportlab")
    pytest.importorskip("pypdf")
    from test_mrml_adapters import report_text, save_with_volumes_and_reload

    from BoneQCTLib.tables import read_document, read_exam

    ct_node, out = _measured_phantom(phantom)
    table = out["table"]
    assert table.GetNodeReference(CT_VOLUME_ROLE) is ct_node
    assert table.GetNodeReference(ROI_LABELMAP_ROLE) is out["roi_labelmap"]
    assert can_export_spine_report(table)
    before = export_spine_report(tmp_path / "before.pdf", table)
    document, exam = read_document(table, "Spine"), read_exam(table)
    assert exam == {"series_description": "phantom", "patient_age_years": 67.0, "patient_sex": "F"}

    folder = tmp_path / "scene"
    folder.mkdir()
    reloaded = save_with_volumes_and_reload(scene, folder)
    slicer.mrmlScene = reloaded
    table_again = reloaded.GetNodeByID(table.GetID())
    assert read_document(table_again, "Spine") == document and read_exam(table_again) == exam
    assert table_again.GetNodeReference(CT_VOLUME_ROLE).GetName() == "phantom"
    np.testing.assert_array_equal(
        slicer.util.arrayFromVolume(table_again.GetNodeReference(ROI_LABELMAP_ROLE)),
        slicer.util.arrayFromVolume(out["roi_labelmap"]))
    assert can_export_spine_report(table_again)
    after = export_spine_report(tmp_path / "after.pdf", table_again)
    text = report_text(after)
    assert text == report_text(before)
    assert "F / 67 y" in text and "L1" in text and "generated" in text
    assert after.stat().st_size > 10000  # the level views are drawn


def test_spine_report_refuses_a_stale_or_missing_roi_label_map(scene, phantom, tmp_path):
    """A table whose ROI label map was overwritten by a later measurement, or whose CT was
    deleted, can not be reported (it would show another measurement's ROIs)."""
    pytest.importorskip("reportlab")
    ct_node, first = _measured_phantom(phantom)
    _, second = _measured_phantom(phantom, roi_labelmap_node=first["roi_labelmap"], thickness_mm=5.0)
    assert second["table"] is not first["table"]
    with pytest.raises(ValueError, match="no longer holds the ROIs"):
        export_spine_report(tmp_path / "stale.pdf", first["table"])
    assert export_spine_report(tmp_path / "current.pdf", second["table"]).stat().st_size > 10000
    scene.RemoveNode(ct_node)
    assert not can_export_spine_report(second["table"])
    with pytest.raises(ValueError, match="no longer references its CT"):
        export_spine_report(tmp_path / "no_ct.pdf", second["table"])
    assert not can_export_spine_report(scene.AddNewNodeByClass("vtkMRMLTableNode", "empty"))
    with pytest.raises(ValueError, match="holds no spine measurement"):
        export_spine_report(tmp_path / "none.pdf", scene.GetFirstNodeByName("empty"))


class _FakeDicomDatabase:
    """Slicer's DICOM database as the adapters use it: instance UID -> file."""

    def __init__(self, files):
        self.files = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): str(f)
                      for f in files}

    def fileForInstance(self, uid):
        return self.files.get(uid, "")


def test_exam_from_the_dicom_database_reaches_table_and_analysis(scene, phantom, tmp_path, monkeypatch):
    """A CT loaded from Slicer's DICOM database: its header's exam (patient, date, scanner, kVp)
    is the volume's metadata and the table's exam document, and the header's age and sex
    are used when the module gives none (as the command line does)."""
    from boneqct.io.dicom_writer import write_dicom_series

    files = write_dicom_series(phantom.volume, tmp_path / "dicom", kvp=120.0, study_date="20260310",
                               patient={"name": "DOE^JANE", "id": "P-77", "sex": "F",
                                        "birth_date": "19560310"})
    monkeypatch.setattr(slicer, "dicomDatabase", _FakeDicomDatabase(files), raising=False)
    ct_node = update_node_from_volume(phantom.volume, name="phantom")
    ct_node.SetAttribute("DICOM.instanceUIDs", " ".join(_FakeDicomDatabase(files).files))
    from boneqct.calibration import calibrate_with_phantom

    calibration_table = calibration_to_table_node(calibrate_with_phantom(phantom.volume, "mindways-model3"))
    seeds_node = add_points(scene, [(v["level"], v["body_center_ras_mm"])
                                    for v in phantom.truth["vertebrae"]])
    out = run_spine(ct_node, calibration_table, seeds_node=seeds_node)
    exam = read_exam(out["table"])
    assert exam["patient_name"] == "DOE^JANE" and exam["patient_id"] == "P-77"
    assert exam["kvp"] == 120.0 and exam["study_date"] == "2026-03-10"
    assert exam["patient_sex"] == "F" and exam["patient_age_years"] == 70
    # without the database the metadata is empty and the node's name names the series
    monkeypatch.setattr(slicer, "dicomDatabase", None)
    assert volume_from_node(ct_node).metadata == {}


@pytest.fixture(scope="module")
def tilted_phantom():
    """The default phantom with its spine tilted 8 degrees: its endplates cross the slices
    (untilted, they lie parallel to its 2 mm slices and no level is graded)."""
    from boneqct.phantoms import SpinePhantomParams, make_spine_phantom

    return make_spine_phantom(SpinePhantomParams(spine_tilt_deg=8.0))


def test_fracture_heights_in_the_scene_and_grades_recomputed_from_moved_lines(scene,
                                                                             tilted_phantom):
    """run_spine puts each level's three heights as line nodes and the grades in a fracture
    table, both referenced by the spine table; moving a line's superior point recomputes that
    height (its new length) and the grade; a second measurement replaces the lines."""
    from QCTBoneDensityLib.fracture import HEIGHT_LINES_ROLE, assessed_levels, recompute_grades

    ct_node, out = _measured_phantom(tilted_phantom)
    measured = [lv.level for lv in out["result"].levels if lv.fracture]
    assert measured and len(out["height_lines"]) == 3 * len(measured)
    assert out["fracture_table"].GetNumberOfRows() == len(measured)
    assert assessed_levels(out["table"]) == measured
    # the first level graded
    level = next(lv.level for lv in out["result"].levels
                 if lv.fracture and lv.fracture["genant_grade"] is not None)
    line = next(n for n in out["height_lines"] if n.GetAttribute("BoneQCT.Fracture.Level") == level
                and n.GetAttribute("BoneQCT.Fracture.Height") == "anterior")
    before = out["result"].levels[[lv.level for lv in out["result"].levels].index(level)]
    superior = np.zeros(3)
    line.GetNthControlPointPositionWorld(0, superior)
    inferior = np.zeros(3)
    line.GetNthControlPointPositionWorld(1, inferior)
    shortened = superior + 0.3 * (inferior - superior)  # the anterior height 30 % lower
    line.SetNthControlPointPositionWorld(0, *shortened)
    fractures = recompute_grades(out["table"])
    assert fractures[level]["heights_mm"]["anterior"] == pytest.approx(
        0.7 * np.linalg.norm(inferior - superior), rel=1e-6)
    # a 30 % lower anterior height: Genant grade 2 (25-40 %), a wedge; the phantom's own is 0
    assert before.fracture["genant_grade"] == 0
    assert (fractures[level]["genant_grade"], fractures[level]["type"]) == (2, "wedge")
    # measuring again with the same table replaces the lines, not adds to them
    again = run_spine(ct_node, calibration_to_table_node(out["result"].calibration),
                      SpineOptions(levels_used=("L1", "L2")),
                      seeds_node=scene.GetFirstNodeByClass("vtkMRMLMarkupsFiducialNode"),
                      table_node=out["table"])
    assert again["table"].GetNumberOfNodeReferences(HEIGHT_LINES_ROLE) == 3 * len(measured)
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode") == 3 * len(measured)
