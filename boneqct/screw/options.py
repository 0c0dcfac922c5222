"""Options of the screw-trajectory measurement: the one place for their defaults, units,
ranges and help (``boneqct.options``); the command line, the Slicer module and
``analyze_screws`` use it."""

from __future__ import annotations

from dataclasses import dataclass

from boneqct.options import check_options, option
from boneqct.spine.measure import CORTICAL_THRESHOLD_MG_CM3
from boneqct.spine.options import cement_threshold_option, label_scheme_option

#: Default screw diameter (mm): a common lumbar pedicle screw (a project default; the planned
#: screw's own diameter should be given).
DIAMETER_MM = 6.5
#: Shell around the screw (mm): the bone its thread cuts into and bears on; the issue asks
#: for 1-2 mm (a project choice).
SHELL_MM = 1.5
#: Length (mm) of the segments along the path: a pedicle is about 10-15 mm long, so 10 mm
#: segments separate pedicle from body (a project choice).
SEGMENT_MM = 10.0


@dataclass(frozen=True)
class ScrewOptions:
    """How each planned screw is measured (see each field's help)."""

    diameter_mm: float = option(DIAMETER_MM, "screw (thread) diameter", unit="mm",
                                low=2.0, high=12.0)
    shell_mm: float = option(SHELL_MM, "thickness of the shell around the screw", unit="mm",
                             low=1.0, high=2.0)
    segment_mm: float = option(SEGMENT_MM, "length of the segments along the path",
                               unit="mm", low=2.0, high=50.0)
    cortical_threshold_mg_cm3: float = option(
        CORTICAL_THRESHOLD_MG_CM3, "density above which a shell voxel counts as cortical contact",
        unit="mg/cm3", low=100.0, high=1500.0, flag="--cortical-threshold", metavar="MG_CM3")
    cement_threshold_mg_cm3: float = cement_threshold_option("screw BMD")
    label_scheme: str = label_scheme_option()

    def __post_init__(self):
        check_options(self)
