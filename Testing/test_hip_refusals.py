"""Hip CTXA refusals name their cause (issue 9): a shaft cut by the scan's lower end, a head cut
by its upper end, metal, and a femur the bone threshold joins to the pelvis; a scan ending
between the total hip's distal border and the full shaft-fit range is measured on a shorter
shaft segment, with a warning, within the pose-test bounds of the full scan."""

from __future__ import annotations

import re

import numpy as np
import pypdf
import pytest
from test_hip_pipeline import slices_between, truth_calibration

from boneqct.cli import main
from boneqct.hip import FusedFemurError, TruncatedFemurError
from boneqct.hip.frame import MIN_SHAFT_FIT_MM, SHAFT_FIT_BELOW_HEAD_MM
from boneqct.hip.pipeline import analyze_hip
from boneqct.hip.report import write_hip_report
from boneqct.hip.rois import DISTAL_BORDER_BELOW_HEAD_MM
from boneqct.io import write_volume
from boneqct.phantoms.femur import FemurPhantomParams, make_femur_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_femur_phantom()


@pytest.fixture(scope="module")
def full(phantom):
    return analyze_hip(phantom.volume, truth_calibration(phantom), side="left")


def test_scan_ending_just_below_the_lesser_trochanter_names_the_cut_shaft(phantom):
    # the phantom's lesser trochanter ends 81 mm below the head centre; the scan 88 mm
    cut = slices_between(phantom.volume, z_min=-88.0)
    with pytest.raises(TruncatedFemurError) as refused:
        analyze_hip(cut, truth_calibration(phantom), side="left")
    message = str(refused.value)
    assert "shaft is cut by the scan's lower end" in message
    assert "reaches 88 mm below" in message
    assert re.search(r"leaving [12]\.\d mm of shaft", message)  # 87 - 85 mm, head fitted
    assert f"needs at least {MIN_SHAFT_FIT_MM:.0f} mm" in message
    assert "head is inside the scan" in message and "head is cut" not in message


def test_cli_refuses_the_cut_shaft_with_exit_2_and_the_message(phantom, tmp_path, capsys):
    path = write_volume(slices_between(phantom.volume, z_min=-88.0), tmp_path / "short.nii.gz")
    line = phantom.truth["calibration"]
    code = main(["hip", str(path), "--side", "left", "--out", str(tmp_path / "out"), "--slope",
                 str(line["slope_hu_per_mg_cm3"]), "--intercept", str(line["intercept_hu"])])
    err = capsys.readouterr().err
    assert code == 2
    assert "shaft is cut by the scan's lower end" in err and "Traceback" not in err


@pytest.mark.parametrize("end_mm", [100.0, 105.0])
def test_shorter_shaft_segment_is_measured_with_a_warning(phantom, full, end_mm):
    cut = slices_between(phantom.volume, z_min=-end_mm - 0.01)
    result = analyze_hip(cut, truth_calibration(phantom), side="left")
    low, high = result.frame.shaft_fit_below_head_mm
    assert low == DISTAL_BORDER_BELOW_HEAD_MM and high < SHAFT_FIT_BELOW_HEAD_MM[1]
    assert any("shortened shaft segment" in w for w in result.warnings)
    truth_axis = np.asarray(phantom.truth["femurs"][0]["shaft_axis_ras"])
    assert result.frame.shaft_axis_ras @ truth_axis > np.cos(np.radians(1.0))
    assert result.rois["neck"]["abmd_g_cm2"] == pytest.approx(phantom.truth["neck_abmd_g_cm2"],
                                                              rel=0.02)
    for name in ("neck", "total"):  # the pose-invariance bound of the full scan
        assert result.rois[name]["abmd_g_cm2"] == pytest.approx(full.rois[name]["abmd_g_cm2"],
                                                                rel=0.015), name
    assert not full.warnings


def test_report_boxes_the_warnings_under_the_exam_table(phantom, tmp_path):
    cut = slices_between(phantom.volume, z_min=-100.01)
    result = analyze_hip(cut, truth_calibration(phantom), side="left")
    report = write_hip_report(tmp_path / "hip_report.pdf", result, {"series_description": "cut"})
    text = " ".join(" ".join(page.extract_text() for page in pypdf.PdfReader(report).pages).split())
    assert text.index("Read first: 1 warning") < text.index("Calibration:")
    assert "shortened shaft segment" in text and "Note:" not in text


def test_head_cut_by_the_scan_top_names_the_head(phantom):
    cut = slices_between(phantom.volume, z_max=8.0)  # 14 mm of the head above the scan
    with pytest.raises(TruncatedFemurError, match="femoral head is cut by the scan's upper end"):
        analyze_hip(cut, truth_calibration(phantom), side="left")


def test_femur_bridged_to_the_pelvis_names_the_fusion():
    bridged = make_femur_phantom(FemurPhantomParams(
        pelvis_column_radius_mm=8.0, pelvis_column_bottom_mm=85.0, pelvis_bridge_radius_mm=4.0))
    with pytest.raises(FusedFemurError, match="could not be separated from the pelvis.*--labels"):
        analyze_hip(bridged.volume, truth_calibration(bridged), side="left")


def test_pelvis_reaching_the_scan_ends_is_not_taken_for_the_femur(full):
    # the ischium (a column from 120 mm below the head up through the scan's top) reaches the
    # lower end of a scan cut 100 mm below the head as low as the femur does
    with_pelvis = make_femur_phantom(FemurPhantomParams(pelvis_column_radius_mm=8.0,
                                                        pelvis_column_bottom_mm=120.0))
    cut = slices_between(with_pelvis.volume, z_min=-100.01)
    result = analyze_hip(cut, truth_calibration(with_pelvis), side="left")
    head = with_pelvis.truth["femurs"][0]["head_center_ras_mm"]
    assert np.linalg.norm(result.frame.head_center_ras_mm - head) < 1.0
    assert result.rois["total"]["abmd_g_cm2"] == pytest.approx(full.rois["total"]["abmd_g_cm2"],
                                                               rel=0.015)


def test_joint_space_closed_by_the_threshold_is_cut_and_measured(full):
    # no joint space: the threshold joins head and acetabulum, the cut at the head separates them
    fused = make_femur_phantom(FemurPhantomParams(joint_space_mm=0.0))
    result = analyze_hip(fused.volume, truth_calibration(fused), side="left")
    assert result.rois["neck"]["abmd_g_cm2"] == pytest.approx(fused.truth["neck_abmd_g_cm2"],
                                                              rel=0.02)
    assert result.rois["total"]["abmd_g_cm2"] == pytest.approx(full.rois["total"]["abmd_g_cm2"],
                                                               rel=0.015)
