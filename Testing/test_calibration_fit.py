"""Calibration fit: Mindways two-step model, HA linear model, QC thresholds, conversion;
detection + fit on the rendered HA phantoms."""

import numpy as np
import pytest

from boneqct.calibration import (
    Calibration,
    calibrate_with_phantom,
    convert_volume_to_bmd,
    detect_rods,
    fit_calibration,
    load_phantom_definition,
    manual_calibration,
)
from boneqct.errors import CalibrationError
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom
from boneqct.volume import Volume, ijk_to_ras_matrix

# Published Ogo fixture (tests of ogo/calib/mindways_calibration.py): rod HU for E, D, C, B, A.
OGO_HU = {"E": 462.9, "D": 345.7, "C": 176.7, "B": -35.4, "A": -69.5}


def _normal_equations(x, y):
    """Slope, intercept and R^2 of y = s*x + b by the plain normal equations."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    a = np.array([[np.sum(x * x), np.sum(x)], [np.sum(x), len(x)]])
    s, b = np.linalg.solve(a, np.array([np.sum(x * y), np.sum(y)]))
    r2 = 1 - np.sum((y - s * x - b) ** 2) / np.sum((y - y.mean()) ** 2)
    return s, b, r2


def test_mindways_fit_matches_ogo_fixture():
    d = load_phantom_definition("mindways-model3")
    rho = [r.density_mg_cm3 for r in d.rods]
    y = [OGO_HU[r.name] - r.water_mg_cm3 for r in d.rods]
    sigma_ref, beta_ref, r2 = _normal_equations(rho, y)
    cal = fit_calibration(d, OGO_HU)
    assert cal.slope_hu_per_mg_cm3 == pytest.approx(sigma_ref - 0.2174, rel=1e-12)
    assert cal.intercept_hu == pytest.approx(beta_ref + 999.6, rel=1e-12)
    assert cal.r2 == pytest.approx(r2, rel=1e-12)
    assert cal.r2 > 0.98
    assert cal.material == "K2HPO4" and cal.method == "phantom" and not cal.warnings
    assert [r["name"] for r in cal.rods] == ["A", "B", "C", "D", "E"]
    res = np.array([r["residual_hu"] for r in cal.rods])
    assert abs(res.sum()) < 1e-9
    assert cal.rods[0]["residual_mg_cm3"] == pytest.approx(res[0] / sigma_ref)


def test_mindways_fit_recovers_exact_synthetic_line():
    d = load_phantom_definition("mindways-model3")
    sigma_ct, beta_ct = 1.2345, -12.5
    sigma_ref, beta_ref = sigma_ct + 0.2174, beta_ct - 999.6
    hu = [r.water_mg_cm3 + sigma_ref * r.density_mg_cm3 + beta_ref for r in d.rods]
    cal = fit_calibration(d, hu)
    assert cal.slope_hu_per_mg_cm3 == pytest.approx(sigma_ct, abs=1e-9)
    assert cal.intercept_hu == pytest.approx(beta_ct, abs=1e-9)
    assert cal.r2 == pytest.approx(1.0, abs=1e-12)


def test_ha_linear_fit_recovers_line():
    d = load_phantom_definition("qrm-bdc-6")
    hu = {r.name: 0.85 * r.density_mg_cm3 + 3.0 for r in d.rods}
    cal = fit_calibration(d, hu)
    assert cal.material == "HA"
    assert cal.slope_hu_per_mg_cm3 == pytest.approx(0.85, abs=1e-9)
    assert cal.intercept_hu == pytest.approx(3.0, abs=1e-9)
    assert cal.hu_to_bmd(np.array([3.0 + 0.85 * 200])) == pytest.approx(200.0, abs=1e-3)


def _ha_with_noise(noise):
    d = load_phantom_definition("qrm-bdc-6")
    return d, [r.density_mg_cm3 + n for r, n in zip(d.rods, noise, strict=True)]


def test_r2_between_090_and_098_warns():
    d, hu = _ha_with_noise([0, 60, -60, 60, -60, 0])
    cal = fit_calibration(d, hu)
    assert 0.90 <= cal.r2 < 0.98
    assert any("below 0.98" in w for w in cal.warnings)


def test_r2_below_090_fails():
    d, hu = _ha_with_noise([0, 150, -150, 150, -150, 0])
    with pytest.raises(CalibrationError, match="poor"):
        fit_calibration(d, hu)


def test_missing_rod_fails():
    d = load_phantom_definition("mindways-model3")
    partial = {k: v for k, v in OGO_HU.items() if k != "A"}
    with pytest.raises(CalibrationError, match="field of view"):
        fit_calibration(d, partial)
    with pytest.raises(CalibrationError, match="4 measured HU given for the 5 rods"):
        fit_calibration(d, list(partial.values()))


def test_manual_calibration_round_trip():
    cal = manual_calibration(1.3, -5.0)
    hu = cal.intercept_hu + cal.slope_hu_per_mg_cm3 * np.array([0.0, 100.0, 250.0])
    bmd = cal.hu_to_bmd(hu)
    assert bmd.dtype == np.float32
    np.testing.assert_allclose(bmd, [0.0, 100.0, 250.0], atol=1e-3)
    assert Calibration.from_dict(cal.to_dict()) == cal
    with pytest.raises(CalibrationError, match="positive"):
        manual_calibration(0.0, 0.0)


def test_to_dict_from_dict_phantom():
    cal = fit_calibration(load_phantom_definition("mindways-model3"), OGO_HU)
    back = Calibration.from_dict(cal.to_dict())
    assert back == cal


def test_convert_volume_global_and_per_slice():
    arr = np.full((4, 3, 2), 130.0, dtype=np.float32)
    vol = Volume(arr, ijk_to_ras_matrix([0, 0, 0], [0.5, 0.5, 2.0]))
    cal = manual_calibration(1.3, 0.0)
    bmd = convert_volume_to_bmd(vol, cal)
    assert bmd.array_kji.dtype == np.float32 and bmd.array_kji.shape == arr.shape
    np.testing.assert_allclose(bmd.array_kji, 100.0, rtol=1e-6)
    np.testing.assert_array_equal(bmd.ijk_to_ras, vol.ijk_to_ras)
    cal.per_slice = {"k": [0, 3], "slope_hu_per_mg_cm3": [1.3, 1.3],
                     "intercept_hu": [0.0, 30.0]}
    bmd = convert_volume_to_bmd(vol, cal)
    np.testing.assert_allclose(bmd.array_kji[:, 0, 0], [100.0, 92.307, 84.615, 76.923],
                               rtol=1e-4)
    assert cal.hu_to_bmd(130.0, k_index=3) == pytest.approx(76.923, rel=1e-4)


# Detection + fit on the rendered hydroxyapatite phantoms: 24 slices keep the noise of the
# fitted slope well inside 1% for the low-contrast B-MAS 200 (0-200 mg HA/cm3).
HA_SCANNER = ScannerParams(noise_sd_hu=20.0, psf_fwhm_mm=1.0, n_slices=24, supersample=2)
HA_POSES = {0: {}, 1: {"phantom_offset_mm": (-40.0, 10.0), "phantom_rotation_deg": 5.0}}


@pytest.mark.parametrize("seed", sorted(HA_POSES))
@pytest.mark.parametrize("name", ["qrm-bdc-3", "qrm-bdc-6", "b-mas-200"])
def test_ha_phantom_detected_and_fitted(name, seed):
    ph = make_spine_phantom(SpinePhantomParams(phantom_name=name, **HA_POSES[seed]), HA_SCANNER,
                            seed=seed)
    definition = load_phantom_definition(name)
    truth = ph.truth["calibration"]
    assert truth["material"] == "HA" and truth["model"] == "linear"
    cal = calibrate_with_phantom(ph.volume, name)
    assert cal.material == "HA"
    assert abs(cal.slope_hu_per_mg_cm3 / truth["slope_hu_per_mg_cm3"] - 1.0) < 0.01
    assert abs(cal.intercept_hu - truth["intercept_hu"]) < 2.0
    assert cal.r2 > 0.98
    detection = detect_rods(ph.volume, definition)
    assert [r.name for r in detection.rods] == [r.name for r in definition.rods]
    placed = {r["name"]: np.asarray(r["center_ras_mm"][:2])
              for r in ph.truth["calibration_phantom"]["rods"]}
    for rod in detection.rods:
        assert np.hypot(*(rod.center_ras_mm[:2] - placed[rod.name])) < 2.0, rod.name
        # only the zero-contrast HA0 rod (the phantom's base material) is placed by spacing
        assert rod.placed_by_spacing == (rod.name == "HA0"), rod.name
