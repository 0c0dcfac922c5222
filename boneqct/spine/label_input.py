"""Vertebra label maps as users have them, and the check that one belongs to the CT.

A label map is a single volume in TotalSegmentator v2 or VerSe numbering, or a
TotalSegmentator output folder of per-structure masks (``vertebrae_L1.nii.gz`` ...), which is
read into one map in TotalSegmentator numbering. ``check_labels_match_ct`` refuses a map from
another scan or shifted against the CT before anything is measured on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from boneqct.errors import SpineError
from boneqct.io import read_volume_file
from boneqct.io.resample import labels_to_grid
from boneqct.spine.levels import LEVEL_NAMES, label_schemes
from boneqct.spine.local_grid import bounding_box
from boneqct.volume import Volume

#: File name of a TotalSegmentator per-structure mask of a level.
TOTALSEG_MASK_NAME = "vertebrae_{level}.nii.gz"
#: Least share of the labelled vertebra voxels that must lie within the CT's extent.
MIN_LABEL_INSIDE_FRACTION = 0.9
#: Shifts (mm) tried along each CT axis when checking the alignment, and the least fit
#: accepted: a label's outline lies on the bone's edges (the vertebra's surface, or the inner
#: cortex for a label of the interior), so the mean gradient magnitude along it is near its
#: best at no shift. Measured on the real test crop at 0.7 x 0.7 x 2.5 mm: 1.0 in place,
#: 0.99 shifted 3 mm, 0.78 at 5 mm, 0.66-0.79 at 8-10 mm; at 3 mm voxels the outline is too
#: coarse to tell shifts under 15 mm (0.88-0.98), and only the coverage check applies.
ALIGNMENT_SHIFTS_MM = np.arange(-15.0, 15.01, 2.5)
MIN_EDGE_FIT = 0.85


def read_vertebra_labels(path: str | Path,
                         levels: tuple[str, ...] = LEVEL_NAMES) -> tuple[Volume, str | None]:
    """Read a label map file, or a TotalSegmentator folder of per-structure masks (those of
    ``levels``).

    Returns the label map and the scheme it is known to follow ("totalsegmentator" for a
    folder; None for a file, whose numbering the user states).
    """
    path = Path(path)
    if not path.is_dir():
        labels = read_volume_file(path)
        _refuse_fractional_labels(labels, path.name)
        return labels, None
    table = label_schemes(levels)["totalsegmentator"]
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


def _refuse_fractional_labels(labels: Volume, name: str) -> None:
    """Refuse a label map holding values that are not whole numbers (31.0000001 matched no
    level, and the message said the map held none): an interpolated label map, or a CT."""
    array = labels.array_kji
    if np.issubdtype(array.dtype, np.integer):
        return
    fractional = array[array != np.round(array)]
    if fractional.size:
        raise SpineError(f"The label map '{name}' holds values that are not whole numbers "
                         f"({fractional.size} voxels, e.g. {float(fractional[0]):.9g}): labels "
                         "are integers. Give the label map as the segmentation tool wrote it "
                         "(resampled by nearest neighbour, not interpolated).")


def check_labels_match_ct(volume_hu: Volume, labels: Volume, values) -> None:
    """Refuse a label map that does not belong to the CT: vertebra labels mostly outside the
    CT, or not on the CT's bone (their outline would follow the CT's edges better a few mm
    away).

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
    fit, best_shift_mm = _edge_fit(volume_hu, on_ct)
    if fit < MIN_EDGE_FIT:
        raise SpineError(f"The vertebra labels do not lie on the CT's bone: their outline "
                         f"follows the CT's bone edges {100 * (1 - fit):.0f}% less well than it "
                         f"would {best_shift_mm:.0f} mm away. The label map does not match this CT "
                         "(another scan, or shifted); give the label map made from this CT.")


def _edge_fit(volume_hu: Volume, labelled_kji: np.ndarray) -> tuple[float, float]:
    """How well the outline of a mask (on the CT grid) follows the CT's HU edges where it is,
    as a fraction of the best fit over shifts along one CT axis (``ALIGNMENT_SHIFTS_MM``),
    and the length (mm) of that best shift."""
    box = bounding_box(labelled_kji, pad=int(np.ceil(ALIGNMENT_SHIFTS_MM.max()
                                                       / volume_hu.spacing_mm.min())) + 1)
    mask = labelled_kji[box]
    edges = ndimage.gaussian_gradient_magnitude(volume_hu.array_kji[box].astype(np.float32), 1.0)
    outline = np.argwhere(mask & ~ndimage.binary_erosion(mask))
    best_score, best_shift_mm, score_here = -np.inf, 0.0, None
    for axis in range(3):
        step_mm = float(volume_hu.spacing_mm[2 - axis])
        for shift in sorted({int(round(mm / step_mm)) for mm in ALIGNMENT_SHIFTS_MM}):
            moved = outline.copy()
            moved[:, axis] += shift
            keep = (moved[:, axis] >= 0) & (moved[:, axis] < mask.shape[axis])
            if keep.mean() < 0.5:
                continue
            score = float(edges[tuple(moved[keep].T)].mean())
            if shift == 0:
                score_here = score
            if score > best_score:
                best_score, best_shift_mm = score, abs(shift) * step_mm
    return score_here / best_score if best_score > 0 else 1.0, best_shift_mm
