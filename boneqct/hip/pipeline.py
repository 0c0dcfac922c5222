"""Hip CTXA end to end: ``analyze_hip`` from a CT in HU and its calibration to the per-region
table, the anatomical frame, T-scores and the WHO category (``HipResult.to_dict`` is hip.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from boneqct.calibration import convert_volume_to_bmd
from boneqct.hip.errors import NoCalibrationError
from boneqct.hip.extraction import (
    DEFAULT_BONE_THRESHOLD_MG_CM3,
    check_no_metal,
    cut_at_joint_space,
    femur_component,
    femur_from_labels,
    fill_femur,
    patient_midline_x_mm,
)
from boneqct.hip.frame import FemurFrame, check_head_in_scan, femur_frame
from boneqct.hip.interpret import hip_scores
from boneqct.hip.projection import DEFAULT_PIXEL_MM, Projection, project_femur
from boneqct.hip.rois import (
    DISTAL_BORDER_BELOW_HEAD_MM,
    EDGE_THRESHOLD_G_CM2,
    NECK_BOX_WIDTH_MM,
    TROCHANTER_LINE_ANGLE_DEG,
    RoiPlacement,
    bone_pixels,
    measure_rois,
    place_rois,
    roi_label_image,
)
from boneqct.volume import Volume


@dataclass
class HipResult:
    """One hip: regions, frame, placement, interpretation; images for outputs and display."""

    side: str
    rois: dict
    frame: FemurFrame
    placement: RoiPlacement
    interpretation: dict
    calibration: object
    qc: dict
    warnings: list[str] = field(default_factory=list)
    projection: Projection | None = field(default=None, repr=False)
    roi_labels: np.ndarray | None = field(default=None, repr=False)
    femur_mask_kji: np.ndarray | None = field(default=None, repr=False)
    volume_bmd: Volume | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """The ``hip.json`` document (without exam metadata)."""
        return {"side": self.side, "material": self.calibration.material,
                "calibration": self.calibration.to_dict(), "rois": self.rois,
                "frame": self.frame.to_dict(), "placement": self.placement.to_dict(),
                "interpretation": self.interpretation, "qc": self.qc,
                "projection": {"pixel_mm": self.projection.pixel_mm,
                               "size_rows_cols": list(self.projection.bmc_g.shape),
                               "axes_ras": self.projection.axes_ras.tolist()},
                "warnings": self.warnings}


def extract_femur(volume_hu: Volume, volume_bmd: Volume, side: str, seed_ras_mm=None,
                  labels: Volume | None = None, label_scheme: str = "totalsegmentator",
                  bone_threshold_mg_cm3: float = DEFAULT_BONE_THRESHOLD_MG_CM3
                  ) -> tuple[np.ndarray, FemurFrame]:
    """The filled femur mask (KJI, on the CT grid) of ``side`` and its anatomical frame.

    Raises FemurNotFoundError, ImplantError or TruncatedFemurError (messages say what to do).
    """
    if labels is not None:
        component = femur_from_labels(labels, volume_bmd, side, label_scheme)
    else:
        component = femur_component(volume_bmd, side, seed_ras_mm, bone_threshold_mg_cm3,
                                    patient_midline_x_mm(volume_hu))
    check_no_metal(volume_hu, component, side)
    check_head_in_scan(component, volume_bmd)
    mask = fill_femur(component, volume_bmd.spacing_mm)
    frame = femur_frame(mask, volume_bmd)
    mask = cut_at_joint_space(mask, volume_bmd, frame.head_center_ras_mm, frame.head_radius_mm,
                              frame.neck_axis_ras)
    return mask, femur_frame(mask, volume_bmd)


def analyze_hip(volume_hu: Volume, calibration, side: str, *, seed_ras_mm=None,
                labels: Volume | None = None, label_scheme: str = "totalsegmentator",
                pixel_mm: float = DEFAULT_PIXEL_MM,
                bone_threshold_mg_cm3: float = DEFAULT_BONE_THRESHOLD_MG_CM3,
                neck_box_width_mm: float = NECK_BOX_WIDTH_MM,
                distal_border_below_head_mm: float = DISTAL_BORDER_BELOW_HEAD_MM,
                trochanter_line_angle_deg: float = TROCHANTER_LINE_ANGLE_DEG,
                edge_threshold_g_cm2: float = EDGE_THRESHOLD_G_CM2,
                neck_center_s_mm: float | None = None,
                population: str | None = "nhanes3", sex: str | None = None,
                age_years: float | None = None) -> HipResult:
    """Measure one hip: DXA-equivalent aBMD of the neck, trochanter, intertrochanter and
    total hip from a CT in HU and its calibration (``boneqct.calibration.Calibration``).

    Args:
        side: "left" or "right".
        seed_ras_mm: optional point in the femoral head or neck (RAS mm).
        labels: optional label map with the femurs (``label_scheme`` numbering).
        pixel_mm: projection pixel size (mm).
        bone_threshold_mg_cm3: BMD threshold of the femur extraction.
        neck_box_width_mm, distal_border_below_head_mm, trochanter_line_angle_deg,
        edge_threshold_g_cm2, neck_center_s_mm: region placement (see ``boneqct.hip.rois``).
        population: DXA reference ("nhanes3", "chinese-women") or None; sex "F"/"M", age.
    """
    if calibration is None:
        raise NoCalibrationError(
            "Hip CTXA needs calibrated bone mineral density: areal BMD in g/cm2 cannot be "
            "computed from CT numbers alone. Give a calibration (--phantom, --calibration, or "
            "--slope and --intercept).")
    volume_bmd = convert_volume_to_bmd(volume_hu, calibration)
    mask, frame = extract_femur(volume_hu, volume_bmd, side, seed_ras_mm, labels, label_scheme,
                                bone_threshold_mg_cm3)
    projection = project_femur(volume_bmd, mask, frame, pixel_mm)
    placement = place_rois(projection, frame.head_radius_mm, frame.neck_axis_ras,
                           frame.neck_length_mm, neck_box_width_mm, distal_border_below_head_mm,
                           trochanter_line_angle_deg, edge_threshold_g_cm2, neck_center_s_mm)
    roi_labels = roi_label_image(projection, placement)
    rois = measure_rois(projection, roi_labels, bone_pixels(projection, edge_threshold_g_cm2))
    interpretation = hip_scores(rois, population, sex, age_years)
    warnings = []
    if frame.head_fit_rms_mm > 1.5:
        warnings.append(f"The femoral head is not well fitted by a sphere (RMS "
                        f"{frame.head_fit_rms_mm:.1f} mm); check the extraction.")
    qc = {"head_fit_rms_mm": frame.head_fit_rms_mm,
          "femur_mineral_g": float(projection.bmc_g.sum()),
          "femur_volume_cm3": float(projection.volume_cm3.sum()),
          "calibration_warnings": list(getattr(calibration, "warnings", []) or [])}
    return HipResult(side, rois, frame, placement, interpretation, calibration, qc, warnings,
                     projection, roi_labels, mask, volume_bmd)


__all__ = ["HipResult", "analyze_hip", "extract_femur"]
