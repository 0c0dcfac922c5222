"""Internal (phantomless) calibration from the patient's own tissues: slope and intercept.

The effective-energy method of Michalski et al. 2020 (Med Eng Phys 78:55, as implemented in
Bonelab Ogo ``ogo/calib/internal_calibration.py``), written in the Mindways two-step model
(docs/domain.md section 1):

1. ROIs (>= 10 mm2, Michalski 2020) in air outside the body, subcutaneous fat and the muscle
   wall, placed automatically from the tissue segmentation (``boneqct.tissue``); aortic blood
   and cortical bone given as points (markups); any ROI can be given as a point. Each ROI's
   mean HU, SD, voxel count and centre are kept.
2. For each effective energy E (20-150 keV, 0.5 keV steps, then refined), regress the ROI
   means on the tissues' water-equivalent densities
   ``x(E) = 1000 * rho * (mu/rho)_tissue(E) / (mu/rho)_water(E)`` (ICRU-44 compositions and
   densities, NIST tables: ``boneqct.calibration.attenuation``): ``HU = gain * x + beta_ref``.
   The scan's effective energy is the E of the highest R^2 (Michalski 2020). Unlike Michalski
   and Ogo, who regress on mass attenuation and then split voxels into K2HPO4 and
   triglyceride, the regressor here is the linear attenuation relative to water, so that the
   line is the Mindways rod model and the result a K2HPO4-in-water calibration like the
   phantom's.
3. ``sigma_ref = gain * (mu/rho)_K2HPO4(E) / (mu/rho)_water(E)``; with the water displaced
   by the dissolved salt (QCT PRO User Guide v5.0), ``sigma_CT = gain * ((mu/rho)_K2HPO4 /
   (mu/rho)_water - 0.2174)`` and ``beta_CT = beta_ref + gain * 999.6`` (Mindways' step 2
   when gain = 1).

Uncertainty: each ROI mean is given ``u = sqrt(SD^2 / n + s^2)`` (standard error, voxels taken
as independent, plus the residual SD ``s`` of the fit when it has degrees of freedom, i.e. with
more than three tissues) and propagated through the whole fit (energy search included) by
numerical derivatives: the slope's and intercept's SD and covariance. With three tissues the
fit is exact and the uncertainty counts ROI noise only (a warning says so): add blood and
cortical bone points. QC: R^2, the gain (0.9-1.1), ROI sizes and SDs, residuals per ROI.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy
from scipy import ndimage, optimize

from boneqct.calibration.attenuation import (
    DENSITY_G_CM3,
    ENERGY_RANGE_KEV,
    TISSUES,
    water_equivalent_mg_cm3,
    water_relative,
)
from boneqct.calibration.fit import (
    MINDWAYS_INTERCEPT_OFFSET_HU,
    MINDWAYS_SLOPE_OFFSET_HU_PER_MG_CM3,
    Calibration,
)
from boneqct.calibration.provenance import scan_provenance
from boneqct.errors import CalibrationError
from boneqct.volume import Volume

#: Michalski 2020: ROIs of at least 10 mm2.
MIN_ROI_AREA_MM2 = 10.0
#: Effective-energy grid step (keV), as Michalski 2020 / Ogo (then refined between steps).
ENERGY_STEP_KEV = 0.5
#: Step (HU) of the numerical derivatives of the fit for its uncertainty.
DERIVATIVE_STEP_HU = 0.5
#: QC limits (placeholders, not verified): fit R^2, gain (HU per mg/cm3 water-equivalent),
#: ROI SD (HU).
R2_MIN = 0.995
GAIN_RANGE = (0.9, 1.1)
ROI_SD_MAX_HU = 40.0
ROI_RADIUS_MM = 5.0
AIR_MIN_DISTANCE_MM = 10.0
#: The muscle ROI: lean tissue within this depth inside the muscle wall's outer edge (mm).
WALL_DEPTH_MM = 8.0


def _point_roi(volume: Volume, point_ras_mm, radius_mm: float = ROI_RADIUS_MM) -> np.ndarray:
    """A disc of ``radius_mm`` in the axial slice nearest the point (KJI mask)."""
    ijk = volume.ras_to_ijk_points(point_ras_mm)[0]
    spacing = volume.spacing_mm
    mask = np.zeros(volume.array_kji.shape, bool)
    k = int(round(ijk[2]))
    if not 0 <= k < mask.shape[0]:
        raise CalibrationError("An internal-calibration ROI point lies outside the scan; move it "
                               "into the tissue it names.")
    j, i = np.ogrid[:mask.shape[1], :mask.shape[2]]
    mask[k] = ((i - ijk[0]) * spacing[0]) ** 2 + ((j - ijk[1]) * spacing[1]) ** 2 <= radius_mm**2
    return mask


def automatic_rois(volume: Volume, k_range: tuple[int, int] | None = None) -> dict:
    """KJI masks of air (10-30 mm outside the body), subcutaneous fat and the muscle wall
    (lean tissue within ``WALL_DEPTH_MM`` inside the subcutaneous fat, paraspinal muscles
    included) from the tissue classification (``classify_tissues``: no mineral fit), fat and
    muscle eroded by one pixel in-plane; ``k_range`` is half-open."""
    from boneqct.tissue.composition import classify_tissues
    from boneqct.tissue.options import TissueOptions

    nk = volume.array_kji.shape[0]
    k0, k1 = (0, nk) if k_range is None else (max(0, int(k_range[0])), min(nk, int(k_range[1])))
    if k1 <= k0:
        raise CalibrationError(f"The slice range {k_range} holds no slice of this {nk}-slice "
                               "scan; give slices that show the body.")
    provisional = Calibration("K2HPO4", 1.0, 0.0, method="provisional")  # thresholds only
    defaults = TissueOptions()
    masks = classify_tissues(volume, provisional, (k0, k1), defaults.cortical_threshold_mg_cm3,
                             defaults.skin_thickness_mm)["masks"]
    full = np.zeros(volume.array_kji.shape, bool)
    pixel = np.ones((1, 3, 3), bool)

    def place(mask):
        out = full.copy()
        out[k0:k0 + mask.shape[0]] = mask
        return out

    body = masks["body"]
    pixel_mm = volume.spacing_mm[:2].mean()
    near_air = ndimage.binary_dilation(body, pixel, iterations=int(3 * AIR_MIN_DISTANCE_MM / pixel_mm))
    far = ~ndimage.binary_dilation(body, pixel, iterations=int(AIR_MIN_DISTANCE_MM / pixel_mm))
    hu = volume.array_kji[k0:k0 + body.shape[0]]
    air = near_air & far & (hu < -900)
    fat = ndimage.binary_erosion((masks["fat"] >= 1.0) & ~masks["cavity"], pixel)
    wall = masks["cavity"] & ~ndimage.binary_erosion(
        masks["cavity"], pixel, iterations=max(1, int(WALL_DEPTH_MM / pixel_mm)))
    muscle = ndimage.binary_erosion((masks["muscle"] >= 1.0) & wall, pixel)
    return {"air": place(air), "fat": place(fat), "muscle": place(muscle)}


def _effective_energy_fit(x_by_energy, hu: np.ndarray, energy_kev: float) -> tuple:
    """(gain, beta_ref HU, R^2) of HU regressed on the water-equivalent densities at E."""
    fit = scipy.stats.linregress(x_by_energy(energy_kev), hu)
    return float(fit.slope), float(fit.intercept), float(fit.rvalue**2)


def fit_tissues(tissues: Sequence[str], hu: Sequence[float]) -> dict:
    """The effective-energy fit of ROI mean HU of reference ``tissues`` (Michalski 2020).

    Args:
        tissues: names from ``attenuation.TISSUES``, at least three with two distinct HU.
        hu: the ROIs' mean CT numbers (HU), in the order of ``tissues``.

    Returns:
        ``energy_kev``, ``gain`` (HU per mg/cm3 water-equivalent), ``beta_ref_hu``, ``r2``,
        ``slope_hu_per_mg_cm3`` and ``intercept_hu`` (K2HPO4 in water), ``residuals_hu``.
    """
    hu = np.asarray(hu, float)
    names = list(tissues)

    def x_by_energy(energy_kev):
        return np.array([water_equivalent_mg_cm3(t, energy_kev) for t in names])

    def misfit(energy_kev):
        return -_effective_energy_fit(x_by_energy, hu, energy_kev)[2]

    low, high = ENERGY_RANGE_KEV
    grid_kev = np.arange(low, high + ENERGY_STEP_KEV / 2, ENERGY_STEP_KEV)
    x_grid = x_by_energy(grid_kev)   # tissues x energies
    x_centred = x_grid - x_grid.mean(axis=0)
    hu_centred = hu - hu.mean()
    r2_grid = (hu_centred @ x_centred) ** 2 / (np.sum(x_centred**2, axis=0) * (hu_centred @ hu_centred))
    best = grid_kev[int(np.argmax(r2_grid))]
    refined = optimize.minimize_scalar(
        misfit, bounds=(max(low, best - ENERGY_STEP_KEV), min(high, best + ENERGY_STEP_KEV)),
        method="bounded", options={"xatol": 1e-4})
    energy_kev = float(refined.x) if refined.fun <= misfit(best) else float(best)
    gain, beta_ref, r2 = _effective_energy_fit(x_by_energy, hu, energy_kev)
    ratio = float(water_relative("K2HPO4", energy_kev))
    return {"energy_kev": energy_kev, "gain": gain, "beta_ref_hu": beta_ref, "r2": r2,
            "slope_hu_per_mg_cm3": gain * (ratio - MINDWAYS_SLOPE_OFFSET_HU_PER_MG_CM3),
            "intercept_hu": beta_ref + gain * MINDWAYS_INTERCEPT_OFFSET_HU,
            "residuals_hu": (hu - (gain * x_by_energy(energy_kev) + beta_ref)).tolist()}


def fit_uncertainty(tissues: Sequence[str], hu: Sequence[float], sd_hu: Sequence[float],
                    n_voxels: Sequence[int]) -> dict:
    """SDs (and covariance) of the fitted slope and intercept from the ROIs' uncertainty.

    Each ROI mean gets ``u = sqrt(sd^2 / n + s^2)``, ``s`` the fit's residual SD (0 with
    three tissues, no degrees of freedom), propagated by central differences of ``fit_tissues``.
    """
    hu = np.asarray(hu, float)
    fit = fit_tissues(tissues, hu)
    dof = len(hu) - 3
    residual_sd_hu = (float(np.sqrt(np.sum(np.square(fit["residuals_hu"])) / dof))
                      if dof > 0 else 0.0)
    u_hu = np.sqrt(np.square(sd_hu) / np.asarray(n_voxels, float) + residual_sd_hu**2)
    jacobian = np.empty((2, len(hu)))
    for i in range(len(hu)):
        step = np.zeros_like(hu)
        step[i] = DERIVATIVE_STEP_HU
        up, down = fit_tissues(tissues, hu + step), fit_tissues(tissues, hu - step)
        jacobian[:, i] = [(up[key] - down[key]) / (2 * DERIVATIVE_STEP_HU)
                          for key in ("slope_hu_per_mg_cm3", "intercept_hu")]
    covariance = jacobian @ np.diag(u_hu**2) @ jacobian.T
    return {"slope_sd_hu_per_mg_cm3": float(np.sqrt(covariance[0, 0])),
            "intercept_sd_hu": float(np.sqrt(covariance[1, 1])),
            "slope_intercept_covariance_hu2_per_mg_cm3": float(covariance[0, 1]),
            "residual_sd_hu": residual_sd_hu, "degrees_of_freedom": dof,
            "roi_uncertainty_hu": u_hu.tolist()}


def internal_calibration(volume: Volume, points_ras_mm: dict | None = None,
                         k_range: tuple[int, int] | None = None) -> Calibration:
    """Phantomless K2HPO4 calibration (slope and intercept) from the patient's tissues.

    Args:
        volume: axial CT in HU.
        points_ras_mm: tissue name (``attenuation.TISSUES``: "air", "fat", "muscle", "blood",
            "cortical_bone") -> RAS point (mm) of a 5 mm-radius ROI that replaces the
            automatic one or adds a tissue (e.g. from markups).
        k_range: slices searched for the automatic ROIs (default all).

    Raises:
        CalibrationError: an ROI is too small, or the tissue fit fails its QC.
    """
    points = dict(points_ras_mm or {})
    unknown = set(points) - set(TISSUES)
    if unknown:
        raise CalibrationError(f"Unknown internal-calibration tissue(s) {sorted(unknown)}; use "
                               f"{', '.join(TISSUES)}.")
    rois = automatic_rois(volume, k_range)
    rois.update({name: _point_roi(volume, p) for name, p in points.items()})
    pixel_mm2 = float(np.prod(volume.spacing_mm[:2]))
    entries, warnings = [], []
    for name, mask in rois.items():
        area_mm2 = mask.sum(axis=(1, 2)).max() * pixel_mm2
        if area_mm2 < MIN_ROI_AREA_MM2:
            raise CalibrationError(
                f"The {name} ROI of the internal calibration covers {area_mm2:.0f} mm2, below "
                f"the {MIN_ROI_AREA_MM2:g} mm2 needed. Place it by hand (a point inside the "
                f"{name}) or use a phantom calibration.")
        hu = volume.array_kji[mask].astype(float)
        sd = float(hu.std(ddof=1))
        if sd > ROI_SD_MAX_HU:
            warnings.append(f"{name} ROI SD {sd:.0f} HU exceeds {ROI_SD_MAX_HU:g} HU: check it "
                            "lies in homogeneous tissue.")
        entries.append({"name": name, "density_mg_cm3": 1000.0 * DENSITY_G_CM3[name],
                        "water_mg_cm3": None, "measured_hu": float(hu.mean()), "sd_hu": sd,
                        "n_voxels": int(mask.sum()),
                        "center_ras_mm": volume.ijk_to_ras_points(
                            np.argwhere(mask).mean(axis=0)[::-1])[0].tolist(),
                        "placed": "point" if name in points else "automatic"})
    names = [e["name"] for e in entries]
    hu = [e["measured_hu"] for e in entries]
    fit = fit_tissues(names, hu)
    uncertainty = fit_uncertainty(names, hu, [e["sd_hu"] for e in entries],
                                  [e["n_voxels"] for e in entries])
    for e, residual in zip(entries, fit["residuals_hu"], strict=True):
        e["water_equivalent_mg_cm3"] = float(water_equivalent_mg_cm3(e["name"], fit["energy_kev"]))
        e["residual_hu"] = residual
        e["residual_mg_cm3"] = residual / fit["gain"]
    if fit["r2"] < R2_MIN or not GAIN_RANGE[0] <= fit["gain"] <= GAIN_RANGE[1]:
        raise CalibrationError(
            f"The internal calibration's tissue fit fails its quality check (R^2 = "
            f"{fit['r2']:.4f}, gain {fit['gain']:.3f} HU per mg/cm3 water-equivalent at "
            f"{fit['energy_kev']:.1f} keV; need R^2 >= {R2_MIN} and a gain within {GAIN_RANGE})."
            " Check the ROIs (pass points inside air, subcutaneous fat, paraspinal muscle, the "
            "aorta and thick cortical bone) or use a phantom calibration.")
    if uncertainty["degrees_of_freedom"] < 1:
        warnings.append(
            f"The internal calibration fits {len(entries)} tissues ({', '.join(names)}) with "
            "three parameters: no residual is left to check it, and its uncertainty counts ROI "
            "noise only. Add aortic blood and cortical bone points.")
    warnings.append(
        f"Internal calibration: slope {fit['slope_hu_per_mg_cm3']:.4f} +/- "
        f"{uncertainty['slope_sd_hu_per_mg_cm3']:.4f} HU per mg/cm3, intercept "
        f"{fit['intercept_hu']:.1f} +/- {uncertainty['intercept_sd_hu']:.1f} HU (1 SD), "
        f"effective energy {fit['energy_kev']:.1f} keV. Tissue compositions are ICRU-44 "
        "reference values; a patient's tissues differ, which this SD does not include.")
    internal_fit = {key: fit[key] for key in ("energy_kev", "gain", "beta_ref_hu")}
    internal_fit.update({key: value for key, value in uncertainty.items()
                         if key != "roi_uncertainty_hu"})
    internal_fit["tissues"] = names
    internal_fit["method"] = ("effective-energy fit (Michalski 2020) of ICRU-44 tissues, "
                              "Mindways K2HPO4-in-water convention")
    for e, u in zip(entries, uncertainty["roi_uncertainty_hu"], strict=True):
        e["uncertainty_hu"] = u
    return Calibration(
        material="K2HPO4", slope_hu_per_mg_cm3=fit["slope_hu_per_mg_cm3"],
        intercept_hu=fit["intercept_hu"], r2=fit["r2"], rods=entries, warnings=warnings,
        method="internal", phantom=None, scan=scan_provenance(volume.metadata),
        internal_fit=internal_fit)
