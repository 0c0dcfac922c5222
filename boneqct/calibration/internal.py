"""Internal (phantomless) calibration from the patient's own tissues.

A simpler documented variant of Michalski et al. 2020 (Med Eng Phys) in the spirit of Lee et
al. 2017 (Bone 103:325), using the Mindways two-step model (domain.md section 1):

1. ROIs (>= 10 mm2, Michalski 2020) in air outside the body, subcutaneous fat and paraspinal
   muscle, placed automatically from the tissue segmentation (``boneqct.tissue``), and
   optionally aortic blood at a given point (markup); any ROI can be given as a point.
2. The Mindways rod model with no K2HPO4 gives a soft tissue of physical density rho (mg/cm3)
   ``HU = rho + beta_ref``; ``beta_ref`` is the mean of ``HU - rho`` over the soft tissues
   (fat, muscle, blood). Air, which lies off that line by the scanner's water offset, only
   enters the QC: the slope of ``HU`` vs ``rho`` over all ROIs must be 0.9-1.1.
3. ``sigma_ref = SIGMA_REF_120KVP_HU_PER_MG_CM3``, the K2HPO4 slope of a measured Mindways
   calibration at 120 kVp; then ``sigma_CT = sigma_ref - 0.2174`` and
   ``beta_CT = beta_ref + 999.6``.

Unlike Michalski's method, the mineral slope is not derived from the effective energy and
mass-attenuation tables; it is correct only at 120 kVp-like spectra (a warning says so at other
kVp). QC: R^2 of the tissue fit, tissue slope within 0.9-1.1, ROI sizes and SDs; each ROI's
residual from ``rho + beta_ref`` is reported.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, stats

from boneqct.calibration.fit import (
    MINDWAYS_INTERCEPT_OFFSET_HU,
    MINDWAYS_SLOPE_OFFSET_HU_PER_MG_CM3,
    Calibration,
)
from boneqct.calibration.provenance import scan_provenance
from boneqct.errors import CalibrationError
from boneqct.volume import Volume

#: Reference physical densities (mg/cm3): air at 20 C; adipose tissue and blood per ICRU Report
#: 44 (1989) (blood 1.06 g/cm3); muscle as in the QCT PRO Tissue Analysis Report (1.055).
TISSUE_DENSITY_MG_CM3 = {"air": 1.205, "fat": 923.0, "muscle": 1055.0, "blood": 1060.0}
#: sigma_ref of Ogo's measured Mindways Model 3 fixture at 120 kVp (domain.md section 1), HU per
#: mg/cm3 K2HPO4: least-squares fit of its five rods.
SIGMA_REF_120KVP_HU_PER_MG_CM3 = 1.4668
#: Michalski 2020: ROIs of at least 10 mm2.
MIN_ROI_AREA_MM2 = 10.0
#: QC limits (placeholders): tissue-fit R^2, tissue slope range (HU per mg/cm3), ROI SD (HU).
R2_MIN = 0.995
TISSUE_SLOPE_RANGE = (0.9, 1.1)
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
    included) from the tissue segmentation, fat and muscle eroded by one pixel in-plane."""
    from boneqct.tissue.composition import analyze_tissue

    provisional = Calibration("K2HPO4", 1.0, 0.0, method="provisional")  # thresholds only
    masks = analyze_tissue(volume, provisional, k_range)["masks_kji"]
    k0 = 0 if k_range is None else max(0, int(k_range[0]))
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


def internal_calibration(volume: Volume, points_ras_mm: dict | None = None,
                         k_range: tuple[int, int] | None = None) -> Calibration:
    """Phantomless K2HPO4 calibration from air, fat, muscle (and blood, given as a point).

    Args:
        volume: axial CT in HU.
        points_ras_mm: tissue name ("air", "fat", "muscle", "blood") -> RAS point (mm) of a
            5 mm-radius ROI that replaces the automatic one (e.g. from markups).
        k_range: slices searched for the automatic ROIs (default all).

    Raises:
        CalibrationError: an ROI is too small, or the tissue fit fails its QC.
    """
    points = dict(points_ras_mm or {})
    unknown = set(points) - set(TISSUE_DENSITY_MG_CM3)
    if unknown:
        raise CalibrationError(f"Unknown internal-calibration tissue(s) {sorted(unknown)}; use "
                               f"{', '.join(TISSUE_DENSITY_MG_CM3)}.")
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
        entries.append({"name": name, "density_mg_cm3": TISSUE_DENSITY_MG_CM3[name],
                        "water_mg_cm3": None, "measured_hu": float(np.median(hu)), "sd_hu": sd,
                        "n_voxels": int(mask.sum()),
                        "center_ras_mm": volume.ijk_to_ras_points(
                            np.argwhere(mask).mean(axis=0)[::-1])[0].tolist(),
                        "placed": "point" if name in points else "automatic"})
    rho = np.array([e["density_mg_cm3"] for e in entries])
    hu = np.array([e["measured_hu"] for e in entries])
    fit = stats.linregress(rho, hu)
    r2 = float(fit.rvalue**2)
    soft = np.array([e["name"] != "air" for e in entries])
    beta_ref = float(np.mean(hu[soft] - rho[soft]))
    for e, residual in zip(entries, hu - (rho + beta_ref), strict=True):
        e["residual_hu"] = float(residual)
        e["residual_mg_cm3"] = float(residual)
    if r2 < R2_MIN or not TISSUE_SLOPE_RANGE[0] <= fit.slope <= TISSUE_SLOPE_RANGE[1]:
        raise CalibrationError(
            f"The internal calibration's tissue fit fails its quality check (R^2 = {r2:.4f}, "
            f"slope {fit.slope:.3f} HU per mg/cm3; need R^2 >= {R2_MIN} and a slope within "
            f"{TISSUE_SLOPE_RANGE}). Check the ROIs (pass points inside air, subcutaneous fat, "
            "paraspinal muscle and the aorta) or use a phantom calibration.")
    kvp = volume.metadata.get("kvp")
    if kvp is None or abs(float(kvp) - 120.0) > 5.0:
        warnings.append(f"Internal calibration at {kvp} kVp: its K2HPO4 slope comes from a "
                        "120 kVp reference and is unverified at other tube voltages.")
    return Calibration(
        material="K2HPO4",
        slope_hu_per_mg_cm3=SIGMA_REF_120KVP_HU_PER_MG_CM3 - MINDWAYS_SLOPE_OFFSET_HU_PER_MG_CM3,
        intercept_hu=beta_ref + MINDWAYS_INTERCEPT_OFFSET_HU, r2=r2, rods=entries,
        warnings=warnings, method="internal", phantom=None,
        scan=scan_provenance(volume.metadata))
