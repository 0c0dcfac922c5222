"""Hip CTXA end to end: ``analyze_hip`` from a CT in HU and its calibration to the per-region
table, the anatomical frame, T-scores and the WHO category (``HipResult.to_dict`` is hip.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from boneqct.calibration import Calibration
from boneqct.errors import NoCalibrationError
from boneqct.hip.extraction import (
    bmd_of_box,
    check_no_metal,
    crop_volume,
    cut_at_joint_space,
    femur_component,
    femur_from_labels,
    fill_femur,
    mask_box,
    patient_midline_x_mm,
    side_box,
)
from boneqct.hip.frame import (
    HEAD_SEARCH_TOP_MM,
    SHAFT_FIT_BELOW_HEAD_MM,
    FemurFrame,
    check_head_in_scan,
    check_not_fused,
    femur_frame,
    fit_head,
    neck_axis,
    superior_end_slice,
)
from boneqct.hip.head_neck import head_neck_vbmd
from boneqct.hip.interpret import hip_basis, hip_scores
from boneqct.hip.options import (
    DEFAULT_BONE_THRESHOLD_MG_CM3,
    DISTAL_BORDER_BELOW_HEAD_MM,
    HipOptions,
)
from boneqct.hip.projection import Projection, project_femur
from boneqct.hip.rois import (
    REGION_CONVENTIONS,
    RoiPlacement,
    measure_rois,
    place_rois,
    roi_label_image,
)
from boneqct.options import options_to_dict
from boneqct.progress import step
from boneqct.volume import Volume


@dataclass
class HipResult:
    """One hip: regions, frame, placement, interpretation; images for outputs and display.

    ``projection_image`` (areal BMD, g/cm2, one slice in the DXA position: what
    hip_projection.nii.gz holds) and ``roi_labels`` (regions on its grid: hip_regions.nii.gz)
    are what the report draws; a result read back with :meth:`from_dict` gets them from those
    files (or the scene's nodes). ``projection``, ``femur_mask_kji`` and ``volume_bmd`` exist
    only in the session that measured.
    """

    side: str
    rois: dict
    frame: FemurFrame
    placement: RoiPlacement
    interpretation: dict
    calibration: Calibration
    qc: dict
    warnings: list[str] = field(default_factory=list)
    #: the options measured with (``boneqct.options.options_to_dict`` of ``HipOptions``)
    options: dict | None = None
    #: the projection grid: ``pixel_mm``, ``size_rows_cols``, ``axes_ras`` (columns right, up,
    #: beam)
    projection_grid: dict = field(default_factory=dict)
    projection_image: Volume | None = field(default=None, repr=False)
    roi_labels: np.ndarray | None = field(default=None, repr=False)
    projection: Projection | None = field(default=None, repr=False)
    #: the filled femur (KJI) on ``volume_bmd``'s grid
    femur_mask_kji: np.ndarray | None = field(default=None, repr=False)
    #: BMD (mg/cm3) of the box around the femur: a crop of the CT's grid with its own IJK->RAS
    volume_bmd: Volume | None = field(default=None, repr=False)
    #: volumetric BMD of the femoral head, subcapital region and neck
    #: (``boneqct.hip.head_neck.head_neck_vbmd``)
    head_neck: dict | None = None

    def to_dict(self) -> dict:
        """The ``hip.json`` document (without exam metadata)."""
        return {"side": self.side, "material": self.calibration.material,
                "calibration": self.calibration.to_dict(), "rois": self.rois,
                "frame": self.frame.to_dict(), "placement": self.placement.to_dict(),
                "region_conventions": REGION_CONVENTIONS,
                "interpretation": self.interpretation, "qc": self.qc,
                "projection": self.projection_grid, "options": self.options,
                "head_neck": self.head_neck, "warnings": self.warnings}

    def regions_volume(self) -> Volume:
        """The region labels (``boneqct.hip.rois.ROI_LABELS``) as a one-slice volume on the grid
        of ``projection_image`` (what hip_regions.nii.gz holds)."""
        return Volume(np.asarray(self.roi_labels, np.uint8)[None],
                      self.projection_image.ijk_to_ras, {"unit": ""})

    @classmethod
    def from_dict(cls, document: dict, projection_image: Volume | None = None,
                  roi_labels: np.ndarray | None = None) -> HipResult:
        """The result a ``hip.json`` document (``to_dict``) describes, with the images the report
        draws when given: ``projection_image`` (hip_projection.nii.gz) and ``roi_labels`` (the
        2D region labels of hip_regions.nii.gz)."""
        return cls(
            side=document["side"], rois=document["rois"],
            frame=FemurFrame.from_dict(document["frame"]),
            placement=RoiPlacement.from_dict(document["placement"]),
            interpretation=document["interpretation"],
            calibration=Calibration.from_dict(document["calibration"]), qc=document["qc"],
            warnings=list(document.get("warnings") or []), options=document.get("options"),
            projection_grid=document["projection"], projection_image=projection_image,
            roi_labels=None if roi_labels is None else np.asarray(roi_labels, np.uint8),
            head_neck=document.get("head_neck"))


#: Margin (mm) of the box around the femur in which it is analysed: room for closing the
#: cortex, the metal check around the bone and the joint-space cut.
FEMUR_BOX_MARGIN_MM = 10.0


def extract_femur(volume_hu: Volume, calibration, side: str, seed_ras_mm=None,
                  labels: Volume | None = None, label_scheme: str = "totalsegmentator",
                  bone_threshold_mg_cm3: float = DEFAULT_BONE_THRESHOLD_MG_CM3,
                  distal_border_below_head_mm: float = DISTAL_BORDER_BELOW_HEAD_MM
                  ) -> tuple[np.ndarray, FemurFrame, Volume]:
    """The filled femur of ``side``, its anatomical frame and the BMD around it.

    The femur is found on the side's half of the CT (bone thresholded in HU at the CT number of
    ``bone_threshold_mg_cm3``) or taken from ``labels``; everything after that is done in a box
    around it (``FEMUR_BOX_MARGIN_MM``), and only that box is converted to BMD. The head is
    fitted first and the femur cut from the acetabulum at the joint space (about a provisional
    neck axis searched from the scan's inferior direction); the frame is fitted on what is
    left.

    Returns:
        (mask, frame, volume_bmd): ``volume_bmd`` is the BMD (mg/cm3) of the box, a ``Volume``
        with its own IJK->RAS (a crop of the CT's grid), and ``mask`` (KJI) is on its grid.

    Raises FemurNotFoundError, ImplantError, TruncatedFemurError (head at the scan's upper
    end, or shaft cut by its lower end) or FusedFemurError; each message says what to do.
    """
    if labels is not None:
        grid = volume_hu
        component = femur_from_labels(labels, volume_hu, side, label_scheme)
    else:
        grid = crop_volume(volume_hu, side_box(volume_hu, side, patient_midline_x_mm(volume_hu)))
        component = femur_component(grid, calibration, side, seed_ras_mm, bone_threshold_mg_cm3,
                                    patient_midline_x_mm(volume_hu))
    margin = int(np.ceil(FEMUR_BOX_MARGIN_MM / float(grid.spacing_mm.min())))
    box = mask_box(component, margin)
    box_hu = crop_volume(grid, box)
    component = component[box]
    check_no_metal(box_hu, component, side)
    volume_bmd = bmd_of_box(box_hu, calibration, box[0].start)
    filled = fill_femur(component, volume_bmd.spacing_mm)
    if filled[superior_end_slice(volume_bmd)].any():  # the head, or pelvis rising out of the scan
        check_head_in_scan(volume_bmd, *fit_head(filled, volume_bmd, HEAD_SEARCH_TOP_MM)[:2])
    center, radius, _ = fit_head(filled, volume_bmd)
    check_head_in_scan(volume_bmd, center, radius)
    provisional_neck = neck_axis(filled, volume_bmd, center, radius, np.array([0.0, 0.0, 1.0]))
    mask = cut_at_joint_space(filled, volume_bmd, center, radius, provisional_neck)
    check_not_fused(mask, volume_bmd, center, radius, provisional_neck, bone_threshold_mg_cm3)
    frame = femur_frame(mask, volume_bmd, distal_border_below_head_mm)
    if not np.array_equal(mask, filled):  # cut again about the fitted head and neck
        mask = cut_at_joint_space(filled, volume_bmd, frame.head_center_ras_mm,
                                  frame.head_radius_mm, frame.neck_axis_ras)
        frame = femur_frame(mask, volume_bmd, distal_border_below_head_mm)
    return mask, frame, volume_bmd


def analyze_hip(volume_hu: Volume, calibration: Calibration | None,
                options: HipOptions | None = None, *, side: str, seed_ras_mm=None,
                labels: Volume | None = None, population: str | None = "nhanes3",
                sex: str | None = None, age_years: float | None = None) -> HipResult:
    """Measure one hip: DXA-equivalent aBMD of the neck, trochanter, intertrochanter and
    total hip from a CT in HU and its calibration (``boneqct.calibration.Calibration``).

    Args:
        options: projection pixel, bone threshold, region placement, label numbering
            (``boneqct.hip.options.HipOptions``; None: the defaults).
        side: "left" or "right".
        seed_ras_mm: optional point in the femoral head or neck (RAS mm).
        labels: optional label map with the femurs (``options.label_scheme`` numbering).
        population: DXA reference ("nhanes3", "chinese-women") or None; sex "F"/"M", age in
            years (None: unknown).
    """
    options = options or HipOptions()
    if calibration is None:
        raise NoCalibrationError(
            "Hip CTXA needs calibrated bone mineral density: areal BMD in g/cm2 cannot be "
            "computed from CT numbers alone. Give a calibration (--phantom, --calibration, or "
            "--slope and --intercept).")
    step("hip: femur and its frame")
    mask, frame, volume_bmd = extract_femur(volume_hu, calibration, side, seed_ras_mm, labels,
                                            options.label_scheme, options.bone_threshold_mg_cm3,
                                            options.distal_border_below_head_mm)
    step("hip: projection and regions")
    projection = project_femur(volume_bmd, mask, frame, options.bone_threshold_mg_cm3,
                               options.pixel_mm)
    placement = place_rois(projection, frame.head_radius_mm, frame.neck_axis_ras,
                           frame.neck_length_mm, frame.shaft_fit_below_head_mm,
                           options.neck_box_width_mm,
                           options.distal_border_below_lesser_trochanter_mm,
                           None if options.automatic_neck_center else options.neck_center_s_mm)
    roi_labels = roi_label_image(projection, placement)
    rois = measure_rois(projection, roi_labels)
    basis = hip_basis(calibration)
    interpretation = hip_scores(rois, population, sex, age_years, basis)
    qc = {"head_fit_rms_mm": frame.head_fit_rms_mm,
          "femur_mineral_g": float(projection.bmc_g.sum()),
          "femur_volume_cm3": float(projection.volume_cm3.sum()),
          "soft_tissue_baseline_mg_cm3": projection.soft_tissue_mg_cm3,
          "calibration_warnings": list(getattr(calibration, "warnings", []) or [])}
    grid = {"pixel_mm": projection.pixel_mm, "size_rows_cols": list(projection.bmc_g.shape),
            "axes_ras": projection.axes_ras.tolist()}
    head_neck = head_neck_vbmd(volume_bmd, mask, frame)
    return HipResult(side, rois, frame, placement, interpretation, calibration, qc,
                     basis.warnings() + interpretation["warnings"] + _frame_warnings(frame)
                     + head_neck["warnings"], options_to_dict(options), grid,
                     projection.as_volume(frame.dxa_rotation_ras()), roi_labels, projection,
                     mask, volume_bmd, head_neck)


def _frame_warnings(frame: FemurFrame) -> list[str]:
    """Warnings on the fitted frame: a shortened shaft segment, a head unlike a sphere."""
    warnings = []
    if tuple(frame.shaft_fit_below_head_mm) != SHAFT_FIT_BELOW_HEAD_MM:
        low, high = frame.shaft_fit_below_head_mm
        warnings.append(
            f"The scan ends {high:.0f} mm below the femoral head centre: the shaft axis was "
            f"fitted on a shortened shaft segment, {low:.0f}-{high:.0f} mm below the head "
            f"centre instead of {SHAFT_FIT_BELOW_HEAD_MM[0]:.0f}-{SHAFT_FIT_BELOW_HEAD_MM[1]:.0f}"
            " mm. Check the shaft's alignment on the projection image; a scan reaching "
            f"{SHAFT_FIT_BELOW_HEAD_MM[1]:.0f} mm below the head centre avoids this.")
    if frame.head_fit_rms_mm > 1.5:
        warnings.append(f"The femoral head is not well fitted by a sphere (RMS "
                        f"{frame.head_fit_rms_mm:.1f} mm); check the extraction.")
    return warnings


__all__ = ["HipResult", "analyze_hip", "extract_femur"]
