"""Options of the hip CTXA measurement: the one place for their defaults, units, ranges and
help (``boneqct.options``); the command line, the Slicer module and ``analyze_hip`` use it.

The side, the seed or label map, the reference population and the patient's age and sex are
inputs of ``analyze_hip``, not options."""

from __future__ import annotations

from dataclasses import dataclass

from boneqct.options import check_options, option

#: Label values of femur_left / femur_right per label scheme (TotalSegmentator v2 "total"
#: task class map; the BoneQCT femur phantom's label map).
FEMUR_LABELS = {"totalsegmentator": {"left": 75, "right": 76},
                "phantom": {"left": 1, "right": 2}}
#: Projection pixel (mm); DXA hip scans have pixels of about 0.5-1 mm.
DEFAULT_PIXEL_MM = 0.5
#: Bone threshold on the BMD map (mg/cm3): above soft tissue (~50) and marrow, below cortex.
DEFAULT_BONE_THRESHOLD_MG_CM3 = 200.0
#: Neck box width along the neck axis (mm); Hologic default 1.5 cm.
NECK_BOX_WIDTH_MM = 15.0
#: Depth below the head centre (mm) taken for the lesser trochanter's distal end before it is
#: found, only to decide how much shaft a short scan needs for the shaft axis
#: (``boneqct.hip.frame.shaft_fit_range_mm``; adult femur, not verified). The region's border
#: is placed from the lesser trochanter found on the projection.
DISTAL_BORDER_BELOW_HEAD_MM = 85.0
#: Total hip's distal border below the lesser trochanter's distal end (mm): Hologic's 10 pixels
#: (ISCD DXA atlas); a Hologic hip pixel taken as 1 mm (not verified).
DISTAL_BORDER_BELOW_LESSER_TROCHANTER_MM = 10.0


@dataclass(frozen=True)
class HipOptions:
    """How the hip is measured (see each field's help)."""

    label_scheme: str = option("totalsegmentator", "numbering of a --labels file",
                               choices=tuple(FEMUR_LABELS))
    bone_threshold_mg_cm3: float = option(
        DEFAULT_BONE_THRESHOLD_MG_CM3, "BMD threshold of the femur extraction; raise it when a "
        "narrow joint space joins the femur to the pelvis", unit="mg/cm3", low=50.0, high=1000.0,
        metavar="MG_CM3")
    pixel_mm: float = option(DEFAULT_PIXEL_MM, "projection pixel; finer grids outgrow memory "
                             "and time", unit="mm", low=0.2, high=2.0, metavar="MM")
    neck_box_width_mm: float = option(NECK_BOX_WIDTH_MM, "neck box width along the neck axis",
                                      unit="mm", low=5.0, high=30.0, metavar="MM")
    neck_center_s_mm: float = option(
        0.0, "neck box centre's distance from the head centre along the neck axis; 0: placed "
        "automatically at the narrowest part of the neck", unit="mm", low=0.0, high=120.0,
        metavar="MM")
    distal_border_below_head_mm: float = option(
        DISTAL_BORDER_BELOW_HEAD_MM, "expected depth of the lesser trochanter below the head "
        "centre, only for the shaft a short scan needs", unit="mm", low=30.0, high=150.0,
        metavar="MM")
    distal_border_below_lesser_trochanter_mm: float = option(
        DISTAL_BORDER_BELOW_LESSER_TROCHANTER_MM, "total hip's distal border below the lesser "
        "trochanter", unit="mm", low=0.0, high=30.0, metavar="MM")

    def __post_init__(self):
        check_options(self)

    @property
    def automatic_neck_center(self) -> bool:
        """Whether the neck box is placed automatically (``neck_center_s_mm`` 0)."""
        return self.neck_center_s_mm == 0.0
