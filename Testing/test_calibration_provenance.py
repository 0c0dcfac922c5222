"""Calibration provenance: what calibration.json records, and whether a calibration is accepted
for the scan it is applied to (same series, asynchronous, another kVp or scanner, forced)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from boneqct.calibration import Calibration, fit_calibration, load_phantom_definition
from boneqct.calibration.provenance import (
    anonymized_provenance,
    check_calibration_applies,
    scan_provenance,
)
from boneqct.errors import BoneQCTError, CalibrationError
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom, write_phantom

OGO_HU = {"E": 462.9, "D": 345.7, "C": 176.7, "B": -35.4, "A": -69.5}
SCAN = {"manufacturer": "SIEMENS", "model": "SOMATOM Force", "station_name": "CT01",
        "device_serial_number": "12345", "kvp": 120.0, "convolution_kernel": "Br40",
        "slice_thickness_mm": 1.0, "series_uid": "1.2.3.1", "study_uid": "1.2.3",
        "study_date": "2024-01-10"}
SCANNER = dict(pixel_mm=0.9, matrix=(360, 270), n_slices=56, slice_spacing_mm=1.6,
               slice_thickness_mm=1.6, noise_sd_hu=15.0)


def _calibration(**scan) -> Calibration:
    cal = fit_calibration(load_phantom_definition("mindways-model3"), OGO_HU)
    cal.scan = scan_provenance({**SCAN, **scan})
    return cal


def test_same_series_is_accepted_silently():
    applied = check_calibration_applies(_calibration(), SCAN).applied
    assert applied["relation"] == "same-series" and applied["warning"] is None
    assert not applied["forced"]


def test_another_kvp_is_refused_naming_both():
    with pytest.raises(CalibrationError) as info:
        check_calibration_applies(_calibration(kvp=80.0), {**SCAN, "series_uid": "1.2.3.2"})
    assert "80 kVp" in str(info.value) and "120 kVp" in str(info.value)
    assert "--force-calibration" in str(info.value)


def test_another_scanner_is_refused():
    with pytest.raises(CalibrationError, match="station name 'CT01'.*'CT02'"):
        check_calibration_applies(_calibration(), {**SCAN, "series_uid": "9", "station_name": "CT02"})


def test_same_scanner_and_kvp_another_date_warns_with_the_interval():
    target = {**SCAN, "series_uid": "1.2.9.1", "study_date": "2024-03-10",
              "convolution_kernel": "Br60"}
    applied = check_calibration_applies(_calibration(), target).applied
    assert applied["relation"] == "asynchronous" and applied["interval_days"] == 60
    assert "60 day(s) before this scan" in applied["warning"]
    assert "kernel Br40 (calibration) vs Br60" in applied["warning"]


def test_force_overrides_and_says_so():
    applied = check_calibration_applies(_calibration(kvp=80.0), {**SCAN, "series_uid": "9"},
                                        force=True).applied
    assert applied["relation"] == "forced" and applied["forced"]
    assert "80 kVp" in applied["warning"] and "forced" in applied["warning"]


def test_calibration_without_provenance_is_applied_with_a_warning():
    cal = fit_calibration(load_phantom_definition("mindways-model3"), OGO_HU)
    applied = check_calibration_applies(cal, SCAN).applied
    assert applied["relation"] == "unchecked" and "could not be checked" in applied["warning"]


def test_provenance_round_trip_and_anonymised_record():
    cal = check_calibration_applies(_calibration(), SCAN)
    assert Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    shown = anonymized_provenance(cal.scan)
    assert shown["series_uid"] != SCAN["series_uid"] and shown["series_uid"].startswith("2.25.")
    assert "device_serial_number" not in shown and "station_name" not in shown
    assert "study_date" not in shown and shown["kvp"] == 120.0 and shown["model"] == SCAN["model"]


@pytest.fixture(scope="module")
def dicom_phantoms(tmp_path_factory):
    """The digital spine phantom written as DICOM at 80 and at 120 kVp (own series UIDs)."""
    folder = tmp_path_factory.mktemp("kvp")
    out = {}
    for kvp in (80, 120):
        phantom = make_spine_phantom(SpinePhantomParams(), ScannerParams(kvp=kvp, **SCANNER),
                                     seed=kvp)
        out[kvp] = (phantom, write_phantom(phantom, folder / str(kvp), formats=("dicom",))["dicom"])
    return out


def _run(*args):
    return subprocess.run([sys.executable, "-m", "boneqct.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cli_calibration_from_80_kvp_on_120_kvp(dicom_phantoms, tmp_path):
    """calibration.json records the scan; applied to another kVp it is refused (exit 2, both
    kVp named); with --force-calibration the spine runs and spine.json says it was forced and
    gives no category or cement flag."""
    calibration = tmp_path / "calibration.json"
    run = _run("calibrate", dicom_phantoms[80][1], "--phantom", "mindways-model3", "--out",
               calibration)
    assert run.returncode == 0, run.stderr
    assert "measured on: BoneQCT digital phantom, 80 kVp" in run.stdout
    scan = json.loads(calibration.read_text())["scan"]
    assert scan["kvp"] == 80.0 and scan["manufacturer"] == "BoneQCT" and scan["series_uid"]
    assert scan["study_date"] == "2025-01-01" and scan["slice_thickness_mm"] == pytest.approx(1.6)
    assert json.loads(calibration.read_text())["method"] == "phantom"

    phantom, dicom = dicom_phantoms[120]
    seeds = [f"--seed={v['level']}={','.join(f'{x:.2f}' for x in v['body_center_ras_mm'])}"
             for v in phantom.truth["vertebrae"]]
    refused = _run("spine", dicom, "--calibration", calibration, "--out", tmp_path / "r", *seeds)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "80 kVp" in refused.stderr and "120 kVp" in refused.stderr

    forced = _run("spine", dicom, "--calibration", calibration, "--force-calibration",
                  "--out", tmp_path / "f", *seeds)
    assert forced.returncode == 0, forced.stderr
    document = json.loads((tmp_path / "f" / "spine.json").read_text())
    assert document["calibration"]["applied"]["forced"] is True
    assert any("forced" in w for w in document["warnings"])
    assert document["category"] is None
    assert all(lv["cement_augmentation"] is None for lv in document["levels"])
    # the 80 kVp line read on a 120 kVp scan is biased: the reason the default is refusal
    l2 = next(lv for lv in document["levels"] if lv["level"] == "L2")
    truth = next(v for v in phantom.truth["vertebrae"] if v["level"] == "L2")
    assert abs(l2["bmd_mg_cm3"] - truth["trabecular_bmd_mg_cm3"]) > 5.0
    assert np.isfinite(l2["bmd_mg_cm3"])


def test_cli_calibrate_refuses_a_line_from_rods_that_are_not_the_certificate_s(dicom_phantoms,
                                                                              tmp_path):
    """A certificate of two of the scan's five rods (C and D, a linear fit): its rods were
    matched to two others in the scan and calibrate wrote a line through them, R2 1, intercept
    265 HU, with exit 0 (adversarial review); now exit 2, asking whether the phantom is the
    one named, and no file."""
    certificate = load_phantom_definition("mindways-model3")
    rods = [{"name": r.name, "density_mg_cm3": r.density_mg_cm3}
            for r in certificate.rods if r.name in ("C", "D")]
    path = tmp_path / "two_rods.json"
    path.write_text(json.dumps({"name": "two rods", "material": "K2HPO4", "fit": "linear",
                                "nominal_rod_diameter_mm": 20.0, "rods": rods}))
    run = _run("calibrate", dicom_phantoms[120][1], "--phantom", path, "--out",
               tmp_path / "calibration.json")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "intercept of" in run.stderr
    assert "Is the phantom in the scan the one its certificate describes" in run.stderr
    assert not (tmp_path / "calibration.json").exists()


def _spine_doc(bmd: float, method="phantom", material="K2HPO4", **exam) -> dict:
    return {"calibrated": True, "material": material, "calibration": {"method": method},
            "levels": [{"level": "L1", "bmd_mg_cm3": bmd}, {"level": "L2", "bmd_mg_cm3": bmd}],
            "levels_used": ["L1", "L2"], "mean_bmd_mg_cm3": bmd,
            "exam": {**SCAN, **exam}}


def test_compare_refuses_one_series_twice():
    from boneqct.spine.followup import compare_exams

    with pytest.raises(BoneQCTError, match="same CT series"):
        compare_exams(_spine_doc(100.0), _spine_doc(78.0))


def test_compare_warns_on_method_kvp_and_scanner_differences():
    from boneqct.spine.followup import compare_exams

    old = _spine_doc(100.0)
    same = compare_exams(old, _spine_doc(98.0, series_uid="1.2.4.1", study_date="2025-01-10"))
    # only the note that these (identity-free) documents cannot be checked for one patient
    assert [w for w in same["warnings"] if "identity" not in w] == []
    other = compare_exams(old, _spine_doc(90.0, method="internal", series_uid="1.2.4.1",
                                          kvp=100.0, station_name="CT02"))
    text = " ".join(other["warnings"])
    assert "different methods (phantom vs internal)" in text
    assert "120 vs 100 kVp" in text and "station name 'CT01' vs 'CT02'" in text
    with pytest.raises(BoneQCTError, match="different materials"):
        compare_exams(old, _spine_doc(90.0, material="HA", series_uid="1.2.4.1"))
