"""Screw planning MRML adapter tests on Slicer's real MRML libraries (PyPI ``slicer-core``):
markups lines in, the screws table (every cell against the core's result) and the cylinder
model nodes out, on a uniform block of known density. Skipped when slicer-core is absent."""

from __future__ import annotations

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

from QCTBoneDensityLib.screw import (  # noqa: E402
    SCREW_KIND,
    run_screws,
    screw_lines_from_nodes,
)

from boneqct.calibration import manual_calibration  # noqa: E402
from boneqct.screw.pipeline import ScrewResult  # noqa: E402
from boneqct.volume import Volume, ijk_to_ras_matrix  # noqa: E402
from BoneQCTLib.calibration import calibration_to_table_node  # noqa: E402
from BoneQCTLib.tables import read_document  # noqa: E402
from BoneQCTLib.volumes import update_node_from_volume  # noqa: E402

SLOPE, INTERCEPT, BMD = 1.25, -10.0, 140.0


@pytest.fixture
def scene():
    """A fresh MRML scene installed as ``slicer.mrmlScene``."""
    slicer.mrmlScene = vtkMRMLScene()
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(True)


def add_line(scene, name, entry, tip):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", name)
    node.AddControlPoint(*entry)
    node.AddControlPoint(*tip)
    return node


def block_node():
    """A uniform block of BMD mg/cm3 (1 x 1 x 1.5 mm voxels) centred near RAS 0."""
    array = np.full((40, 60, 60), SLOPE * BMD + INTERCEPT, np.float32)
    return update_node_from_volume(Volume(array, ijk_to_ras_matrix([-30, -30, -30], [1, 1, 1.5])),
                                   name="ct")


def test_lines_from_markups_are_the_placed_ras_points(scene):
    node = add_line(scene, "L4_left", (-22.5, -60.0, 10.0), (-5.0, -25.0, 12.0))
    line = screw_lines_from_nodes([node])[0]
    assert line.name == "L4_left"
    np.testing.assert_array_equal(line.entry_ras_mm, [-22.5, -60.0, 10.0])
    np.testing.assert_array_equal(line.tip_ras_mm, [-5.0, -25.0, 12.0])
    assert screw_lines_from_nodes([node], length_mm=10.0)[0].length_mm == pytest.approx(10.0)
    half = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "half")
    half.AddControlPoint(0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="1 placed points"):
        screw_lines_from_nodes([half])
    with pytest.raises(ValueError, match="at least one markups line"):
        screw_lines_from_nodes([])


def test_run_screws_writes_table_and_cylinder_models(scene):
    ct = block_node()
    calibration = calibration_to_table_node(manual_calibration(SLOPE, INTERCEPT, "K2HPO4"))
    lines = [add_line(scene, "a", (-10.0, -12.0, -3.0), (-2.0, 9.0, 4.0)),
             add_line(scene, "out", (0.0, 0.0, 0.0), (0.0, 0.0, 80.0))]
    out = run_screws(ct, calibration, line_nodes=lines)
    result, table = out["result"], out["table"]
    assert table.GetNumberOfRows() == 2
    assert table.GetColumnUnitLabel("BMD (mg/cm3)") == "mg/cm3"
    assert table.GetColumnDescription("Cortical contact (%)")
    measured, refused = result.screws
    assert measured.bmd_mg_cm3 == pytest.approx(BMD, rel=0.01)
    cell = table.GetTable().GetColumnByName("BMD (mg/cm3)")
    assert cell.GetValue(0) == pytest.approx(measured.bmd_mg_cm3, abs=1e-9)
    assert math.isnan(cell.GetValue(1))
    reasons = table.GetTable().GetColumnByName("Not measured because")
    assert "outside the image" in reasons.GetValue(1)
    assert table.GetTable().GetColumnByName("Cement suggested").GetValue(0) == "no"
    assert table.GetTable().GetColumnByName("QC").GetValue(0) == "pass"
    document = read_document(table, SCREW_KIND)
    assert ScrewResult.from_dict(document).to_dict()["screws"] == result.to_dict()["screws"]
    # the cylinder model: radius and ends of the screw
    model = out["models"]["a"]
    points = slicer.util.arrayFromModelPoints(model)
    entry, tip = np.array(measured.entry_ras_mm), np.array(measured.tip_ras_mm)
    axis = (tip - entry) / np.linalg.norm(tip - entry)
    t = (points - entry) @ axis
    radial = np.linalg.norm(points - entry - t[:, None] * axis, axis=1)
    np.testing.assert_allclose(radial, measured.diameter_mm / 2, atol=1e-3)
    assert t.min() == pytest.approx(0.0, abs=1e-3)
    assert t.max() == pytest.approx(measured.length_mm, abs=1e-3)
    # running again overwrites the same nodes
    again = run_screws(ct, calibration, line_nodes=lines, table_node=table,
                       model_nodes=out["models"])
    assert again["table"] is table and again["models"]["a"] is model
    assert scene.GetNumberOfNodesByClass("vtkMRMLModelNode") == 2
