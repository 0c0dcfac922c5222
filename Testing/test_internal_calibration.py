"""Phantomless calibration on the digital phantom vs the phantom calibration."""

from __future__ import annotations

import numpy as np
import pytest

from boneqct.calibration import calibrate_with_phantom
from boneqct.calibration.internal import internal_calibration
from boneqct.errors import CalibrationError
from boneqct.phantoms import ScannerParams, make_spine_phantom

# Soft-tissue HU consistent with the phantom's own Mindways model at 120 kVp
# (HU = density + beta_ref, beta_ref = -1009.75): fat 923, muscle 1055, blood 1060 mg/cm3.
CONSISTENT_TISSUE_HU = {"fat": -86.75, "muscle": 45.25, "blood": 50.25}


def _agreement_percent(tissue_hu):
    phantom = make_spine_phantom(scanner=ScannerParams(n_slices=24, tissue_hu=tissue_hu), seed=2)
    reference = calibrate_with_phantom(phantom.volume, "mindways-model3")
    internal = internal_calibration(phantom.volume)
    hu = np.array([v["trabecular_hu"] for v in phantom.truth["vertebrae"]])
    ref, own = reference.hu_to_bmd(hu), internal.hu_to_bmd(hu)
    return internal, 100.0 * (own[:2].mean() / ref[:2].mean() - 1.0), 100.0 * (own / ref - 1.0)


def test_internal_matches_phantom_calibration_within_5_percent():
    internal, mean_pct, per_level = _agreement_percent({})   # the illustrative tissue presets
    print("illustrative tissue HU: L1-L2 mean", mean_pct, "per level", per_level)
    assert abs(mean_pct) < 5.0
    assert internal.method == "internal" and internal.material == "K2HPO4"
    assert {r["name"] for r in internal.rods} == {"air", "fat", "muscle"}
    assert all(r["n_voxels"] > 100 for r in internal.rods)


def test_internal_is_exact_when_tissues_follow_the_phantom_model():
    _, mean_pct, per_level = _agreement_percent(CONSISTENT_TISSUE_HU)
    print("consistent tissue HU: L1-L2 mean", mean_pct, "per level", per_level)
    assert abs(mean_pct) < 1.0 and np.all(np.abs(per_level) < 1.5)


def test_bad_point_is_a_clean_error():
    phantom = make_spine_phantom(scanner=ScannerParams(n_slices=8), seed=2)
    with pytest.raises(CalibrationError, match="outside the scan"):
        internal_calibration(phantom.volume, {"blood": [0.0, 0.0, 500.0]})
    with pytest.raises(CalibrationError, match="Unknown"):
        internal_calibration(phantom.volume, {"bone": [0.0, 0.0, 0.0]})
