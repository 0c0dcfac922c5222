"""The calibration entry point: ``calibrate(volume, options)``, as the CLI and the Slicer
module call it."""

from __future__ import annotations

from boneqct.calibration.fit import Calibration
from boneqct.calibration.options import CalibrationOptions, slice_stop_range
from boneqct.calibration.phantom_calibration import calibrate_with_phantom
from boneqct.volume import Volume


def calibrate(volume: Volume, options: CalibrationOptions | None = None) -> Calibration:
    """Calibrate ``volume`` (axial CT, HU) with the phantom scanned under the patient.

    ``options.slices`` (first, last), both included, limits the slices searched;
    ``options.per_slice`` adds the per-slice line. Raises CalibrationError (see
    ``calibrate_with_phantom``).
    """
    options = options or CalibrationOptions()
    return calibrate_with_phantom(volume, options.phantom,
                                  slice_range=slice_stop_range(options.slices),
                                  per_slice=options.per_slice)
