"""Benchmark: DICOM loading against SimpleITK, and rod detection + calibration fit.

Generates (once, cached) a 512 x 512 x 300 digital phantom series, then reports
  * load time of ``boneqct.io.load_ct`` and of SimpleITK's ImageSeriesReader on the same
    files (best of N after one warm-up each), and their ratio (goal: <= 1.3);
  * rod detection + fit time of ``calibrate_with_phantom`` (goal: < 2 s).
Run: ``make bench`` or ``python Testing/benchmarks/bench_io_calibration.py [--cache DIR]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import SimpleITK as sitk

from boneqct.calibration import calibrate_with_phantom
from boneqct.io import load_ct
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom, write_phantom

FULL_SIZE = ScannerParams(pixel_mm=0.7, matrix=(512, 512), n_slices=300, slice_spacing_mm=1.0,
                          slice_thickness_mm=1.0)


def best_time_s(function, repeats: int) -> tuple[float, object]:
    function()  # warm-up: file cache, imports
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - t0)
    return best, result


def simpleitk_read(folder: Path):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("build/bench-phantom-512"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dicom = args.cache / "dicom"
    if not dicom.is_dir():
        t0 = time.perf_counter()
        phantom = make_spine_phantom(SpinePhantomParams(phantom_offset_mm=(25.0, 0.0),
                                                        phantom_rotation_deg=3.0), FULL_SIZE, seed=7)
        write_phantom(phantom, args.cache, formats=("dicom",))
        print(f"generated and wrote the phantom series in {time.perf_counter() - t0:.1f} s")
    ours_s, volume = best_time_s(lambda: load_ct(dicom), args.repeats)
    itk_s, _ = best_time_s(lambda: simpleitk_read(dicom), args.repeats)
    print(f"series: {volume.size_ijk} voxels")
    print(f"load: boneqct {ours_s:.3f} s, SimpleITK {itk_s:.3f} s, ratio {ours_s / itk_s:.2f} "
          "(goal <= 1.3)")
    cal_s, calibration = best_time_s(lambda: calibrate_with_phantom(volume, "mindways-model3"),
                                     args.repeats)
    print(f"rod detection + fit: {cal_s:.3f} s (goal < 2 s), R2 {calibration.r2:.5f}, "
          f"slope {calibration.slope_hu_per_mg_cm3:.4f}, intercept {calibration.intercept_hu:.2f}")


if __name__ == "__main__":
    main()
