"""Phantomless calibration (effective-energy fit, slope and intercept) vs the phantom calibration.

The digital phantom renders air, fat, muscle and blood from the same physics as its rods
(``boneqct.phantoms.scanner.physical_tissue_hu``), at each kVp preset's own effective energy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from boneqct.calibration import Calibration, calibrate_with_phantom
from boneqct.calibration.attenuation import energy_for_k2hpo4_ratio, water_equivalent_mg_cm3
from boneqct.calibration.internal import fit_tissues, fit_uncertainty, internal_calibration
from boneqct.errors import CalibrationError
from boneqct.phantoms import ScannerParams, make_spine_phantom
from boneqct.phantoms.anatomy import BLOOD
from boneqct.phantoms.scanner import KVP_CALIBRATION_PRESETS, calibration_for

KVPS = (80, 100, 120, 140)


def _phantom(kvp):
    return make_spine_phantom(scanner=ScannerParams(kvp=kvp, n_slices=6), seed=2)


def _aorta_ras_mm(phantom):
    centre_kji = np.argwhere(phantom.labels.array_kji == BLOOD).mean(axis=0)
    return phantom.volume.ijk_to_ras_points(centre_kji[::-1][None])[0]


def _agreement_percent(phantom, internal):
    """(slope error %, L1-L2 mean BMD error %) of ``internal`` against the rod calibration."""
    reference = calibrate_with_phantom(phantom.volume, "mindways-model3")
    hu = np.array([v["trabecular_hu"] for v in phantom.truth["vertebrae"]])
    ref, own = reference.hu_to_bmd(hu), internal.hu_to_bmd(hu)
    return (100.0 * (internal.slope_hu_per_mg_cm3 / reference.slope_hu_per_mg_cm3 - 1.0),
            100.0 * (own[:2].mean() / ref[:2].mean() - 1.0))


@pytest.mark.parametrize("kvp", KVPS)
def test_internal_matches_phantom_calibration_at_each_kvp(kvp):
    phantom = _phantom(kvp)
    internal = internal_calibration(phantom.volume, {"blood": _aorta_ras_mm(phantom)})
    slope_pct, bmd_pct = _agreement_percent(phantom, internal)
    fit = internal.internal_fit
    print(f"{kvp} kVp: slope {slope_pct:+.2f} %, L1-L2 BMD {bmd_pct:+.2f} %, "
          f"E {fit['energy_kev']:.1f} keV, slope SD {fit['slope_sd_hu_per_mg_cm3']:.4f}, "
          f"intercept SD {fit['intercept_sd_hu']:.2f} HU")
    assert abs(slope_pct) < 5.0 and abs(bmd_pct) < 5.0
    assert internal.method == "internal" and internal.material == "K2HPO4"
    assert [r["name"] for r in internal.rods] == ["air", "fat", "muscle", "blood"]
    assert all(r["n_voxels"] > 50 and r["sd_hu"] > 0 and len(r["center_ras_mm"]) == 3
               and "residual_hu" in r for r in internal.rods)
    assert fit["degrees_of_freedom"] == 1 and fit["slope_sd_hu_per_mg_cm3"] > 0
    # the phantom's effective energy is recovered within 3 keV (1 keV ~ 1.7 % of slope)
    assert fit["energy_kev"] == pytest.approx(
        energy_for_k2hpo4_ratio(KVP_CALIBRATION_PRESETS[kvp][0]), abs=3.0)
    # the whole fit goes into calibration.json and comes back
    restored = Calibration.from_dict(json.loads(json.dumps(internal.to_dict())))
    assert restored.internal_fit == internal.internal_fit


def test_three_automatic_tissues_fit_exactly_and_say_so():
    phantom = _phantom(120)
    internal = internal_calibration(phantom.volume)
    slope_pct, bmd_pct = _agreement_percent(phantom, internal)
    print(f"air, fat, muscle only: slope {slope_pct:+.2f} %, BMD {bmd_pct:+.2f} %")
    assert abs(slope_pct) < 5.0 and abs(bmd_pct) < 5.0
    assert {r["name"] for r in internal.rods} == {"air", "fat", "muscle"}
    assert internal.internal_fit["degrees_of_freedom"] == 0
    assert any("ROI noise only" in w for w in internal.warnings)


@pytest.mark.parametrize("kvp", KVPS)
def test_five_tissue_fit_recovers_each_preset(kvp):
    """Michalski's five tissues, HU from the preset's physics with 3 HU soft-tissue and 30 HU
    cortical errors: the slope within 5 %, and cortical bone narrows its uncertainty."""
    sigma_ref, beta_ref = KVP_CALIBRATION_PRESETS[kvp]
    energy_kev = energy_for_k2hpo4_ratio(sigma_ref)
    tissues = ["air", "fat", "muscle", "blood", "cortical_bone"]
    exact = np.array([water_equivalent_mg_cm3(t, energy_kev) + beta_ref for t in tissues])
    truth = calibration_for(ScannerParams(kvp=kvp))
    assert fit_tissues(tissues, exact)["slope_hu_per_mg_cm3"] == pytest.approx(truth.sigma_ct,
                                                                                rel=1e-4)
    perturbed = exact + np.array([0.0, 3.0, -3.0, 3.0, -30.0])
    fit = fit_tissues(tissues, perturbed)
    assert fit["slope_hu_per_mg_cm3"] == pytest.approx(truth.sigma_ct, rel=0.05)
    assert fit["intercept_hu"] == pytest.approx(truth.beta_ct_hu, abs=5.0)
    sd = [15.0] * 5
    with_bone = fit_uncertainty(tissues, perturbed, sd, [400] * 5)
    without = fit_uncertainty(tissues[:4], perturbed[:4], sd[:4], [400] * 4)
    assert with_bone["slope_sd_hu_per_mg_cm3"] < without["slope_sd_hu_per_mg_cm3"]


def test_bad_point_is_a_clean_error():
    phantom = make_spine_phantom(scanner=ScannerParams(n_slices=4), seed=2)
    with pytest.raises(CalibrationError, match="outside the scan"):
        internal_calibration(phantom.volume, {"blood": [0.0, 0.0, 500.0]})
    with pytest.raises(CalibrationError, match="Unknown"):
        internal_calibration(phantom.volume, {"bone": [0.0, 0.0, 0.0]})


def test_automatic_rois_use_the_classification_only(monkeypatch):
    """The automatic ROIs come from the tissue classification without the mineral fit, and the
    calibration is the one the whole tissue analysis gave before (values recorded then)."""
    import boneqct.tissue.composition as composition
    from boneqct.calibration.internal import automatic_rois

    def no_mineral_fit(*args, **kwargs):
        raise AssertionError("the internal calibration ran the mineral fit")

    monkeypatch.setattr(composition, "bone_mineral", no_mineral_fit)
    phantom = _phantom(120)
    rois = automatic_rois(phantom.volume)
    assert {name: int(mask.sum()) for name, mask in rois.items()} == \
        {"air": 47474, "fat": 43543, "muscle": 14906}
    internal = internal_calibration(phantom.volume)
    assert [r["measured_hu"] for r in internal.rods] == pytest.approx(
        [-1008.4515734928592, -83.30785660152034, 32.86569166778479], rel=1e-12)
    # the tissue fit is iterative (scipy's least squares): its last digits follow the CPU's
    # floating-point kernels (slope 1.25039983 on an AMD EPYC, 1.25039980 where recorded)
    assert internal.slope_hu_per_mg_cm3 == pytest.approx(1.2503997979900112, rel=1e-6)
    assert internal.intercept_hu == pytest.approx(-10.060719255574327, rel=1e-6)
