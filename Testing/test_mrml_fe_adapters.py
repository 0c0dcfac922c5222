"""FiniteElement MRML adapters on Slicer's real MRML libraries (PyPI ``slicer-core``): the mesh
as a model node with cell fields, the results table with units, the load-displacement chart,
and the whole scene -> core -> scene run on the digital phantom."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
pytest.importorskip("slicer.util")
from slicer import vtkMRMLScene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "QCTBoneDensity"))
sys.path.insert(0, str(REPO / "FiniteElement"))

from FiniteElementLib import (  # noqa: E402
    COLOR_FIELDS,
    color_model_by,
    fe_document_from_table_node,
    run_fe,
    update_node_from_volume,
)
from QCTBoneDensityLib import calibration_to_table_node  # noqa: E402

from boneqct.calibration import manual_calibration  # noqa: E402
from boneqct.phantoms import make_spine_phantom  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    return make_spine_phantom()


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
    out = run_fe(ct_node, table, "L2", seeds_node=seeds, element_mm=2.0, criterion="nonlinear",
                 sex="F")
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
    fragile = t.GetTable().GetColumnByName("Fragile").GetValue(0)
    assert fragile == ("yes" if result.strength_n <= 4500.0 else "no")
    # Chart: the nonlinear load-displacement curve.
    chart = out["chart"]
    series = chart.GetNthPlotSeriesNode(0)
    curve_table = series.GetTableNode().GetTable()
    forces = [curve_table.GetColumnByName("Force (N)").GetValue(i)
              for i in range(curve_table.GetNumberOfRows())]
    assert forces == pytest.approx([p["force_n"] for p in result.curve])
    # Re-running into the same nodes replaces, does not add.
    n_nodes = scene.GetNumberOfNodes()
    run_fe(ct_node, table, "L2", seeds_node=seeds, element_mm=2.5, criterion="linear",
           table_node=t, model_node=out["model"], chart_node=chart)
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
    with pytest.raises(ValueError, match="L3"):
        run_fe(ct_node, table, "L3", seeds_node=seeds)
