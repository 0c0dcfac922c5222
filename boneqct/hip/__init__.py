"""Hip CTXA: DXA-equivalent areal BMD of the proximal femur from calibrated CT.

After Cann et al. 2014 (PLoS One 9:e91904): the chosen femur is extracted from the calibrated
CT (``extraction``), its anatomical frame is fitted (``frame``: head sphere, neck and shaft
axes), it is rotated to the DXA position and its mineral is projected antero-posteriorly into
an areal density image in g/cm2 that conserves mass (``projection``); Hologic-style regions
(neck, trochanter, intertrochanter, total hip) are placed on it (``rois``) and scored against
DXA reference data (``interpret``). ``analyze_hip`` (``pipeline``) runs it all;
``write_hip_outputs`` (``outputs``) writes hip.json, hip.csv, the projection and the report.
"""

from boneqct.errors import (
    FemurNotFoundError,
    FusedFemurError,
    HipError,
    ImplantError,
    NoCalibrationError,
    TruncatedFemurError,
)

__all__ = ["FemurNotFoundError", "FusedFemurError", "HipError", "ImplantError", "NoCalibrationError",
           "TruncatedFemurError"]
