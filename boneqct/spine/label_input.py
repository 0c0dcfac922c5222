"""Vertebra label maps as users have them, and the check that one belongs to the CT.

A label map is a single volume in TotalSegmentator v2 or VerSe numbering, or a
TotalSegmentator output folder of per-structure masks (``vertebrae_L1.nii.gz`` ...), which is
read into one map in TotalSegmentator numbering. ``check_labels_match_ct`` refuses a map from
another scan or shifted against the CT before anything is measured on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from boneqct.errors import SpineError
from boneqct.io import read_volume_file
from boneqct.io.resample import labels_to_grid
from boneqct.spine.levels import LABEL_SCHEMES
from boneqct.volume import Volume

#: File name of a TotalSegmentator per-structure mask of a level.
TOTALSEG_MASK_NAME = "vertebrae_{level}.nii.gz"
#: Least share of the labelled vertebra voxels that must lie within the CT's extent.
MIN_LABEL_INSIDE_FRACTION = 0.9
#: Shifts (mm) tried along each CT axis when checking the alignment, and the largest shift
#: (mm) of best bone overlap accepted: vertebral labels sit on the densest voxels of their
#: neighbourhood, so the mean HU under them peaks at no shift.
ALIGNMENT_SHIFTS_MM = np.arange(-15.0, 15.01, 2.5)
MAX_ALIGNMENT_SHIFT_MM = 5.0


def read_vertebra_labels(path: str | Path) -> tuple[Volume, str | None]:
    """Read a label map file, or a TotalSegmentator folder of per-structure masks.

    Returns the label map and the scheme it is known to follow ("totalsegmentator" for a
    folder; None for a file, whose numbering the user states).
    """
    path = Path(path)
    if not path.is_dir():
        return read_volume_file(path), None
    table = LABEL_SCHEMES["totalsegmentator"]
    found = {value: path / TOTALSEG_MASK_NAME.format(level=level)
             for value, level in table.items()
             if (path / TOTALSEG_MASK_NAME.format(level=level)).is_file()}
    if not found:
        names = ", ".join(TOTALSEG_MASK_NAME.format(level=level) for level in table.values())
        raise SpineError(f"The folder '{path.name}' holds no vertebra masks ({names}). Give a "
                         "TotalSegmentator output folder or a label map file.")
    combined = None
    for value, file in sorted(found.items()):
        mask = read_volume_file(file)
        if combined is None:
            combined = mask.with_array(np.zeros(mask.array_kji.shape, np.uint8))
        elif (mask.array_kji.shape != combined.array_kji.shape
              or not np.allclose(mask.ijk_to_ras, combined.ijk_to_ras, atol=1e-3)):
            raise SpineError(f"'{file.name}' is on another grid than the other masks in "
                             f"'{path.name}'; give masks of one TotalSegmentator run.")
        combined.array_kji[mask.array_kji > 0] = value
    combined.metadata = {"source": "TotalSegmentator masks", "files": sorted(
        f.name for f in found.values())}
    return combined, "totalsegmentator"


def check_labels_match_ct(volume_hu: Volume, labels: Volume, values) -> None:
    """Refuse a label map that does not belong to the CT: vertebra labels mostly outside the
    CT, or not on the CT's bone (their mean HU would be higher a few mm away).

    Raises:
        SpineError: naming which check failed and what to do.
    """
    values = list(values)
    labelled = np.isin(labels.array_kji, values)
    n_labelled = int(labelled.sum())
    on_ct = labels_to_grid(labels.with_array(labelled.astype(np.uint8)), volume_hu).array_kji > 0
    expected_on_ct = n_labelled * float(np.prod(labels.spacing_mm) / np.prod(volume_hu.spacing_mm))
    inside = float(on_ct.sum()) / max(expected_on_ct, 1.0)
    if inside < MIN_LABEL_INSIDE_FRACTION:
        raise SpineError(f"Only {100 * inside:.0f}% of the labelled vertebrae lie within the CT: "
                         "the label map does not belong to this scan (another scan, or another "
                         "position). Give the label map made from this CT.")
    kji = np.argwhere(on_ct)
    hu = volume_hu.array_kji
    best = (-np.inf, 0.0)
    for axis in range(3):
        step_mm = float(volume_hu.spacing_mm[2 - axis])
        for shift_mm in ALIGNMENT_SHIFTS_MM:
            shift = int(round(shift_mm / step_mm))
            moved = kji.copy()
            moved[:, axis] += shift
            keep = (moved[:, axis] >= 0) & (moved[:, axis] < hu.shape[axis])
            if keep.mean() < 0.5:
                continue
            mean_hu = float(hu[tuple(moved[keep].T)].mean())
            if mean_hu > best[0]:
                best = (mean_hu, shift * step_mm)
    if abs(best[1]) > MAX_ALIGNMENT_SHIFT_MM:
        raise SpineError(f"The vertebra labels do not lie on the CT's bone: they would fit "
                         f"{abs(best[1]):.0f} mm away. The label map does not match this CT "
                         "(another scan, or shifted); give the label map made from this CT.")
