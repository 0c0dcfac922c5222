"""The demo: every step of the main job on the bundled digital phantom, compared with its truth.

``boneqct demo --out DIR`` (and ``make demo``) generates the phantom CT as a DICOM series,
loads it like a patient scan, finds the calibration phantom's rods, fits the calibration,
converts the scan to BMD, and writes the results and a PDF report. Each step prints what it did
and how far the measurement is from the phantom's known truth.
"""

from __future__ import annotations

import time
from pathlib import Path

from reportlab.platypus import Paragraph, Spacer

from boneqct.calibration import calibrate_with_phantom, convert_volume_to_bmd
from boneqct.io import load_ct, write_json_atomic, write_volume
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom, write_phantom
from boneqct.report import calibration_section, exam_table, write_report
from boneqct.report.pdf import STYLES, table

DEMO_PHANTOM = "mindways-model3"


def run_demo(out_dir: str | Path, seed: int = 0) -> dict:
    """Run the demo into ``out_dir``; return the summary that is also written as JSON."""
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    _step(1, "Generating the digital spine phantom (body, L1-L3, five-rod phantom)")
    phantom = make_spine_phantom(SpinePhantomParams(), ScannerParams(), seed=seed)
    paths = write_phantom(phantom, out_dir / "phantom", formats=("dicom", "nifti"))
    print(f"    DICOM series: {paths['dicom']}\n    truth: {paths['truth']}")

    _step(2, "Loading the DICOM series as a patient scan")
    volume = load_ct(paths["dicom"])
    print(f"    size (i, j, k) {list(volume.size_ijk)}, spacing "
          f"{[round(float(s), 3) for s in volume.spacing_mm]} mm")

    _step(3, f"Finding the rods of the {DEMO_PHANTOM} phantom and fitting the calibration")
    calibration = calibrate_with_phantom(volume, DEMO_PHANTOM)
    true_cal = phantom.truth["calibration"]
    slope_error_pct = 100.0 * (calibration.slope_hu_per_mg_cm3 / true_cal["slope_hu_per_mg_cm3"] - 1)
    intercept_error_hu = calibration.intercept_hu - true_cal["intercept_hu"]
    print(f"    slope {calibration.slope_hu_per_mg_cm3:.4f} HU per mg/cm3 (truth "
          f"{true_cal['slope_hu_per_mg_cm3']:.4f}, error {slope_error_pct:+.2f}%)")
    print(f"    intercept {calibration.intercept_hu:.2f} HU (truth {true_cal['intercept_hu']:.2f}, "
          f"error {intercept_error_hu:+.2f} HU), R2 {calibration.r2:.5f}")
    write_json_atomic(out_dir / "calibration.json", calibration.to_dict())

    _step(4, "Converting the scan to BMD (mg/cm3 K2HPO4)")
    bmd = convert_volume_to_bmd(volume, calibration)
    write_volume(bmd, out_dir / "bmd.nii.gz")

    _step(5, "Writing the report")
    summary = {
        "calibration": calibration.to_dict(),
        "truth_calibration": true_cal,
        "slope_error_percent": slope_error_pct,
        "intercept_error_hu": intercept_error_hu,
        "outputs": {"calibration": "calibration.json", "bmd": "bmd.nii.gz",
                    "report": "report.pdf", "phantom": str(paths["dicom"])},
    }
    truth_rows = [["", "Measured", "Truth", "Error"],
                  ["Slope (HU per mg/cm3)", f"{calibration.slope_hu_per_mg_cm3:.4f}",
                   f"{true_cal['slope_hu_per_mg_cm3']:.4f}", f"{slope_error_pct:+.2f} %"],
                  ["Intercept (HU)", f"{calibration.intercept_hu:.2f}",
                   f"{true_cal['intercept_hu']:.2f}", f"{intercept_error_hu:+.2f} HU"]]
    write_report(out_dir / "report.pdf", "BoneQCT demo: digital spine phantom", [
        exam_table(volume.metadata, anonymize=False), Spacer(1, 3),
        *calibration_section(calibration),
        Paragraph("Against the phantom's truth", STYLES["Heading2"]), table(truth_rows),
    ])
    write_json_atomic(out_dir / "demo.json", summary)
    print(f"    {out_dir / 'report.pdf'}\nDone in {time.perf_counter() - t0:.1f} s.")
    return summary


def _step(number: int, text: str) -> None:
    print(f"[{number}] {text}")
