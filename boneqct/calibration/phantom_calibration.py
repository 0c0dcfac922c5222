"""Simultaneous-phantom calibration: detect the rods, fit the line, optionally per slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from boneqct.calibration.definitions import PhantomDefinition, load_phantom_definition
from boneqct.calibration.fit import Calibration, fit_calibration, fit_line
from boneqct.calibration.provenance import scan_provenance
from boneqct.calibration.rod_detection import RodDetection, detect_rods
from boneqct.volume import Volume

#: Highest degree of the polynomial in k that smooths per-slice slope and intercept.
PER_SLICE_MAX_DEGREE = 2


def calibrate_with_phantom(volume: Volume, phantom: str | Path | PhantomDefinition,
                           slice_range: tuple[int, int] | None = None,
                           per_slice: bool = False) -> Calibration:
    """Calibrate a HU volume with the simultaneous phantom scanned under the patient.

    Args:
        volume: axial CT volume in HU.
        phantom: bundled phantom name, certificate JSON path, or a loaded definition.
        slice_range: (first_k, stop_k) half-open slice range to use; default all slices
            in which the phantom is found.
        per_slice: also fit slope and intercept per slice, smoothed by a polynomial of
            degree <= 2 in k (for long scans whose calibration drifts along z).

    Raises:
        CalibrationError: phantom or rods not found, or a poor fit (see ``fit_calibration``).
    """
    definition = (phantom if isinstance(phantom, PhantomDefinition)
                  else load_phantom_definition(phantom))
    detection = detect_rods(volume, definition, slice_range=slice_range)
    cal = fit_calibration(
        definition,
        {r.name: r.mean_hu for r in detection.rods},
        sd_hu={r.name: r.sd_hu for r in detection.rods},
        n_voxels={r.name: r.n_voxels for r in detection.rods},
        center_ras_mm={r.name: r.center_ras_mm for r in detection.rods},
        slices_used=detection.slices_k,
    )
    cal.warnings = detection.warnings + cal.warnings
    cal.scan = scan_provenance(volume.metadata)
    if per_slice:
        cal.per_slice = per_slice_calibration(definition, detection)
    return cal


def per_slice_calibration(definition: PhantomDefinition, detection: RodDetection) -> dict:
    """Slope (HU per mg/cm3) and intercept (HU) per slice, smoothed by a polynomial in k.

    Each slice's rod means are fitted with the definition's model; the per-slice values are
    then replaced by a least-squares polynomial in k of degree min(2, n_slices - 1).
    """
    ks = np.asarray(detection.slices_k, dtype=float)
    hu = np.stack([r.mean_hu_per_slice for r in detection.rods], axis=1)   # (slices, rods)
    fits = np.array([fit_line(definition, row)[:2] for row in hu])
    degree = min(PER_SLICE_MAX_DEGREE, len(ks) - 1)
    smooth = [np.polynomial.Polynomial.fit(ks, fits[:, c], degree)(ks) if degree > 0
              else fits[:, c] for c in range(2)]
    return {"k": [int(k) for k in ks],
            "slope_hu_per_mg_cm3": [float(v) for v in smooth[0]],
            "intercept_hu": [float(v) for v in smooth[1]]}
