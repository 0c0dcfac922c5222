"""Volumetric BMD of the femoral head, the subcapital region and the neck, for fracture
fixation planning (issue 16 item 2; the lecture's hip case: head 170, subcapital 129, neck
-29 mg/cm3).

Regions, in the hip module's frame (``boneqct.hip.frame.FemurFrame``: head sphere of radius
R fitted to the periosteal surface, neck axis from the head centre laterally), each a
cylinder on the neck axis whose voxels are weighted by the share of their volume inside it
(``boneqct.screw.trajectory``, partial volume):

- head: centred on the head centre, length R and diameter R (the head's trabecular core,
  R/2 away from its surface);
- subcapital: from the head sphere's surface along the axis (distance R from the head
  centre) to ``SUBCAPITAL_LENGTH_MM`` beyond it, i.e. just lateral of the head, where
  subcapital fractures run;
- neck: ``NECK_LENGTH_MM`` long, centred midway between the head's surface and the neck
  axis's closest approach to the shaft axis (the frame's neck length).

The subcapital and neck cylinders have ``CORE_FRACTION`` of the neck's local radius (that of
a circle of the femur's cross-sectional area perpendicular to the axis there), so they hold
trabecular bone and stay off the cortex. The sizes are project choices, not a published
convention (no standard head/neck vBMD regions were found).
"""

from __future__ import annotations

import numpy as np

from boneqct.hip.frame import FemurFrame
from boneqct.screw.measure import weighted_mean_sd
from boneqct.screw.trajectory import ScrewLine, sample_screw
from boneqct.volume import Volume

#: Length (mm) of the subcapital cylinder beyond the head's surface, and of the neck cylinder.
SUBCAPITAL_LENGTH_MM = 5.0
NECK_LENGTH_MM = 10.0
#: Share of the local (head or neck) radius the regions' radius takes.
CORE_FRACTION = 0.5
#: Least share of a region inside the femur for its value to count (else None, a warning).
MIN_INSIDE_FEMUR = 0.95
REGION_NAMES = ("head", "subcapital", "neck")
#: What each region is, for hip.json and the report.
REGION_DEFINITIONS = {
    "head": "cylinder on the neck axis centred on the head centre, length and diameter R "
            "(R: the fitted head radius)",
    "subcapital": f"cylinder on the neck axis from the head's surface to {SUBCAPITAL_LENGTH_MM:g} "
                  f"mm beyond it, {CORE_FRACTION:g} of the neck's local radius",
    "neck": f"cylinder on the neck axis, {NECK_LENGTH_MM:g} mm long, midway between the head's "
            f"surface and the shaft axis, {CORE_FRACTION:g} of the neck's local radius",
}


def _local_radius_mm(volume: Volume, mask_kji: np.ndarray, frame: FemurFrame, start_mm: float,
                     end_mm: float) -> float:
    """Radius (mm) of a circle of the femur's mean cross-sectional area perpendicular to the
    neck axis between ``start_mm`` and ``end_mm`` from the head centre."""
    kji = np.argwhere(mask_kji)
    along = (volume.ijk_to_ras_points(kji[:, ::-1]) - frame.head_center_ras_mm) @ frame.neck_axis_ras
    n = np.count_nonzero((along >= start_mm) & (along < end_mm))
    voxel_mm3 = float(abs(np.linalg.det(volume.ijk_to_ras[:3, :3])))
    return float(np.sqrt(n * voxel_mm3 / (end_mm - start_mm) / np.pi))


def head_neck_vbmd(volume_bmd: Volume, mask_kji: np.ndarray, frame: FemurFrame) -> dict:
    """The regions' vBMD (mg/cm3 of the calibration's material) from the BMD around the femur
    (``HipResult.volume_bmd``) and the femur mask on its grid.

    Returns ``{"regions": {name: {"vbmd_mg_cm3", "sd_mg_cm3", "volume_cm3",
    "inside_femur_fraction", "radius_mm", "from_mm", "to_mm"}}, "definitions", "warnings"}``
    with distances along the neck axis from the head centre; a region less than
    ``MIN_INSIDE_FEMUR`` inside the femur has None for its vBMD and a warning.
    """
    radius = frame.head_radius_mm
    mid_neck = radius + (frame.neck_length_mm - radius) / 2.0
    spans = {"head": (-radius / 2.0, radius / 2.0),
             "subcapital": (radius, radius + SUBCAPITAL_LENGTH_MM),
             "neck": (mid_neck - NECK_LENGTH_MM / 2.0, mid_neck + NECK_LENGTH_MM / 2.0)}
    regions, warnings = {}, []
    for name, (start_mm, end_mm) in spans.items():
        roi_radius = (CORE_FRACTION * radius if name == "head" else CORE_FRACTION
                      * _local_radius_mm(volume_bmd, mask_kji, frame, start_mm, end_mm))
        line = ScrewLine(name, frame.head_center_ras_mm + start_mm * frame.neck_axis_ras,
                         frame.head_center_ras_mm + end_mm * frame.neck_axis_ras)
        sampling = sample_screw(volume_bmd, line, 2.0 * roi_radius, 1.0, end_mm - start_mm)
        k, j, i = sampling.kji.T
        weights = sampling.cylinder_weight
        inside, _ = weighted_mean_sd(mask_kji[k, j, i].astype(float), weights)
        mean, sd = weighted_mean_sd(volume_bmd.array_kji[k, j, i].astype(np.float64), weights)
        usable = inside is not None and inside >= MIN_INSIDE_FEMUR \
            and sampling.outside_fraction == 0.0
        if not usable:
            warnings.append(f"Femoral {name} vBMD not given: its region lies "
                            f"{100 * (inside or 0.0):.0f}% inside the femur (at least "
                            f"{100 * MIN_INSIDE_FEMUR:.0f}% needed); check the femur's "
                            "extraction and frame.")
        regions[name] = {"vbmd_mg_cm3": mean if usable else None,
                         "sd_mg_cm3": sd if usable else None,
                         "volume_cm3": float(weights.sum() * sampling.voxel_volume_mm3 / 1000.0),
                         "inside_femur_fraction": inside, "radius_mm": roi_radius,
                         "from_mm": start_mm, "to_mm": end_mm}
    return {"regions": regions, "definitions": REGION_DEFINITIONS, "warnings": warnings}
