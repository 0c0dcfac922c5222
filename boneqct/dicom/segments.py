"""The segments of each analysis on the analysed CT's grid, for the SEG: the spine's ROIs (the
label map spine_rois.nii.gz holds), the hip's femur and head/subcapital/neck regions, each
planned screw's cylinder. A cylinder segment holds the voxels at least half inside it (by
the partial-volume weights its BMD was measured with). FE has no segment (its result keeps
no mask)."""

from __future__ import annotations

import numpy as np

from boneqct.dicom import codes
from boneqct.dicom.seg import Segment
from boneqct.screw.trajectory import ScrewLine, sample_screw
from boneqct.volume import Volume

#: Least share of a voxel inside a cylinder for the voxel to be in its segment.
MIN_VOXEL_SHARE = 0.5


def cylinder_mask(volume: Volume, entry_ras_mm, tip_ras_mm, diameter_mm: float) -> np.ndarray:
    """Boolean mask (KJI) of the voxels at least ``MIN_VOXEL_SHARE`` inside the cylinder."""
    line = ScrewLine("cylinder", np.asarray(entry_ras_mm, float), np.asarray(tip_ras_mm, float))
    sampling = sample_screw(volume, line, diameter_mm, 0.0, line.length_mm)
    mask = np.zeros(volume.array_kji.shape, bool)
    k, j, i = sampling.kji[sampling.cylinder_weight >= MIN_VOXEL_SHARE].T
    mask[k, j, i] = True
    return mask


def spine_segments(volume: Volume, result) -> list[Segment]:
    """One segment per measured level: its ROI (``roi_label_map``)."""
    from boneqct.spine.pipeline import roi_label_map

    labels = roi_label_map(volume, result)
    return [Segment(level, labels.array_kji == value, codes.TISSUE, codes.BONE,
                    codes.vertebra(level))
            for value, level in labels.metadata["labels"].items()]


def screw_segments(volume: Volume, result) -> list[Segment]:
    """One segment per measured screw: its cylinder."""
    return [Segment(s.name, cylinder_mask(volume, s.entry_ras_mm, s.tip_ras_mm, s.diameter_mm),
                    codes.PHYSICAL_OBJECT, codes.BONE_SCREW, codes.vertebra(s.level))
            for s in result.screws if s.measured]


def hip_segments(volume: Volume, result) -> list[Segment]:
    """The femur (``HipResult.femur_mask_kji`` placed on the CT's grid) and the head,
    subcapital and neck regions (``boneqct.hip.head_neck``) as cylinders on the neck axis."""
    if result.femur_mask_kji is None:
        return []
    femur = np.zeros(volume.array_kji.shape, bool)
    start_ijk = np.rint(volume.ras_to_ijk_points(result.volume_bmd.origin_ras_mm)[0]).astype(int)
    k0, j0, i0 = start_ijk[::-1]
    nk, nj, ni = result.femur_mask_kji.shape
    femur[k0:k0 + nk, j0:j0 + nj, i0:i0 + ni] = result.femur_mask_kji
    segments = [Segment(f"{result.side} femur", femur, codes.ANATOMICAL_STRUCTURE, codes.FEMUR)]
    frame = result.frame
    for name, region in ((result.head_neck or {}).get("regions") or {}).items():
        entry = frame.head_center_ras_mm + region["from_mm"] * frame.neck_axis_ras
        tip = frame.head_center_ras_mm + region["to_mm"] * frame.neck_axis_ras
        segments.append(Segment(
            f"{result.side} femoral {name}", cylinder_mask(volume, entry, tip,
                                                            2.0 * region["radius_mm"]),
            codes.TISSUE, codes.BONE,
            codes.HEAD_OF_FEMUR if name == "head" else codes.PROXIMAL_FEMUR))
    return segments


SEGMENTS = {"spine": spine_segments, "hip": hip_segments, "screw": screw_segments,
            "fe": lambda volume, result: []}
