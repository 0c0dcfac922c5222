"""Benchmark: hip CTXA of one side on a 512 x 512 x 200 series (both hips), excluding loading.

Times ``analyze_hip`` (BMD conversion, extraction, frame, projection, regions, scores) and
writing every output; goal: under 10 s. Prints the neck aBMD error against the analytic truth.
Run: ``python Testing/benchmarks/bench_hip.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from boneqct.calibration import manual_calibration
from boneqct.hip.outputs import write_hip_outputs
from boneqct.hip.pipeline import analyze_hip
from boneqct.io import load_ct, write_volume
from boneqct.phantoms import ScannerParams
from boneqct.phantoms.femur import FemurPhantomParams, make_femur_phantom

FULL_SIZE = ScannerParams(pixel_mm=0.7, matrix=(512, 512), n_slices=200, slice_spacing_mm=0.8,
                          slice_thickness_mm=1.0, psf_fwhm_mm=0.8, noise_sd_hu=15.0,
                          supersample=2, fov_center_ras_mm=(0.0, 10.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("build/bench-hip-512"))
    args = parser.parse_args()
    ct_path, truth_path = args.cache / "ct.nii.gz", args.cache / "truth.json"
    if not ct_path.exists():
        t0 = time.perf_counter()
        phantom = make_femur_phantom(FemurPhantomParams(sides=("left", "right"),
                                                        anteversion_deg=15.0), FULL_SIZE, seed=5)
        write_volume(phantom.volume, ct_path)
        truth_path.write_text(json.dumps(phantom.truth))
        print(f"generated the phantom in {time.perf_counter() - t0:.1f} s")
    volume = load_ct(ct_path)
    truth = json.loads(truth_path.read_text())
    line = truth["calibration"]
    calibration = manual_calibration(line["slope_hu_per_mg_cm3"], line["intercept_hu"])
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        result = analyze_hip(volume, calibration, side="left", sex="F")
        t1 = time.perf_counter()
        write_hip_outputs(out, result, volume.metadata)
        t2 = time.perf_counter()
    neck = result.rois["neck"]["abmd_g_cm2"]
    print(f"series {volume.array_kji.shape[::-1]} (i, j, k)")
    print(f"analysis {t1 - t0:.2f} s, outputs {t2 - t1:.2f} s, total {t2 - t0:.2f} s (goal < 10 s)")
    print(f"neck aBMD {neck:.4f} g/cm2 vs analytic {truth['neck_abmd_g_cm2']:.4f} "
          f"({100 * (neck / truth['neck_abmd_g_cm2'] - 1):+.2f}%)")


if __name__ == "__main__":
    main()
