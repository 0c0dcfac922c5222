"""Fit of a calibration line HU = slope * density + intercept from measured rod HU.

Two models, chosen by the phantom definition's ``fit``:

* ``mindways-two-step`` (K2HPO4 solid rods with certified water-equivalent density):
  regress ``HU_rod - water_rod = sigma_ref * K2HPO4_rod + beta_ref`` across rods, then
  ``sigma_CT = sigma_ref - 0.2174`` and ``beta_CT = beta_ref + 999.6`` so that
  ``BMD = (HU - beta_CT) / sigma_CT`` in mg K2HPO4/cm3.
* ``linear`` (hydroxyapatite rods): ``HU_rod = a * HA_rod + b``; ``BMD = (HU - b) / a``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy

from boneqct.calibration.definitions import MATERIALS, PhantomDefinition
from boneqct.errors import CalibrationError
from boneqct.volume import Volume

#: K2HPO4-in-water convention (QCT PRO User Guide v5.0; Bonelab Ogo ogo/calib/mindways_calibration.py).
MINDWAYS_SLOPE_OFFSET_HU_PER_MG_CM3 = 0.2174
#: K2HPO4-in-water convention (QCT PRO User Guide v5.0; Bonelab Ogo ogo/calib/mindways_calibration.py).
MINDWAYS_INTERCEPT_OFFSET_HU = 999.6
#: Ogo's QC thresholds on R^2 of the rod regression (fail below, warn below).
R2_FAIL = 0.90
R2_WARN = 0.98
#: Material of a manual calibration whose material the user did not state.
MATERIAL_UNSTATED = "unstated"


@dataclass
class Calibration:
    """A HU -> mineral density line: ``BMD_mg_cm3 = (HU - intercept_hu) / slope_hu_per_mg_cm3``.

    Attributes:
        material: "K2HPO4" or "HA"; BMD is expressed in mg of this material per cm3.
        slope_hu_per_mg_cm3, intercept_hu: the line (sigma_CT, beta_CT for Mindways).
        r2: coefficient of determination of the rod regression (None for manual).
        rods: one dict per rod (name, density_mg_cm3, water_mg_cm3, measured_hu, sd_hu,
            n_voxels, residual_hu, residual_mg_cm3, center_ras_mm).
        slices_used: k indices of the slices the rods were measured in.
        per_slice: None, or {"k", "slope_hu_per_mg_cm3", "intercept_hu"} lists giving the
            line as a smooth function of the slice index (long scans).
        warnings: QC notes for the report.
        method: "phantom" (rods scanned with the patient, or on another day: asynchronous),
            "internal" (phantomless, from the patient's tissues) or "manual" (a line typed in).
        phantom: name of the phantom definition (None for manual).
        scan: provenance of the scan the calibration was measured on (scanner manufacturer,
            model, station, serial, kVp, kernel, slice thickness, series and study UIDs, date;
            ``boneqct.calibration.provenance.SCAN_KEYS``); None for a manual calibration.
        applied: how the calibration relates to the scan it is applied to (relation,
            interval in days, forced, warning), set by
            ``boneqct.calibration.provenance.check_calibration_applies``; None when unchecked.
        internal_fit: for an internal calibration, its effective-energy fit (``energy_kev``,
            ``gain``, ``beta_ref_hu``, the tissues) and uncertainty (``slope_sd_hu_per_mg_cm3``,
            ``intercept_sd_hu``, their covariance, ``residual_sd_hu``,
            ``degrees_of_freedom``); see ``boneqct.calibration.internal``. None otherwise.
    """

    material: str
    slope_hu_per_mg_cm3: float
    intercept_hu: float
    r2: float | None = None
    rods: list[dict] = field(default_factory=list)
    slices_used: list[int] = field(default_factory=list)
    per_slice: dict | None = None
    warnings: list[str] = field(default_factory=list)
    method: str = "phantom"
    phantom: str | None = None
    scan: dict | None = None
    applied: dict | None = None
    internal_fit: dict | None = None

    def coefficients_at(self, k_index) -> tuple[np.ndarray, np.ndarray]:
        """Slope (HU per mg/cm3) and intercept (HU) at slice indices ``k_index``.

        Without a per-slice calibration the global line is returned; with one, the smoothed
        per-slice values are interpolated in k (held constant beyond the measured slices).
        """
        k = np.asarray(k_index, dtype=float)
        if self.per_slice is None:
            return (np.full(k.shape, self.slope_hu_per_mg_cm3),
                    np.full(k.shape, self.intercept_hu))
        ks = np.asarray(self.per_slice["k"], dtype=float)
        slope = np.interp(k, ks, np.asarray(self.per_slice["slope_hu_per_mg_cm3"], float))
        intercept = np.interp(k, ks, np.asarray(self.per_slice["intercept_hu"], float))
        return slope, intercept

    def hu_to_bmd(self, array_hu, k_index=None) -> np.ndarray:
        """Convert HU to mineral density (mg/cm3 of ``material``), as float32.

        Args:
            array_hu: HU values of any shape.
            k_index: None for the global line; an int for one slice's line; or a sequence
                with one slice index per entry of the first axis of ``array_hu`` (e.g.
                ``range(nk)`` for a KJI volume).
        """
        hu = np.asarray(array_hu, dtype=np.float32)
        if k_index is None or self.per_slice is None:
            slope, intercept = self.slope_hu_per_mg_cm3, self.intercept_hu
        else:
            slope, intercept = self.coefficients_at(k_index)
            if np.ndim(k_index) == 1:
                shape = (-1,) + (1,) * (hu.ndim - 1)
                slope, intercept = slope.reshape(shape), intercept.reshape(shape)
        return ((hu - np.float32(intercept)) / np.float32(slope)).astype(np.float32)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> Calibration:
        """Inverse of :meth:`to_dict`."""
        return cls(**dict(d))


def manual_calibration(slope_hu_per_mg_cm3: float, intercept_hu: float,
                       material: str = "K2HPO4") -> Calibration:
    """A calibration from a known line (e.g. the scanner's or a previous exam's).

    Args:
        slope_hu_per_mg_cm3, intercept_hu: the line, HU = slope * BMD + intercept.
        material: "K2HPO4", "HA", or ``MATERIAL_UNSTATED`` when the user did not say which
            material the line refers to (then no category is derived from it).
    """
    if not np.isfinite(slope_hu_per_mg_cm3) or slope_hu_per_mg_cm3 <= 0:
        raise CalibrationError(
            f"The calibration slope must be a positive number of HU per mg/cm3; got "
            f"{slope_hu_per_mg_cm3}. Pass --slope with the value from your phantom report "
            "(typically 1 to 2 HU per mg/cm3).")
    if material not in (*MATERIALS, MATERIAL_UNSTATED):
        raise CalibrationError(f"Unknown calibration material '{material}'; use one of "
                               f"{', '.join(MATERIALS)}.")
    return Calibration(material=material, slope_hu_per_mg_cm3=float(slope_hu_per_mg_cm3),
                       intercept_hu=float(intercept_hu), method="manual")


def _as_definition_order(definition: PhantomDefinition, values, what: str) -> np.ndarray:
    """Values per rod in the definition's order, from a mapping by name or a sequence."""
    if values is None:
        return np.full(len(definition.rods), np.nan)
    if isinstance(values, Mapping):
        missing = [r.name for r in definition.rods if r.name not in values]
        if missing:
            raise CalibrationError(
                f"No {what} for rod(s) {', '.join(missing)} of phantom '{definition.name}'. "
                "Every rod of the definition must be measured; check the phantom is in the "
                "field of view, or pass --slope/--intercept for a manual calibration.")
        return np.array([float(values[r.name]) for r in definition.rods])
    arr = np.asarray(values, dtype=float)
    if arr.shape != (len(definition.rods),):
        raise CalibrationError(
            f"{len(arr)} {what} given for the {len(definition.rods)} rods of phantom "
            f"'{definition.name}'. Check the phantom is in the field of view and the slice "
            "range covers it, or pass --slope/--intercept for a manual calibration.")
    return arr


def fit_line(definition: PhantomDefinition, measured_hu) -> tuple[float, float, float, np.ndarray]:
    """Fit the definition's model to rod HU (definition order).

    Returns:
        (slope_hu_per_mg_cm3, intercept_hu, r2, residual_hu) where residual_hu is the measured
        minus the fitted HU of each rod.
    """
    hu = np.asarray(measured_hu, dtype=float)
    rho = np.array([r.density_mg_cm3 for r in definition.rods])
    if definition.fit == "mindways-two-step":
        water = np.array([r.water_mg_cm3 for r in definition.rods], dtype=float)
        reg = scipy.stats.linregress(rho, hu - water)
        residual_hu = hu - (water + reg.slope * rho + reg.intercept)
        slope = reg.slope - MINDWAYS_SLOPE_OFFSET_HU_PER_MG_CM3
        intercept = reg.intercept + MINDWAYS_INTERCEPT_OFFSET_HU
        return float(slope), float(intercept), float(reg.rvalue ** 2), residual_hu
    reg = scipy.stats.linregress(rho, hu)
    residual_hu = hu - (reg.slope * rho + reg.intercept)
    return float(reg.slope), float(reg.intercept), float(reg.rvalue ** 2), residual_hu


def _reference_slope(definition: PhantomDefinition, slope_hu_per_mg_cm3: float) -> float:
    """HU per mg/cm3 of one rod's own mineral (sigma_ref for Mindways, the slope otherwise)."""
    if definition.fit == "mindways-two-step":
        return slope_hu_per_mg_cm3 + MINDWAYS_SLOPE_OFFSET_HU_PER_MG_CM3
    return slope_hu_per_mg_cm3


def fit_calibration(definition: PhantomDefinition, measured_hu, sd_hu=None, n_voxels=None,
                    center_ras_mm=None, slices_used: Sequence[int] = ()) -> Calibration:
    """Fit a calibration to measured rod HU and apply Ogo's R^2 quality control.

    Args:
        definition: the phantom (certified densities, fit model).
        measured_hu: mean HU per rod, a mapping by rod name or a sequence in definition order.
        sd_hu, n_voxels, center_ras_mm: optional per-rod ROI statistics, same forms.
        slices_used: k indices the rods were measured in.

    Raises:
        CalibrationError: a rod is missing, the slope is not positive, or R^2 < 0.90.
    """
    hu = _as_definition_order(definition, measured_hu, "measured HU")
    if not np.all(np.isfinite(hu)):
        raise CalibrationError(
            f"A rod of phantom '{definition.name}' has no valid HU measurement. Check the "
            "phantom is in the field of view and pick the slice range that shows it, or pass "
            "--slope/--intercept for a manual calibration.")
    sd = _as_definition_order(definition, sd_hu, "SD")
    n = _as_definition_order(definition, n_voxels, "voxel counts")
    slope, intercept, r2, residual_hu = fit_line(definition, hu)
    if not slope > 0:
        raise CalibrationError(
            f"The rods of phantom '{definition.name}' give a non-positive calibration slope "
            f"({slope:.3f} HU per mg/cm3): the measured HU do not increase with density. Check "
            "that the right phantom definition is selected and that the rods were found in the "
            "slice range, or pass --slope/--intercept for a manual calibration.")
    residual_mg_cm3 = residual_hu / _reference_slope(definition, slope)
    warnings = []
    if r2 < R2_FAIL:
        raise CalibrationError(
            f"The calibration fit to the rods of phantom '{definition.name}' is poor "
            f"(R^2 = {r2:.3f}, below {R2_FAIL}; largest rod residual "
            f"{np.max(np.abs(residual_hu)):.1f} HU). Check that the whole phantom is in the "
            "field of view, that the slice range shows the rods without artefacts, and that the "
            "phantom definition matches your phantom's certificate; otherwise pass "
            "--slope/--intercept for a manual calibration.")
    if r2 < R2_WARN:
        warnings.append(
            f"Calibration R^2 = {r2:.3f} is below {R2_WARN}; check the rod residuals "
            "(artefacts, partial volume, or a certificate that does not match the phantom).")
    centers = [None] * len(definition.rods)
    if center_ras_mm is not None:
        centers = ([list(map(float, center_ras_mm[r.name])) for r in definition.rods]
                   if isinstance(center_ras_mm, Mapping)
                   else [list(map(float, c)) for c in center_ras_mm])
    rods = [
        {"name": r.name, "density_mg_cm3": r.density_mg_cm3, "water_mg_cm3": r.water_mg_cm3,
         "measured_hu": float(hu[i]),
         "sd_hu": None if np.isnan(sd[i]) else float(sd[i]),
         "n_voxels": None if np.isnan(n[i]) else int(n[i]),
         "residual_hu": float(residual_hu[i]), "residual_mg_cm3": float(residual_mg_cm3[i]),
         "center_ras_mm": centers[i]}
        for i, r in enumerate(definition.rods)
    ]
    return Calibration(material=definition.material, slope_hu_per_mg_cm3=slope,
                       intercept_hu=intercept, r2=r2, rods=rods,
                       slices_used=[int(k) for k in slices_used], warnings=warnings,
                       method="phantom", phantom=definition.name)


def convert_volume_to_bmd(volume: Volume, calibration: Calibration) -> Volume:
    """A BMD volume (mg/cm3 of the calibration's material, float32) on the HU volume's grid.

    With a per-slice calibration each slice k uses its own line.
    """
    nk = volume.array_kji.shape[0]
    k_index = np.arange(nk) if calibration.per_slice is not None else None
    bmd = volume.with_array(calibration.hu_to_bmd(volume.array_kji, k_index=k_index))
    bmd.metadata = {**volume.metadata, "units": f"mg {calibration.material}/cm3"}
    return bmd
