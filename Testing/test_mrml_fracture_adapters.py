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

from QCTBoneDensityLib.fracture import (  # noqa: E402
    FRACTURE_COLUMNS,
    HEIGHT_LINES_ROLE,
    HEIGHTS,
    assessed_levels,
    fractures_from_markups,
    fractures_to_table_node,
    height_lines_to_markups,
    reformat_sagittal,
    show_level_in_slice_view,
)

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
