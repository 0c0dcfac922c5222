"""Fracture-assessment MRML adapter tests on Slicer's real MRML libraries (PyPI ``slicer-core``):
height lines as markups, the grade table, and grades recomputed after the reader moves points.
Skipped as a whole when slicer-core is not installed."""

from __future__ import annotations

import json
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

from phantom_labels import vertebra_labels  # noqa: E402
from QCTBoneDensityLib.fracture import (  # noqa: E402
    FRACTURE_COLUMNS,
    HEIGHT_LINES_ROLE,
    HEIGHTS,
    assessed_levels,
    fractures_from_markups,
    fractures_to_table_node,
    height_lines_to_markups,
    recompute_grades,
    reformat_sagittal,
    show_level_in_slice_view,
)

from boneqct.phantoms.anatomy import anatomical_spine_params  # noqa: E402
from boneqct.spine.fracture import grade_levels  # noqa: E402

AXIS = np.array([0.0, np.sin(np.radians(10.0)), np.cos(np.radians(10.0))])  # tilted body axis
ANTERIOR = np.array([0.0, np.cos(np.radians(10.0)), -np.sin(np.radians(10.0))])


@pytest.fixture
def scene():
    """A fresh MRML scene installed as ``slicer.mrmlScene``."""
    slicer.mrmlScene = vtkMRMLScene()
    slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSelectionNode")  # line lengths' unit node
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(True)


def _level(center_s_mm: float, heights: dict, axis=AXIS, anterior=ANTERIOR) -> dict:
    """A measured level: the six points about a centre on a body axis (RAS mm)."""
    axis, anterior = np.asarray(axis, float), np.asarray(anterior, float)
    center = np.array([0.0, -25.0, 0.0]) + center_s_mm * axis
    points = {name: {"superior": (center + offset * anterior + heights[name] / 2 * axis).tolist(),
                     "inferior": (center + offset * anterior - heights[name] / 2 * axis).tolist()}
              for name, offset in (("anterior", 14.0), ("middle", 0.0), ("posterior", -14.0))}
    return {"heights_mm": dict(heights), "points_ras_mm": points,
            "quality": {"passed": True, "reason": None}}


def _fractures() -> dict:
    normal = {"anterior": 24.0, "middle": 24.0, "posterior": 24.0}
    return grade_levels({"L1": _level(34.0, normal),
                         "L2": _level(0.0, {"anterior": 16.0, "middle": 20.0, "posterior": 24.0}),
                         "L3": _level(-34.0, normal)})


def test_height_lines_hold_the_six_points_of_each_level(scene):
    fractures = _fractures()
    nodes = height_lines_to_markups(fractures, name="exam")
    assert len(nodes) == 3 * len(HEIGHTS)
    assert all(n.GetClassName() == "vtkMRMLMarkupsLineNode" for n in nodes)
    l2_anterior = next(n for n in nodes if n.GetName() == "exam L2 anterior height")
    assert l2_anterior.GetLineLengthWorld() == pytest.approx(16.0, abs=1e-6)
    position = np.zeros(3)
    l2_anterior.GetNthControlPointPositionWorld(0, position)
    np.testing.assert_allclose(position, fractures["L2"]["points_ras_mm"]["anterior"]["superior"],
                               atol=1e-6)
    # read back unmoved: the same heights, grades and types as the core gave
    again = fractures_from_markups(nodes)
    assert again["L2"]["genant_grade"] == fractures["L2"]["genant_grade"] == 2  # 33 % lower
    assert again["L2"]["type"] == "wedge"
    assert again["L2"]["heights_mm"]["anterior"] == pytest.approx(16.0, abs=1e-6)


def test_moving_points_recomputes_the_grade(scene):
    nodes = height_lines_to_markups(_fractures())
    line = next(n for n in nodes if n.GetName().endswith("L2 anterior height"))
    superior = np.zeros(3)
    line.GetNthControlPointPositionWorld(0, superior)
    line.SetNthControlPointPositionWorld(0, *(superior + 3.0 * AXIS))  # the reader: 19 mm
    recomputed = fractures_from_markups(nodes)
    assert recomputed["L2"]["heights_mm"]["anterior"] == pytest.approx(19.0, abs=1e-6)
    assert recomputed["L2"]["height_ratios"]["anterior_posterior"] == pytest.approx(19.0 / 24.0)
    assert (recomputed["L2"]["genant_grade"], recomputed["L2"]["type"]) == (1, "wedge")
    assert recomputed["L2"]["quality"]["points"] == "placed by the reader"


def test_a_level_not_graded_stays_so_until_the_reader_moves_its_points(scene):
    """Recomputing from unmoved lines keeps a level's measured checks: L2, whose heights
    failed them, stays ungraded with its reason (and out of L1's and L3's crush ratios);
    once the reader moves one of its points, it is graded from the points as placed."""
    fractures = _fractures()
    fractures["L2"]["quality"] = {"passed": False, "reason": "its endplates were not seen"}
    nodes = height_lines_to_markups(grade_levels(
        {level: {k: f[k] for k in ("heights_mm", "points_ras_mm", "quality")}
         for level, f in fractures.items()}))
    unmoved = fractures_from_markups(nodes)
    assert unmoved["L2"]["genant_grade"] is None
    assert "its endplates were not seen" in unmoved["L2"]["reason"]
    assert unmoved["L1"]["height_ratios"]["posterior_adjacent"] is None  # L2 is not a reference
    line = next(n for n in nodes if n.GetName().endswith("L2 anterior height"))
    superior = np.zeros(3)
    line.GetNthControlPointPositionWorld(0, superior)
    line.SetNthControlPointPositionWorld(0, *(superior + 1.0 * AXIS))  # the reader: 17 mm
    moved = fractures_from_markups(nodes)
    assert moved["L2"]["quality"]["points"] == "placed by the reader"
    assert moved["L2"]["genant_grade"] == 2  # 17 / 24: 29 % lower
    assert moved["L1"]["height_ratios"]["posterior_adjacent"] == pytest.approx(1.0)


def test_grade_table_has_units_descriptions_and_the_document(scene):
    fractures = _fractures()
    fractures["L4"] = None  # a level without an assessment still gets its row
    table = fractures_to_table_node(fractures)
    assert table.GetNumberOfRows() == 4
    assert [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())] == \
        [c.name for c in FRACTURE_COLUMNS]
    assert table.GetColumnUnitLabel("Anterior height (mm)") == "mm"
    assert table.GetColumnDescription("Genant grade")
    assert table.GetCellText(1, 0) == "L2"
    assert float(table.GetCellText(1, 1)) == pytest.approx(16.0)
    assert table.GetCellText(1, 7) == "2" and table.GetCellText(1, 8) == "wedge"
    assert table.GetCellText(0, 7) == "0"
    assert table.GetCellText(3, 7) == "-1" and math.isnan(float(table.GetCellText(3, 1)))
    document = json.loads(table.GetAttribute("BoneQCT.Fracture.JSON"))
    assert document["levels"]["L2"]["genant_grade"] == 2


def test_sagittal_reformat_is_slicers_sagittal_through_the_six_points(scene):
    import vtk
    from slicer import vtkMRMLSliceNode

    fractures = _fractures()
    slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    # an upright body: exactly Slicer's own sagittal orientation (anterior on the left)
    upright = _level(0.0, {h: 24.0 for h in HEIGHTS}, axis=[0, 0, 1], anterior=[0, 1, 0])
    reformat_sagittal(slice_node, upright, [0.0, 0.0, 1.0], [0.0, 1.0, 0.0])
    sagittal = vtk.vtkMatrix3x3()
    vtkMRMLSliceNode.GetSagittalSliceToRASMatrix(sagittal)
    matrix = slice_node.GetSliceToRAS()
    for row in range(3):
        for col in range(3):
            assert matrix.GetElement(row, col) == pytest.approx(sagittal.GetElement(row, col))
    np.testing.assert_allclose([matrix.GetElement(r, 3) for r in range(3)], [0.0, -25.0, 0.0],
                               atol=1e-9)
    # the tilted body: its six points lie in the view's plane, the axis points up
    reformat_sagittal(slice_node, fractures["L2"], AXIS, ANTERIOR)
    matrix = slice_node.GetSliceToRAS()
    normal = np.array([matrix.GetElement(r, 2) for r in range(3)])
    origin = np.array([matrix.GetElement(r, 3) for r in range(3)])
    for pair in fractures["L2"]["points_ras_mm"].values():
        for point in pair.values():
            assert abs((np.array(point) - origin) @ normal) < 1e-9
    np.testing.assert_allclose([matrix.GetElement(r, 1) for r in range(3)], AXIS, atol=1e-12)


def test_a_level_is_shown_in_its_mid_sagittal_plane_from_its_lines(scene):
    """The panel's "Show in sagittal view": the slice view through a level's height lines as
    they are in the scene, its axis up and anterior on the left (Slicer's sagittal)."""
    spine_table = scene.AddNewNodeByClass("vtkMRMLTableNode", "spine")
    for node in height_lines_to_markups(_fractures()):
        spine_table.AddNodeReferenceID(HEIGHT_LINES_ROLE, node.GetID())
    assert assessed_levels(spine_table) == ["L1", "L2", "L3"]
    assert assessed_levels(None) == []
    slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    show_level_in_slice_view(spine_table, "L2", slice_node)
    matrix = slice_node.GetSliceToRAS()
    column = lambda c: np.array([matrix.GetElement(r, c) for r in range(3)])  # noqa: E731
    np.testing.assert_allclose(column(1), AXIS, atol=1e-12)  # up: the body axis
    np.testing.assert_allclose(column(0), -ANTERIOR, atol=1e-12)  # right of view: posterior
    for pair in _fractures()["L2"]["points_ras_mm"].values():
        for point in pair.values():
            assert abs((np.array(point) - column(3)) @ column(2)) < 1e-9
    with pytest.raises(ValueError, match="L4 has no height lines"):
        show_level_in_slice_view(spine_table, "L4", slice_node)


def test_a_line_along_a_leaning_wall_does_not_tilt_the_view(scene):
    """A level whose anterior line follows a wall leaning 20 degrees (its ends moved along the
    endplates, as the measurement places them): the view's up is still the body axis (it was
    the mean of the lines' directions: 6.9 degrees off)."""
    level = _level(0.0, {"anterior": 24.0, "middle": 24.0, "posterior": 24.0})
    for end, sign in (("superior", 1.0), ("inferior", -1.0)):
        point = np.array(level["points_ras_mm"]["anterior"][end])
        level["points_ras_mm"]["anterior"][end] = (
            point + sign * 12.0 * np.tan(np.radians(20.0)) * ANTERIOR).tolist()
    spine_table = scene.AddNewNodeByClass("vtkMRMLTableNode", "spine")
    for node in height_lines_to_markups(grade_levels({"L2": level})):
        spine_table.AddNodeReferenceID(HEIGHT_LINES_ROLE, node.GetID())
    slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    show_level_in_slice_view(spine_table, "L2", slice_node)
    matrix = slice_node.GetSliceToRAS()
    np.testing.assert_allclose([matrix.GetElement(r, 1) for r in range(3)], AXIS, atol=1e-9)
    np.testing.assert_allclose([matrix.GetElement(r, 0) for r in range(3)], -ANTERIOR, atol=1e-9)
    # the anterior line dragged onto the posterior one: a clear error, not a view of NaNs
    level["points_ras_mm"]["anterior"] = dict(level["points_ras_mm"]["posterior"])
    dragged = scene.AddNewNodeByClass("vtkMRMLTableNode", "dragged")
    for node in height_lines_to_markups(grade_levels({"L2": level})):
        dragged.AddNodeReferenceID(HEIGHT_LINES_ROLE, node.GetID())
    with pytest.raises(ValueError, match="L2's height lines do not span a plane"):
        show_level_in_slice_view(dragged, "L2", slice_node)
    # one line's ends dragged together: the others still orient the view
    level = _level(0.0, {"anterior": 24.0, "middle": 24.0, "posterior": 24.0})
    level["points_ras_mm"]["middle"]["inferior"] = level["points_ras_mm"]["middle"]["superior"]
    collapsed = scene.AddNewNodeByClass("vtkMRMLTableNode", "collapsed")
    for node in height_lines_to_markups(grade_levels({"L2": level})):
        collapsed.AddNodeReferenceID(HEIGHT_LINES_ROLE, node.GetID())
    show_level_in_slice_view(collapsed, "L2", slice_node)
    matrix = slice_node.GetSliceToRAS()
    np.testing.assert_allclose([matrix.GetElement(r, 1) for r in range(3)], AXIS, atol=1e-9)


# ----------------------------------------------------------------------------- thoracic levels

#: T9-L1 with their own body sizes, a wedge (anterior height -32 %) at T10, tilted 5 degrees.
THORACIC_LEVELS = ("T9", "T10", "T11", "T12", "L1")
THORACIC_PARAMS = anatomical_spine_params(THORACIC_LEVELS, spine_tilt_deg=5.0,
                                          phantom_present=False, deformities=(("T10", "wedge"),))
THORACIC_SCANNER = dict(pixel_mm=0.8, matrix=(100, 150), n_slices=85, slice_spacing_mm=2.0,
                        slice_thickness_mm=2.0, fov_center_ras_mm=(0.0, -45.0), noise_sd_hu=15.0,
                        supersample=2)


@pytest.fixture(scope="module")
def thoracic_phantom():
    from boneqct.phantoms import ScannerParams, make_spine_phantom

    return make_spine_phantom(THORACIC_PARAMS, ScannerParams(**THORACIC_SCANNER), seed=17)


@pytest.mark.parametrize("source", ["seeds", "labels"])
def test_thoracic_levels_are_graded_in_the_fracture_table_and_shown_sagittally(
        scene, thoracic_phantom, source):
    """Seeds or labels naming T9-L1: BMD for T11-L1 only (the spine measurement's levels),
    heights and grades for all five (the T10 wedge graded from its true heights, the others
    0), T10 compared with T11 for the crush ratio, the sagittal view through T10's lines."""
    from QCTBoneDensityLib.fracture import FRACTURE_TABLE_ROLE
    from QCTBoneDensityLib.spine import run_spine

    from boneqct.phantoms.anatomy import Anatomy
    from boneqct.spine.fracture import genant_grade
    from boneqct.spine.levels import LEVEL_NAMES
    from BoneQCTLib.volumes import update_node_from_volume

    phantom = thoracic_phantom
    ct_node = update_node_from_volume(phantom.volume, name="thoracic phantom")
    truth = {v["level"]: v for v in phantom.truth["vertebrae"]}
    if source == "seeds":
        inputs = {"seeds_node": scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")}
        for level, vertebra in truth.items():
            inputs["seeds_node"].AddControlPoint(*vertebra["body_center_ras_mm"], level)
    else:
        inputs = {"labels_node": update_node_from_volume(
            vertebra_labels(phantom, "totalsegmentator"), name="vertebrae",
            node_class="vtkMRMLLabelMapVolumeNode")}
    outputs = run_spine(ct_node, None, **inputs)
    # BMD: the spine measurement's levels only
    assert [lv.level for lv in outputs["result"].levels] == ["T11", "T12", "L1"]
    assert set(outputs["result"].levels_used) <= set(LEVEL_NAMES)
    table = outputs["table"]
    assert [table.GetCellText(row, 0) for row in range(table.GetNumberOfRows())] == ["T11", "T12", "L1"]
    # fractures: every level, cranial first
    fracture_table = table.GetNodeReference(FRACTURE_TABLE_ROLE)
    assert fracture_table is outputs["fracture_table"]
    assert [fracture_table.GetCellText(row, 0) for row in range(fracture_table.GetNumberOfRows())] \
        == list(THORACIC_LEVELS)
    assert assessed_levels(table) == list(THORACIC_LEVELS)
    document = json.loads(fracture_table.GetAttribute("BoneQCT.Fracture.JSON"))["levels"]
    anatomy = Anatomy(THORACIC_PARAMS)
    for row, level in enumerate(THORACIC_LEVELS):
        fracture = document[level]
        assert fracture["quality"]["passed"], (level, fracture["quality"]["reason"])
        if level == "T10":
            points = fracture["points_ras_mm"]
            true_mm = {name: anatomy.body_height_mm(level, (np.array(p["superior"]) + p["inferior"]) / 2)
                       - truth[level]["cortical_thickness_mm"] for name, p in points.items()}
            expected = genant_grade(1.0 - true_mm["anterior"] / true_mm["posterior"])
            assert expected >= 2 and (fracture["genant_grade"], fracture["type"]) == (expected, "wedge")
        else:
            assert (fracture["genant_grade"], fracture["type"]) == (0, None), level
        assert fracture_table.GetCellText(row, 7) == str(fracture["genant_grade"])
    posterior = {level: document[level]["heights_mm"]["posterior"] for level in THORACIC_LEVELS}
    for level, cranial in (("T10", "T9"), ("T11", "T10")):  # T10 and T11 see each other
        caudal = THORACIC_LEVELS[THORACIC_LEVELS.index(level) + 1]
        assert document[level]["height_ratios"]["posterior_adjacent"] == pytest.approx(
            posterior[level] / np.mean([posterior[cranial], posterior[caudal]]))
    # the reader's recompute from the lines as placed grades every level as the table does
    recomputed = recompute_grades(table)
    for level in THORACIC_LEVELS:
        assert recomputed[level]["genant_grade"] == document[level]["genant_grade"], level
        assert recomputed[level]["height_ratios"] == pytest.approx(document[level]["height_ratios"])
    # the spine's levels keep the grades of the spine measurement (they decide its BMD mean)
    for lv in outputs["result"].levels:
        assert document[lv.level]["genant_grade"] == lv.fracture["genant_grade"]
    assert any(w.startswith("T10: moderate wedge deformity") for w in outputs["thoracic"].warnings)
    # "Show in sagittal view" for a thoracic level: its axis up, its six points in the plane
    slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    show_level_in_slice_view(table, "T10", slice_node)
    matrix = slice_node.GetSliceToRAS()
    column = lambda c: np.array([matrix.GetElement(r, c) for r in range(3)])  # noqa: E731
    assert column(1) @ np.array(truth["T10"]["body_axis_ras"]) > np.cos(np.radians(3.0))
    for pair in document["T10"]["points_ras_mm"].values():
        for point in pair.values():
            assert abs((np.array(point) - column(3)) @ column(2)) < 1e-6


def test_seeds_of_thoracic_levels_only_say_what_the_spine_measurement_needs(scene, thoracic_phantom):
    from QCTBoneDensityLib.spine import run_spine

    from BoneQCTLib.volumes import update_node_from_volume

    ct_node = update_node_from_volume(thoracic_phantom.volume, name="thoracic phantom")
    seeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
    seeds.AddControlPoint(0.0, -25.0, 40.0, "T9")
    with pytest.raises(ValueError, match="only thoracic levels .T9.*at least one of T11, T12"):
        run_spine(ct_node, None, seeds_node=seeds)
