"""HU -> mineral density calibration: phantom definitions, rod detection, fit, conversion."""

from boneqct.calibration.definitions import (
    PhantomDefinition,
    Rod,
    bundled_phantom_names,
    load_phantom_definition,
)
from boneqct.calibration.fit import (
    Calibration,
    convert_volume_to_bmd,
    fit_calibration,
    manual_calibration,
)
from boneqct.calibration.phantom_calibration import calibrate_with_phantom, per_slice_calibration
from boneqct.calibration.rod_detection import DetectedRod, RodDetection, detect_rods

__all__ = [
    "Calibration",
    "DetectedRod",
    "RodDetection",
    "calibrate_with_phantom",
    "detect_rods",
    "per_slice_calibration",
    "PhantomDefinition",
    "Rod",
    "bundled_phantom_names",
    "convert_volume_to_bmd",
    "fit_calibration",
    "load_phantom_definition",
    "manual_calibration",
]
