"""Statistics of one vertebral ROI: BMD (or HU) mean, SD, median, size, and quality checks."""

from __future__ import annotations

import numpy as np

from boneqct.spine.types import VertebralBody, VertebralROI
from boneqct.volume import Volume

#: A voxel above this BMD (mg/cm3) is cortical-like: trabecular bone rarely exceeds ~300 mg/cm3
#: (ESP's densest insert is 200; QA expects cortical structures at 800 mg HA/cm3, Kalender 1995).
CORTICAL_THRESHOLD_MG_CM3 = 400.0
#: The same check without a calibration, in HU.
CORTICAL_THRESHOLD_HU = 450.0
#: QC limits: at most this fraction of cortical-like voxels, at least this share inside the
#: trabecular body, and a region of at least this volume (the rule, in mm3 whatever the voxel
#: size: a 3 mm voxel averages as much bone as 40 voxels of 0.9 mm) holding at least this
#: many voxels (enough for a meaningful SD).
MAX_CORTICAL_FRACTION = 0.02
MIN_INSIDE_FRACTION = 0.99
MIN_ROI_VOLUME_MM3 = 500.0
MIN_VOXELS = 20
#: Lowest plausible trabecular BMD (mg/cm3): fatty marrow makes single-energy QCT read a few
#: tens of mg/cm3 low, so slightly negative values occur in severe osteoporosis; far below, the
#: calibration does not fit the scan (not verified against a primary source).
MIN_PLAUSIBLE_BMD_MG_CM3 = -30.0
#: Noise the mean can bear: an ROI SD above MAX_ROI_SD_HU is noise, streaks or metal rather
#: than trabecular texture (real trabecular ROIs in Testing/Data read 35-40 HU SD at 0.7 x 0.7
#: x 2.5 mm, 19-21 HU at 3 mm), and the standard error of the ROI mean, SD / sqrt(voxels) -
#: a lower bound, as CT noise is correlated - must stay within MAX_MEAN_SE_HU, about 4 mg/cm3
#: of K2HPO4, a tenth of the width of an ACR category. Project choices, not literature values.
MAX_ROI_SD_HU = 150.0
MAX_MEAN_SE_HU = 5.0


def roi_statistics(volume_hu: Volume, roi: VertebralROI, body: VertebralBody,
                   calibration=None) -> dict:
    """Measure one ROI.

    Args:
        volume_hu: the CT in HU.
        roi: the ROI (mask on the CT grid).
        body: the delineated body, for the inside-body check.
        calibration: a ``boneqct.calibration.Calibration`` or None (HU only).

    Returns:
        dict with ``bmd_mg_cm3``, ``sd_mg_cm3``, ``median_mg_cm3`` (None when uncalibrated),
        ``mean_hu``, ``sd_hu``, ``median_hu``, ``n_voxels``, ``roi_volume_mm3`` and ``qc``.
    """
    k, j, i = _roi_indices_kji(roi)
    n_voxels = int(k.size)
    voxel_volume_mm3 = float(abs(np.linalg.det(volume_hu.ijk_to_ras[:3, :3])))
    hu = volume_hu.array_kji[k, j, i].astype(np.float64)
    stats = {
        "n_voxels": n_voxels,
        "roi_volume_mm3": n_voxels * voxel_volume_mm3,
        "mean_hu": _stat(np.mean, hu),
        "sd_hu": _stat(_sd, hu),
        "median_hu": _stat(np.median, hu),
        "bmd_mg_cm3": None, "sd_mg_cm3": None, "median_mg_cm3": None,
    }
    if calibration is not None:
        bmd = calibration.hu_to_bmd(hu, k_index=k).astype(np.float64)
        stats.update(bmd_mg_cm3=_stat(np.mean, bmd), sd_mg_cm3=_stat(_sd, bmd),
                     median_mg_cm3=_stat(np.median, bmd))
        cortical_fraction = float(np.mean(bmd > CORTICAL_THRESHOLD_MG_CM3)) if n_voxels else 1.0
    else:
        cortical_fraction = float(np.mean(hu > CORTICAL_THRESHOLD_HU)) if n_voxels else 1.0
    inside_fraction = float(_inside(body, k, j, i).mean()) if n_voxels else 0.0
    qc = {
        "cortical_fraction": cortical_fraction,
        "cortical_threshold": (f"{CORTICAL_THRESHOLD_MG_CM3:g} mg/cm3" if calibration is not None
                               else f"{CORTICAL_THRESHOLD_HU:g} HU"),
        "inside_body_fraction": inside_fraction,
        "inside_body": inside_fraction >= MIN_INSIDE_FRACTION,
        "enough_voxels": n_voxels >= MIN_VOXELS and stats["roi_volume_mm3"] >= MIN_ROI_VOLUME_MM3,
    }
    qc["low_cortical_fraction"] = cortical_fraction <= MAX_CORTICAL_FRACTION
    qc["plausible_bmd"] = (stats["bmd_mg_cm3"] is None
                           or stats["bmd_mg_cm3"] >= MIN_PLAUSIBLE_BMD_MG_CM3)
    qc["mean_standard_error_hu"] = (stats["sd_hu"] / np.sqrt(n_voxels)
                                    if stats["sd_hu"] is not None else None)
    qc["acceptable_noise"] = (stats["sd_hu"] is not None and stats["sd_hu"] <= MAX_ROI_SD_HU
                              and qc["mean_standard_error_hu"] <= MAX_MEAN_SE_HU)
    qc["passed"] = bool(qc["inside_body"] and qc["enough_voxels"] and qc["low_cortical_fraction"]
                        and qc["plausible_bmd"] and qc["acceptable_noise"])
    stats["qc"] = qc
    return stats


def _roi_indices_kji(roi: VertebralROI) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel indices (k, j, i) of the ROI, searched only inside its box when it has one."""
    box = roi.box_kji or tuple(slice(0, n) for n in roi.mask_kji.shape)
    local = np.nonzero(roi.mask_kji[box])
    return tuple(index + axis.start for index, axis in zip(local, box, strict=True))


def _inside(body: VertebralBody, k: np.ndarray, j: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Whether voxels (k, j, i) of the CT grid lie in the body's trabecular interior."""
    local = [index - axis.start for index, axis in zip((k, j, i), body.box_kji, strict=True)]
    shape = body.trabecular_in_box.shape
    within = np.all([(x >= 0) & (x < n) for x, n in zip(local, shape, strict=True)], axis=0)
    inside = np.zeros(k.shape, bool)
    inside[within] = body.trabecular_in_box[tuple(x[within] for x in local)]
    return inside


def _sd(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if values.size > 1 else 0.0


def _stat(function, values: np.ndarray) -> float | None:
    return float(function(values)) if values.size else None
