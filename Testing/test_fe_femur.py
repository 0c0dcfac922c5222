"""Femur sideways-fall finite elements (boneqct.fe.femur, ``boneqct fe-hip``) on the digital
femur phantom: the fall configuration's geometry, mirror symmetry, monotonic growth of
strength with neck density, CalculiX on the exported model, the command and its refusals.

Coarse 3 mm elements and an 80 mm shaft keep each analysis to seconds; the element-size
convergence at 1.5 and 1 mm is measured by Testing/benchmarks/bench_fe_femur.py."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from boneqct.calibration import manual_calibration
from boneqct.cli import main
from boneqct.errors import FEError
from boneqct.fe.calculix import ccx_executable, run_ccx_deck
from boneqct.fe.femur import (
    FALL_ADDUCTION_DEG,
    FALL_INTERNAL_ROTATION_DEG,
    FemurFallResult,
    FemurFEOptions,
    analyze_femur_fall,
)
from boneqct.fe.femur_report import write_femur_outputs
from boneqct.fe.mesh import PMMA
from boneqct.hip.frame import FemurFrame
from boneqct.io import write_volume
from boneqct.phantoms.femur import FemurPhantomParams, make_femur_phantom
from boneqct.volume import Volume

OPTIONS = FemurFEOptions(element_mm=3.0, shaft_cut_below_head_mm=80.0)


def _analyze(params: FemurPhantomParams, side: str = "left", options=OPTIONS):
    phantom = make_femur_phantom(params)
    line = phantom.truth["calibration"]
    calibration = manual_calibration(line["slope_hu_per_mg_cm3"], line["intercept_hu"])
    return analyze_femur_fall(phantom.volume, calibration, options, side=side, sex="F")


@pytest.fixture(scope="module")
def left():
    return _analyze(FemurPhantomParams())


def test_load_direction_is_the_sideways_fall(left):
    """The load is 10 degrees off the plane across the shaft, pointing along the shaft towards
    the head end, and its part across the shaft is the lateral direction turned 15 degrees
    posteriorly (left femur: lateral is -x, posterior -y)."""
    frame = FemurFrame.from_dict(left.frame)
    load = np.array(left.load_direction_ras)
    s = frame.shaft_axis_ras
    assert np.degrees(np.arcsin(load @ s)) == pytest.approx(FALL_ADDUCTION_DEG, abs=1e-6)
    across = load - (load @ s) * s
    across /= np.linalg.norm(across)
    to_head = -frame.neck_axis_ras
    medial = to_head - (to_head @ s) * s
    medial /= np.linalg.norm(medial)
    assert np.degrees(np.arccos(across @ -medial)) == pytest.approx(FALL_INTERNAL_ROTATION_DEG,
                                                                     abs=1e-6)
    assert across[0] < 0 and across[1] < 0  # lateral (left: -x) and posterior (-y)


def test_cap_on_the_head_pad_on_the_trochanter(left):
    """PMMA sits on the head (loaded face) and on the greater trochanter (held face); the
    strength is a positive fraction of what a stiffer, equally loaded bone would carry."""
    model = left.model
    mesh = model.mesh
    frame = FemurFrame.from_dict(left.frame)
    centres_kji = np.argwhere(mesh.elements_kji) + 0.5
    ras = mesh.node_ras(centres_kji)
    pmma = mesh.element_values(mesh.material_kji) == PMMA
    nk = mesh.material_kji.shape[0]
    top, bottom = pmma & (centres_kji[:, 0] > nk / 2), pmma & (centres_kji[:, 0] < nk / 2)
    assert top.any() and bottom.any()
    head_distance = np.linalg.norm(ras - frame.head_center_ras_mm, axis=1)
    assert head_distance[top].max() < 2 * frame.head_radius_mm
    depth = (frame.head_center_ras_mm - ras[bottom]) @ frame.shaft_axis_ras
    lateral = (ras[bottom] - frame.shaft_point_ras_mm) @ np.array([-1.0, 0.0, 0.0])
    assert np.all(depth > 0) and np.all(depth < 70) and np.all(lateral > 0)
    assert left.boundary_nodes["head"] > 20 and left.boundary_nodes["trochanter"] > 20
    assert left.solver["converged"] and 0 < left.strength_n
    assert left.strength_n < left.stiffness_n_mm * 5.0  # failure within 5 mm of head travel


def test_right_femur_mirrors_the_left(left):
    """The mirror-image phantom gives the same stiffness and strength (within the 3 mm
    voxelisation: the grids are not mirror images of each other)."""
    right = _analyze(FemurPhantomParams(sides=("right",)), "right")
    assert right.strength_n == pytest.approx(left.strength_n, rel=0.04)
    assert right.stiffness_n_mm == pytest.approx(left.stiffness_n_mm, rel=0.06)
    assert right.load_direction_ras[0] == pytest.approx(-left.load_direction_ras[0], rel=1e-3)


def test_strength_grows_with_neck_density(left):
    """Neck trabecular density 100 -> 200 -> 350 mg/cm3: strength and stiffness increase."""
    low = _analyze(FemurPhantomParams(neck_trabecular_mg_cm3=100.0))
    high = _analyze(FemurPhantomParams(neck_trabecular_mg_cm3=350.0))
    assert low.strength_n < left.strength_n < high.strength_n
    assert low.stiffness_n_mm < left.stiffness_n_mm < high.stiffness_n_mm
    assert high.strength_n > 1.03 * low.strength_n


def test_result_round_trips_and_has_no_hip_threshold(left, tmp_path):
    """fe_hip.json read back writes the same document and a report; the hip thresholds are
    absent with the reason (they belong to VirtuOst's nonlinear analysis)."""
    paths = write_femur_outputs(tmp_path / "a", left, {}, export_formats=["feb"])
    document = json.loads(paths["json"].read_text())
    assert document["fragile"] is None and document["fragile_threshold_n"] is None
    assert "nonlinear" in document["fragile_absent_reason"]
    assert document["configuration"]["adduction_deg"] == FALL_ADDUCTION_DEG
    again = write_femur_outputs(tmp_path / "b", FemurFallResult.from_dict(document), {})
    assert json.loads(again["json"].read_text()) == document
    assert set(again) == {"json", "report"} and again["report"].stat().st_size > 10_000
    assert set(paths) == {"json", "report", "vtu", "feb"}
    root = ET.parse(paths["feb"]).getroot()
    n_elements = sum(len(part) for part in root.find("Mesh").findall("Elements"))
    assert n_elements == left.n_elements


@pytest.mark.skipif(ccx_executable() is None, reason="CalculiX (ccx) is not installed")
def test_calculix_on_the_exported_fall_model(left, tmp_path):
    """The fall's mixed constraints (held along the load at the pad, across it at the shaft)
    survive the export: CalculiX's reaction equals our strength-load reaction within 0.5%."""
    paths = write_femur_outputs(tmp_path, left, {}, export_formats=["inp"])
    assert run_ccx_deck(paths["inp"]) == pytest.approx(left.strength_n, rel=5e-3)


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory):
    phantom = make_femur_phantom()
    folder = tmp_path_factory.mktemp("fe_hip")
    write_volume(phantom.labels, folder / "labels.nii.gz")
    return phantom, write_volume(phantom.volume, folder / "ct.nii.gz")


def _line(phantom) -> list[str]:
    line = phantom.truth["calibration"]
    return ["--slope", str(line["slope_hu_per_mg_cm3"]), "--intercept", str(line["intercept_hu"]),
            "--material", "K2HPO4"]


def test_fe_hip_command(phantom_file, tmp_path, capsys):
    phantom, path = phantom_file
    out = tmp_path / "out"
    code = main(["fe-hip", str(path), "--side", "left", *_line(phantom), "--element-mm", "3",
                 "--shaft-cut-below-head-mm", "80", "--export", "inp,feb", "--out", str(out)])
    assert code == 0
    document = json.loads((out / "fe_hip.json").read_text())
    for key in ("strength_n", "stiffness_n_mm", "configuration", "criterion", "law_citation",
                "fragile", "fragile_absent_reason", "load_direction_ras", "boundary_nodes",
                "solver", "warnings", "options"):
        assert key in document
    assert document["options"]["element_mm"] == 3.0 and document["side"] == "left"
    assert {p.name for p in out.iterdir()} >= {"fe_hip.json", "fe_hip_report.pdf", "fe_hip.vtu",
                                                "fe_hip_model.inp", "fe_hip_model.feb"}
    assert f"strength {document['strength_n']:.0f} N" in capsys.readouterr().out


def test_fe_hip_from_the_label_map_equals_the_thresholded_femur(phantom_file, left, tmp_path):
    """The femur from the phantom's label map (--labels, phantom numbering) gives about the
    strength of the femur thresholded from the CT: the same bone, but the label map holds every
    voxel centre inside it while the 200 mg/cm3 threshold cuts the blurred edge, and a
    sub-millimetre change of the neck's radius changes its bending stiffness by its fourth
    power (measured: +7%)."""
    phantom, path = phantom_file
    out = tmp_path / "out"
    assert main(["fe-hip", str(path), "--side", "left", *_line(phantom), "--element-mm", "3",
                 "--shaft-cut-below-head-mm", "80", "--labels",
                 str(path.parent / "labels.nii.gz"), "--label-scheme", "phantom",
                 "--out", str(out)]) == 0
    document = json.loads((out / "fe_hip.json").read_text())
    assert document["strength_n"] == pytest.approx(left.strength_n, rel=0.10)


@pytest.mark.parametrize("extra, message", [
    (["--export", "vtk"], "export format"),
    (["--element-mm", "0.1"], "element"),
    (["--shaft-cut-below-head-mm", "200"], "reaches"),
    (["--seed", "1,2"], "--seed"),
])
def test_fe_hip_bad_inputs_exit_2(phantom_file, tmp_path, capsys, extra, message):
    phantom, path = phantom_file
    with pytest.raises(SystemExit) as exit_info:  # argparse usage errors
        code = main(["fe-hip", str(path), "--side", "left", *_line(phantom), "--element-mm",
                     "3", *extra, "--out", str(tmp_path / "out")])
        raise SystemExit(code)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "fe_hip.json").exists()


def test_fe_hip_without_calibration_exit_2(phantom_file, tmp_path, capsys):
    _, path = phantom_file
    assert main(["fe-hip", str(path), "--side", "left", "--out", str(tmp_path / "o")]) == 2
    assert "calibrat" in capsys.readouterr().err


def test_uncalibrated_or_unknown_side_core_call_raises():
    volume = Volume(np.zeros((4, 4, 4), np.int16), np.eye(4), {})
    with pytest.raises(FEError, match="calibrated"):
        analyze_femur_fall(volume, None, OPTIONS, side="left")
    with pytest.raises(FEError, match="side"):
        analyze_femur_fall(volume, manual_calibration(1.0, 0.0), OPTIONS, side="both")


def test_slicer_adapter_runs_the_scene_and_equals_the_core(left, tmp_path):
    """FiniteElementLib.femur on Slicer's real MRML (PyPI slicer-core): the phantom CT, its
    calibration table and a seed point in the head -> the results table (units, document) and
    the mesh model, with the core's numbers."""
    slicer = pytest.importorskip("slicer")
    pytest.importorskip("slicer.util")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "FiniteElement"))
    from FiniteElementLib.fe import can_export_fe_report
    from FiniteElementLib.femur import (
        FE_HIP_DOCUMENT,
        can_export_fe_hip_report,
        export_fe_hip_report,
        fe_hip_summary_text,
        run_fe_hip,
    )

    from BoneQCTLib.calibration import calibration_to_table_node
    from BoneQCTLib.tables import read_document
    from BoneQCTLib.volumes import update_node_from_volume

    phantom = make_femur_phantom()
    line = phantom.truth["calibration"]
    slicer.mrmlScene = slicer.vtkMRMLScene()
    try:
        ct_node = update_node_from_volume(phantom.volume, name="hip")
        table = calibration_to_table_node(manual_calibration(line["slope_hu_per_mg_cm3"],
                                                             line["intercept_hu"]))
        seed = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "head")
        seed.AddControlPoint(phantom.truth["femurs"][0]["head_center_ras_mm"])
        out = run_fe_hip(ct_node, table, "left", OPTIONS, seed_node=seed, sex="F")
        document = read_document(out["table"], FE_HIP_DOCUMENT)
        # the same model, solved to the same tolerance (rtol 1e-6: reaction within ~1e-5)
        assert document["strength_n"] == pytest.approx(left.strength_n, rel=1e-5)
        assert document["n_elements"] == left.n_elements
        strength = out["table"].GetTable().GetColumnByName("Strength (N)").GetValue(0)
        assert strength == pytest.approx(document["strength_n"], rel=1e-12)
        assert out["table"].GetColumnUnitLabel("Strength (N)") == "N"
        assert out["model"].GetMesh().GetNumberOfCells() == left.n_elements
        paths = export_fe_hip_report(tmp_path, out["table"])
        assert json.loads(paths["json"].read_text()) == document
        assert paths["report"].stat().st_size > 10_000
        # the panel's summary and export state read the same table
        assert fe_hip_summary_text(out["table"]) == (
            f"left femur, sideways fall: strength {left.strength_n:.0f} N (pistoia), "
            f"stiffness {left.stiffness_n_mm:.0f} N/mm")
        assert can_export_fe_hip_report(out["table"]) and not can_export_fe_report(out["table"])
        assert not can_export_fe_hip_report(None)
        with pytest.raises(ValueError, match="calibrat"):
            run_fe_hip(ct_node, None, "left", OPTIONS)
    finally:
        slicer.mrmlScene.Clear(True)
