"""Options of the tissue composition: the one place for their defaults, units, ranges and help
(``boneqct.options``); ``boneqct tissue``, the Slicer module and ``analyze_tissue`` use it."""

from __future__ import annotations

from dataclasses import dataclass

from boneqct.calibration.options import check_slices, parse_slices
from boneqct.options import check_options, option

#: Placeholders, configurable (not verified): cortical threshold (mg/cm3), skin thickness (mm),
#: the muscle band inside the wall for the L3 muscle area (mm).
CORTICAL_THRESHOLD_MG_CM3 = 350.0
SKIN_THICKNESS_MM = 2.0
MUSCLE_BAND_MM = 15.0


@dataclass(frozen=True)
class TissueOptions:
    """How the tissue composition is measured (see each field's help)."""

    slices: tuple[int, ...] = option(
        (), "slice index range k, FIRST:LAST (both included) or one index; default all",
        parse=parse_slices, metavar="FIRST:LAST")
    cortical_threshold_mg_cm3: float = option(
        CORTICAL_THRESHOLD_MG_CM3, "density from which bone counts as cortex", unit="mg/cm3",
        low=150.0, high=1200.0, flag="--cortical-threshold", metavar="MG_CM3")
    skin_thickness_mm: float = option(SKIN_THICKNESS_MM, "thickness of the skin layer under "
                                      "the body outline", unit="mm", low=0.5, high=5.0,
                                      metavar="MM")
    muscle_band_mm: float = option(
        MUSCLE_BAND_MM, "depth of the skeletal muscle band inside the muscle wall (L3 area)",
        unit="mm", low=5.0, high=50.0, metavar="MM")

    def __post_init__(self):
        check_options(self)
        check_slices(self.slices)
