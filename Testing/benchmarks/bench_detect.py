"""Benchmark: automatic vertebra detection on a scan of clinical size (512 x 512 x 300 voxels,
0.7 x 0.7 x 1.0 mm); goal: under 5 s.

The scan is the digital spine phantom with a sacrum and ribs on T11-T12 (rendered on a coarse
grid, then interpolated onto the clinical grid, int16 as read from DICOM). Reports the median
of three runs, the CPU count and the load average (other work on the machine slows it).
Run: ``python Testing/benchmarks/bench_detect.py``.
"""

from __future__ import annotations

import os
import time

import numpy as np
import SimpleITK as sitk

from boneqct.io import volume_from_sitk, volume_to_sitk
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom
from boneqct.spine.detect import detect_vertebrae

GOAL_S = 5.0
SIZE_IJK = (512, 512, 300)
SPACING_MM = (0.7, 0.7, 1.0)
LEVELS = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")


def clinical_size_scan():
    """The phantom (body 300 x 200 mm, T11 to S1) on a 512 x 512 x 300 grid."""
    params = SpinePhantomParams(levels=LEVELS, trabecular_bmd_mg_cm3=tuple(
        np.linspace(130.0, 60.0, len(LEVELS))), vertebra_spacing_mm=34.0,
        posterior_height_mm=22.0, cortical_thickness_mm=1.5, sacrum=True, ribs=("T11", "T12"))
    coarse = make_spine_phantom(params, ScannerParams(
        pixel_mm=2.5, matrix=(136, 112), n_slices=110, slice_spacing_mm=3.0,
        slice_thickness_mm=3.0, supersample=1), seed=1).volume
    image = volume_to_sitk(coarse)
    reference = sitk.Image(SIZE_IJK, sitk.sitkInt16)
    reference.SetSpacing(SPACING_MM)
    reference.SetDirection(image.GetDirection())
    centre = image.TransformContinuousIndexToPhysicalPoint(
        [(n - 1) / 2.0 for n in image.GetSize()])
    half_extent_mm = (np.array(SIZE_IJK) - 1) / 2.0 * np.array(SPACING_MM)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    reference.SetOrigin((np.array(centre) - direction @ half_extent_mm).tolist())
    fine = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, -1000.0,
                         sitk.sitkInt16)
    return volume_from_sitk(fine)


def main() -> None:
    volume = clinical_size_scan()
    print(f"scan: {volume.array_kji.shape[::-1]} voxels, {volume.spacing_mm.round(2).tolist()} mm")
    times, result = [], None
    for _ in range(3):
        start = time.perf_counter()
        result = detect_vertebrae(volume)
        times.append(time.perf_counter() - start)
    median_s = float(np.median(times))
    print(f"levels: {[lv.level for lv in result.levels]}")
    print(f"detection: median {median_s:.2f} s of {[round(t, 2) for t in times]} "
          f"(goal < {GOAL_S:.0f} s: {'met' if median_s < GOAL_S else 'NOT met'}); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
