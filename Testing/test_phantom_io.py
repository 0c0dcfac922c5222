"""The digital phantom through the loader: DICOM and NIfTI agree; the CLI calibrates it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from boneqct.io import load_ct
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom, write_phantom


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory):
    phantom = make_spine_phantom(SpinePhantomParams(), ScannerParams(n_slices=16), seed=1)
    return phantom, write_phantom(phantom, tmp_path_factory.mktemp("phantom"))


def test_dicom_and_nifti_of_the_phantom_load_identically(phantom_files):
    phantom, paths = phantom_files
    from_dicom = load_ct(paths["dicom"])
    from_nifti = load_ct(paths["nifti"])
    np.testing.assert_array_equal(from_dicom.array_kji, from_nifti.array_kji)
    np.testing.assert_array_equal(from_dicom.array_kji, phantom.volume.array_kji)
    # IJK-to-RAS within 0.01 mm at every corner of the grid
    corners_ijk = np.array([[i, j, k] for i in (0, from_dicom.size_ijk[0] - 1)
                            for j in (0, from_dicom.size_ijk[1] - 1)
                            for k in (0, from_dicom.size_ijk[2] - 1)])
    for other in (from_nifti, phantom.volume):
        distance_mm = np.linalg.norm(from_dicom.ijk_to_ras_points(corners_ijk)
                                     - other.ijk_to_ras_points(corners_ijk), axis=1)
        assert distance_mm.max() < 0.01


def test_cli_calibrates_the_phantom_series(phantom_files, tmp_path):
    phantom, paths = phantom_files
    out = tmp_path / "calibration.json"
    result = subprocess.run([sys.executable, "-m", "boneqct.cli", "calibrate", str(paths["dicom"]),
                             "--phantom", "mindways-model3", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "R2:" in result.stdout
    calibration = json.loads(out.read_text())
    truth = phantom.truth["calibration"]
    assert calibration["slope_hu_per_mg_cm3"] == pytest.approx(truth["slope_hu_per_mg_cm3"], rel=0.01)
    assert calibration["intercept_hu"] == pytest.approx(truth["intercept_hu"], abs=2.0)
    assert [rod["name"] for rod in calibration["rods"]] == ["A", "B", "C", "D", "E"]
