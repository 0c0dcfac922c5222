"""Automatic rod detection and phantom calibration on the digital spine phantom."""

import numpy as np
import pytest

from boneqct.calibration import (
    calibrate_with_phantom,
    convert_volume_to_bmd,
    detect_rods,
    load_phantom_definition,
)
from boneqct.errors import CalibrationError
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom

# Small grids keep the file fast: 12 slices of 2 mm, default 1.25 mm pixels.
SCANNER = ScannerParams(noise_sd_hu=20.0, psf_fwhm_mm=1.0, n_slices=12, supersample=2)


def _phantom(**kwargs):
    return make_spine_phantom(SpinePhantomParams(**kwargs), SCANNER, seed=0)


def _check_recovers_truth(ph, cal, where=""):
    truth = ph.truth["calibration"]
    slope_err = abs(cal.slope_hu_per_mg_cm3 / truth["slope_hu_per_mg_cm3"] - 1.0)
    assert slope_err < 0.01, where
    assert abs(cal.intercept_hu - truth["intercept_hu"]) < 2.0, where
    assert cal.r2 > 0.98, where


def test_calibration_recovers_true_line():
    ph = _phantom()
    cal = calibrate_with_phantom(ph.volume, "mindways-model3")
    _check_recovers_truth(ph, cal)
    assert [r["name"] for r in cal.rods] == ["A", "B", "C", "D", "E"]
    assert cal.slices_used == list(range(ph.volume.array_kji.shape[0]))
    assert all(r["n_voxels"] > 100 and r["sd_hu"] < 40 for r in cal.rods)


def test_rod_centres_match_truth_in_ras():
    ph = _phantom(phantom_offset_mm=(25.0, 0.0), phantom_rotation_deg=3.0)
    det = detect_rods(ph.volume, load_phantom_definition("mindways-model3"))
    placed = {r["name"]: r for r in ph.truth["calibration_phantom"]["rods"]}
    for rod in det.rods:
        truth_xy_ras_mm = np.asarray(placed[rod.name]["center_ras_mm"][:2])
        assert np.hypot(*(rod.center_ras_mm[:2] - truth_xy_ras_mm)) < 2.0


# Pose matrix: the phantom shifted left-right and antero-posteriorly (+AP presses it into the
# back, -AP into the table), rotated in-plane, touching the back or 10 mm below it; each pose
# with one of two noise realisations, alternating so every level of every factor sees both.
POSE_SCANNER = ScannerParams(noise_sd_hu=20.0, psf_fwhm_mm=1.0, n_slices=4, supersample=2)
SHIFTS_LR_MM = (-40.0, -20.0, 0.0, 20.0, 40.0)
SHIFTS_AP_MM = (-10.0, 0.0, 10.0)
ROTATIONS_DEG = (-5.0, 0.0, 5.0)
BACK_GAPS_MM = (0.0, 10.0)


@pytest.mark.parametrize("gap_mm", BACK_GAPS_MM)
@pytest.mark.parametrize("rotation_deg", ROTATIONS_DEG)
@pytest.mark.parametrize("ap_mm", SHIFTS_AP_MM)
def test_detection_robust_to_pose(ap_mm, rotation_deg, gap_mm):
    levels = SHIFTS_AP_MM.index(ap_mm) + ROTATIONS_DEG.index(rotation_deg) + BACK_GAPS_MM.index(gap_mm)
    for n, lr_mm in enumerate(SHIFTS_LR_MM):
        params = SpinePhantomParams(phantom_offset_mm=(lr_mm, ap_mm),
                                    phantom_rotation_deg=rotation_deg, phantom_gap_mm=gap_mm)
        ph = make_spine_phantom(params, POSE_SCANNER, seed=(levels + n) % 2)
        _check_recovers_truth(ph, calibrate_with_phantom(ph.volume, "mindways-model3"),
                              where=f"left-right shift {lr_mm} mm, seed {ph.truth['seed']}")


def test_detection_does_not_assume_array_orientation():
    ph = _phantom(phantom_offset_mm=(20.0, 0.0))
    vol = ph.volume
    flipped = vol.with_array(vol.array_kji[:, ::-1, ::-1].copy())
    m = vol.ijk_to_ras.copy()
    ni, nj = vol.size_ijk[:2]
    m[:3, 3] = vol.ijk_to_ras_points([ni - 1, nj - 1, 0])[0]
    m[:3, :2] *= -1.0
    flipped.ijk_to_ras = m
    cal = calibrate_with_phantom(flipped, "mindways-model3")
    _check_recovers_truth(ph, cal)
    assert [r["name"] for r in cal.rods] == ["A", "B", "C", "D", "E"]


def test_per_slice_calibration_and_conversion():
    ph = _phantom()
    cal = calibrate_with_phantom(ph.volume, "mindways-model3", slice_range=(2, 10),
                                 per_slice=True)
    assert cal.slices_used == list(range(2, 10))
    assert cal.per_slice["k"] == cal.slices_used
    truth = ph.truth["calibration"]
    np.testing.assert_allclose(cal.per_slice["slope_hu_per_mg_cm3"],
                               truth["slope_hu_per_mg_cm3"], rtol=0.03)
    bmd = convert_volume_to_bmd(ph.volume, cal)
    assert bmd.array_kji.dtype == np.float32 and bmd.array_kji.shape == ph.volume.array_kji.shape


def test_absent_phantom_fails_with_documented_message():
    ph = _phantom(phantom_present=False)
    with pytest.raises(CalibrationError) as err:
        calibrate_with_phantom(ph.volume, "mindways-model3")
    message = str(err.value)
    assert "No calibration phantom 'mindways-model3' was found" in message
    assert "field of view" in message and "--slope/--intercept" in message


def test_wrong_definition_fails_with_rod_count_message():
    ph = _phantom()
    with pytest.raises(CalibrationError, match="does not match phantom 'qrm-bdc-6'") as err:
        detect_rods(ph.volume, load_phantom_definition("qrm-bdc-6"))
    assert "fewer than its 6 rods" in str(err.value) and "--slope/--intercept" in str(err.value)


def test_slices_are_inclusive_in_options_and_on_the_command_line(tmp_path):
    """``--slices 10:10`` uses slice 10 only (it used to drop the last slice and fail)."""
    import json
    import subprocess
    import sys

    from boneqct.calibration.options import CalibrationOptions
    from boneqct.calibration.pipeline import calibrate
    from boneqct.errors import CalibrationError, OptionsError
    from boneqct.io import write_volume

    ph = _phantom()
    one = calibrate(ph.volume, CalibrationOptions(slices=(10, 10)))
    assert one.slices_used == [10]
    assert calibrate(ph.volume, CalibrationOptions(slices=(2, 9), per_slice=True)).per_slice["k"] \
        == list(range(2, 10))
    with pytest.raises(OptionsError):
        CalibrationOptions(slices=(10, 9))
    # beyond the volume: said in the numbers typed (it said "(70, 81) is empty")
    last = ph.volume.array_kji.shape[0] - 1
    with pytest.raises(CalibrationError, match=rf"The slices 70:80 \(first:last, inclusive\) "
                                               rf"lie outside this volume's 0:{last}"):
        calibrate(ph.volume, CalibrationOptions(slices=(70, 80)))
    ct = write_volume(ph.volume, tmp_path / "ct.nii.gz")
    for text, used in (("10:10", [10]), ("10", [10]), ("3:5", [3, 4, 5])):
        out = tmp_path / f"cal-{text.replace(':', '-')}.json"
        run = subprocess.run([sys.executable, "-m", "boneqct.cli", "calibrate", str(ct),
                              "--phantom", "mindways-model3", "--slices", text, "--out", str(out)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert json.loads(out.read_text())["slices_used"] == used
    run = subprocess.run([sys.executable, "-m", "boneqct.cli", "calibrate", str(ct), "--phantom",
                          "mindways-model3", "--slices", "5:2"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "FIRST <= LAST" in run.stderr
