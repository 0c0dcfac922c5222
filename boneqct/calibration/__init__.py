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

__all__ = [
    "Calibration",
    "PhantomDefinition",
    "Rod",
    "bundled_phantom_names",
    "convert_volume_to_bmd",
    "fit_calibration",
    "load_phantom_definition",
    "manual_calibration",
]
