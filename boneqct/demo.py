"""The demo: every step of the main job on the bundled digital phantom, compared with its truth.

``boneqct demo --out DIR`` (and ``make demo``) generates the phantom CT as a DICOM series and
a seed-point file as a user would click it in Slicer, loads the series like a patient scan,
finds the calibration phantom's rods, fits the calibration, places the vertebral ROIs,
measures per-level BMD, computes L2's strength by finite elements, and writes the spine
report, the calibration report, the FE report and mesh, and the data files. Each step prints what it did and how far the measurement is from the known truth.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from boneqct.calibration import calibrate_with_phantom, convert_volume_to_bmd
from boneqct.fe.options import FEOptions
from boneqct.fe.pipeline import analyze_fe
from boneqct.fe.vertebra import write_fe_outputs
from boneqct.io import load_ct, write_json_atomic, write_volume
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom, write_phantom
from boneqct.report import calibration_section, exam_table, write_report
from boneqct.spine.outputs import write_spine_outputs
from boneqct.spine.pipeline import analyze_spine
from boneqct.spine.seeds import read_markups_seeds, write_markups_points

DEMO_PHANTOM = "mindways-model3"
#: The demo's vertebrae: L1 at 36 mg/cm3 (the seed's cement case), L2 and L3 as in the ESP.
DEMO_DENSITIES_MG_CM3 = (36.0, 100.0, 200.0)
#: Where the demo's "user" clicks: a few mm off each body's centre (RAS mm).
CLICK_OFFSET_RAS_MM = np.array([2.0, -3.0, 1.5])


def run_demo(out_dir: str | Path, seed: int = 0) -> dict:
    """Run the demo into ``out_dir``; return the summary that is also written as JSON."""
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    _step(1, "Generating the digital spine phantom (body, L1-L3 at 36/100/200 mg/cm3, "
             "five-rod phantom, 10 degrees of lordosis)")
    phantom = make_spine_phantom(
        SpinePhantomParams(trabecular_bmd_mg_cm3=DEMO_DENSITIES_MG_CM3, spine_tilt_deg=10.0),
        ScannerParams(pixel_mm=0.9, matrix=(380, 290), n_slices=64, slice_spacing_mm=1.5,
                      slice_thickness_mm=1.5, noise_sd_hu=15.0), seed=seed)
    paths = write_phantom(phantom, out_dir / "phantom", formats=("dicom", "nifti"))
    seeds_path = write_markups_points(
        {v["level"]: np.array(v["body_center_ras_mm"]) + CLICK_OFFSET_RAS_MM
         for v in phantom.truth["vertebrae"]}, out_dir / "phantom" / "seeds.mrk.json",
        name="Vertebral seeds")
    print(f"    DICOM series: {paths['dicom']}\n    seed points (as clicked in Slicer): "
          f"{seeds_path}\n    truth: {paths['truth']}")

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
    write_report(out_dir / "calibration_report.pdf", "Calibration report", [
        exam_table(volume.metadata, anonymize=False), *calibration_section(calibration, volume)])

    _step(4, "Placing the vertebral ROIs from the seed points and measuring each level")
    result = analyze_spine(volume, calibration, seeds=read_markups_seeds(seeds_path))
    spine_paths = write_spine_outputs(out_dir, result, volume)
    truth_bmd = {v["level"]: v["trabecular_bmd_mg_cm3"] for v in phantom.truth["vertebrae"]}
    level_errors = {}
    for lv in result.levels:
        level_errors[lv.level] = 100.0 * (lv.bmd_mg_cm3 / truth_bmd[lv.level] - 1.0)
        cement = "  -> cement augmentation suggested" if lv.cement_augmentation else ""
        print(f"    {lv.level}: {lv.bmd_mg_cm3:6.1f} mg/cm3 (truth {truth_bmd[lv.level]:.0f}, "
              f"error {level_errors[lv.level]:+.2f}%){cement}")
    print(f"    mean {'/'.join(result.levels_used)} {result.mean_bmd_mg_cm3:.1f} mg/cm3: "
          f"{result.category}")

    _step(5, "Converting the scan to a BMD volume (mg/cm3 K2HPO4)")
    bmd = convert_volume_to_bmd(volume, calibration)
    write_volume(bmd, out_dir / "bmd.nii.gz")

    _step(6, "Vertebral strength of L2 by finite elements (1 mm hexahedra, PMMA caps, "
             "0.68% linear rule)")
    fe = analyze_fe(volume, calibration, FEOptions(criterion="linear"), level="L2",
                    seeds=read_markups_seeds(seeds_path))
    fe_paths = write_fe_outputs(out_dir / "fe_L2", fe, volume.metadata)
    print(f"    {fe.n_elements} elements, stiffness {fe.stiffness_n_mm:.0f} N/mm, strength "
          f"{fe.strength_n:.0f} N; mesh with fields: {fe_paths['vtu']}")

    summary = {
        "slope_error_percent": slope_error_pct,
        "intercept_error_hu": intercept_error_hu,
        "level_bmd_error_percent": level_errors,
        "mean_bmd_mg_cm3": result.mean_bmd_mg_cm3,
        "category": result.category,
        "fe_l2": {"stiffness_n_mm": fe.stiffness_n_mm, "strength_n": fe.strength_n,
                  "converged": fe.solver["converged"]},
        "outputs": {name: str(path) for name, path in spine_paths.items()}
        | {"calibration": str(out_dir / "calibration.json"),
           "calibration_report": str(out_dir / "calibration_report.pdf"),
           "bmd": str(out_dir / "bmd.nii.gz")}
        | {f"fe_{name}": str(path) for name, path in fe_paths.items()},
    }
    write_json_atomic(out_dir / "demo.json", summary)
    print(f"Report: {spine_paths['report']}\nDone in {time.perf_counter() - t0:.1f} s.")
    return summary


def _step(number: int, text: str) -> None:
    print(f"[{number}] {text}")
