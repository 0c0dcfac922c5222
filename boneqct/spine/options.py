"""Options of the spine QCT measurement: the one place for their defaults, units, ranges and
help (``boneqct.options``); the command line, the Slicer module and ``analyze_spine`` use it."""

from __future__ import annotations

from dataclasses import dataclass

from boneqct.errors import OptionsError
from boneqct.options import check_options, option
from boneqct.spine.interpret import CEMENT_THRESHOLD_MG_CM3
from boneqct.spine.levels import LABEL_SCHEMES, parse_level_list

#: ROI shapes: an elliptic cylinder in the body's mid-part (QCT PRO style) or the whole
#: trabecular interior eroded by the margin.
ROI_KINDS = ("elliptic-cylinder", "trabecular-3d")
#: ISCD 3D QCT: the diagnostic value is the mean of L1 and L2 (docs/domain.md section 3).
LEVELS_USED = ("L1", "L2")
#: ROI slab (mm): the seed's QCT PRO screen uses a 9 mm deep ROI (docs/domain.md section 3).
ROI_THICKNESS_MM = 9.0
#: Distance (mm) kept from the inner cortical boundary (a project default).
MARGIN_MM = 2.0


def cement_threshold_option(what: str):
    """The cement-augmentation threshold option (mg/cm3) of ``what`` ("BMD", "screw BMD"),
    shared by the spine and the screw measurements."""
    return option(CEMENT_THRESHOLD_MG_CM3, f"{what} below which cement augmentation is suggested",
                  unit="mg/cm3", low=0.0, high=300.0, flag="--cement-threshold", metavar="MG_CM3")


def label_scheme_option():
    """The vertebra label numbering option of a --labels file."""
    return option("totalsegmentator", "numbering of a --labels file",
                  choices=tuple(sorted(LABEL_SCHEMES)))


@dataclass(frozen=True)
class SpineOptions:
    """How the spine is measured (see each field's help)."""

    levels_used: tuple[str, ...] = option(
        LEVELS_USED, "levels averaged for the diagnostic value: names or ranges (L1,L2; L1-L3)",
        parse=parse_level_list, flag="--levels")
    exclude: tuple[str, ...] = option(
        (), "levels to leave out (e.g. fractured): names or ranges (L3; T12-L1)",
        parse=parse_level_list)
    roi_kind: str = option("elliptic-cylinder", "ROI shape", choices=ROI_KINDS, flag="--roi")
    roi_thickness_mm: float = option(ROI_THICKNESS_MM, "ROI slab thickness", unit="mm",
                                     low=3.0, high=20.0)
    margin_mm: float = option(MARGIN_MM, "margin from the cortex", unit="mm", low=0.0, high=10.0)
    cement_threshold_mg_cm3: float = cement_threshold_option("BMD")
    label_scheme: str = label_scheme_option()

    def __post_init__(self):
        check_options(self)
        if not self.levels_used:
            raise OptionsError("No level is given for the diagnostic value; give the levels "
                               "averaged for the diagnosis, e.g. --levels L1,L2.")
