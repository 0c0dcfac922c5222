"""Density in one screw's regions: the cylinder, the thread shell, the segments along the
path, the shell's cortical contact, and the quality checks that decide whether a number is
given at all."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from boneqct.hip.extraction import METAL_THRESHOLD_HU
from boneqct.screw.trajectory import ScrewSampling
from boneqct.spine.measure import CORTICAL_THRESHOLD_HU, MIN_VOXELS
from boneqct.tissue.composition import AIR_THRESHOLD_HU
from boneqct.volume import Volume

#: Largest share of the cylinder and shell's volume allowed outside the image (rounding only).
MAX_OUTSIDE_FRACTION = 1e-3
#: Largest share of the cylinder's volume below ``AIR_THRESHOLD_HU`` (air or gas): beyond it
#: the path leaves the body or crosses bowel or lung (a project choice).
MAX_AIR_FRACTION = 0.02
#: Metal anywhere in the cylinder or shell (above ``METAL_THRESHOLD_HU``, the hip module's
#: implant threshold) streaks the CT numbers around it: no number is given.
MAX_METAL_VOLUME_MM3 = 0.0
#: In-body share of a segment's volume (by the vertebral body's delineation) from which the
#: segment is counted as in the body.
BODY_PART_FRACTION = 0.5


def weighted_mean_sd(values: np.ndarray, weights: np.ndarray) -> tuple[float | None, float | None]:
    """Mean and SD of ``values`` with partial-volume ``weights`` (None when the weights sum
    to zero)."""
    total = float(weights.sum())
    if total <= 0:
        return None, None
    mean = float(np.dot(weights, values) / total)
    return mean, float(np.sqrt(np.dot(weights, (values - mean) ** 2) / total))


def screw_quality(volume_hu: Volume, sampling: ScrewSampling) -> tuple[dict, str | None]:
    """The quality checks of one screw and the reason no number is given (None: passed)."""
    k, j, i = sampling.kji.T
    hu = volume_hu.array_kji[k, j, i].astype(np.float64)
    cylinder_voxels = float(sampling.cylinder_weight.sum())
    touched = (sampling.cylinder_weight + sampling.shell_weight) > 0
    metal_mm3 = float(np.count_nonzero(touched & (hu > METAL_THRESHOLD_HU))
                      * sampling.voxel_volume_mm3)
    air_fraction = (float(np.dot(sampling.cylinder_weight, hu < AIR_THRESHOLD_HU)
                          / cylinder_voxels) if cylinder_voxels else 0.0)
    qc = {
        "outside_image_fraction": sampling.outside_fraction,
        "inside_image": sampling.outside_fraction <= MAX_OUTSIDE_FRACTION,
        "cylinder_voxels": cylinder_voxels,
        "enough_voxels": cylinder_voxels >= MIN_VOXELS,
        "metal_volume_mm3": metal_mm3,
        "no_metal": metal_mm3 <= MAX_METAL_VOLUME_MM3,
        "air_fraction": air_fraction,
        "no_air": air_fraction <= MAX_AIR_FRACTION,
    }
    qc["passed"] = bool(qc["inside_image"] and qc["enough_voxels"] and qc["no_metal"]
                        and qc["no_air"])
    reasons = []
    if not qc["inside_image"]:
        reasons.append(f"{100 * sampling.outside_fraction:.0f}% of the screw and its shell lie "
                       "outside the image: move the line inside the scan or shorten it")
    if not qc["enough_voxels"]:
        reasons.append(f"the cylinder holds {cylinder_voxels:.1f} voxels, fewer than "
                       f"{MIN_VOXELS}: the screw is too thin or short for this CT's voxels")
    if not qc["no_metal"]:
        reasons.append(f"the path passes through metal ({metal_mm3:.0f} mm3 above "
                       f"{METAL_THRESHOLD_HU:g} HU), whose streaks falsify the CT numbers")
    if not qc["no_air"]:
        reasons.append(f"{100 * air_fraction:.0f}% of the cylinder is air (below "
                       f"{AIR_THRESHOLD_HU:g} HU): the path leaves the bone")
    return qc, "; ".join(reasons) or None


def screw_density(volume_hu: Volume, sampling: ScrewSampling, calibration,
                  cortical_threshold_mg_cm3: float, body_mask_kji: np.ndarray | None = None
                  ) -> dict:
    """Density of one screw's regions (BMD in mg/cm3 of the calibration's material; None
    without a calibration, whose HU are given instead).

    Returns a dict with ``bmd_mg_cm3``/``mean_hu``/``sd_mg_cm3`` (cylinder),
    ``shell_bmd_mg_cm3``/``shell_mean_hu``, ``cortical_contact_fraction`` (share of the
    shell's sub-samples whose interpolated value is above the cortical threshold:
    ``cortical_threshold_mg_cm3``, or ``CORTICAL_THRESHOLD_HU`` without a calibration), ``segments`` (one dict per segment,
    each with the share of its cylinder inside the vertebral body and its ``part`` when
    ``body_mask_kji`` is given), ``min_segment_bmd_mg_cm3``/``min_segment_hu``,
    ``cylinder_volume_mm3``, ``shell_volume_mm3`` and ``in_body_fraction``.
    """
    k, j, i = sampling.kji.T
    hu = volume_hu.array_kji[k, j, i].astype(np.float64)
    bmd = None if calibration is None else calibration.hu_to_bmd(hu, k_index=k).astype(np.float64)
    values = hu if bmd is None else bmd
    threshold = CORTICAL_THRESHOLD_HU if bmd is None else cortical_threshold_mg_cm3
    in_body = None if body_mask_kji is None else body_mask_kji[k, j, i].astype(np.float64)
    mean, sd = weighted_mean_sd(values, sampling.cylinder_weight)
    shell_mean, _ = weighted_mean_sd(values, sampling.shell_weight)
    contact = _cortical_contact(volume_hu, sampling, calibration, threshold)
    segments = _segments(sampling, hu, bmd, in_body)
    measured_segments = [s for s in segments if s["mean_hu"] is not None]
    by = "mean_hu" if bmd is None else "bmd_mg_cm3"  # a per-slice line can order them otherwise
    lowest = min(measured_segments, key=lambda s: s[by]) if measured_segments else None
    return {
        "bmd_mg_cm3": None if bmd is None else mean,
        "sd_mg_cm3": None if bmd is None else sd,
        "mean_hu": weighted_mean_sd(hu, sampling.cylinder_weight)[0],
        "shell_bmd_mg_cm3": None if bmd is None else shell_mean,
        "shell_mean_hu": weighted_mean_sd(hu, sampling.shell_weight)[0],
        "cortical_contact_fraction": contact,
        "cortical_threshold": (f"{CORTICAL_THRESHOLD_HU:g} HU" if bmd is None
                               else f"{cortical_threshold_mg_cm3:g} mg/cm3"),
        "segments": segments,
        "min_segment_index": None if lowest is None else lowest["index"],
        "min_segment_bmd_mg_cm3": None if lowest is None else lowest["bmd_mg_cm3"],
        "min_segment_hu": None if lowest is None else lowest["mean_hu"],
        "cylinder_volume_mm3": float(sampling.cylinder_weight.sum() * sampling.voxel_volume_mm3),
        "shell_volume_mm3": float(sampling.shell_weight.sum() * sampling.voxel_volume_mm3),
        "in_body_fraction": None if in_body is None
        else weighted_mean_sd(in_body, sampling.cylinder_weight)[0],
    }


def _cortical_contact(volume_hu: Volume, sampling: ScrewSampling, calibration,
                      threshold: float) -> float | None:
    """Share of the shell's sub-samples whose CT value, trilinearly interpolated there (and
    calibrated, with a calibration), lies above ``threshold``; None for an empty shell."""
    points = sampling.shell_points_ijk
    if not len(points):
        return None
    low = np.maximum(np.floor(points.min(axis=0)).astype(int), 0)
    high = np.minimum(np.ceil(points.max(axis=0)).astype(int) + 1, volume_hu.size_ijk)
    box = volume_hu.array_kji[low[2]:high[2], low[1]:high[1], low[0]:high[0]]
    hu = ndimage.map_coordinates(box.astype(np.float64), (points - low)[:, ::-1].T, order=1,
                                 mode="nearest")
    values = hu if calibration is None else calibration.hu_to_bmd(hu, k_index=points[:, 2])
    return float(np.mean(values > threshold))


def _segments(sampling: ScrewSampling, hu: np.ndarray, bmd: np.ndarray | None,
              in_body: np.ndarray | None) -> list[dict]:
    """One dict per segment along the path: its span from the entry, density, volume and,
    with a body delineation, its part: "body" (at least ``BODY_PART_FRACTION`` of it in the
    vertebral body), "pedicle" (before the first body segment) or "beyond body"."""
    edges = sampling.segment_edges_mm
    out = []
    for n, weights in enumerate(sampling.segment_weight):
        segment = {"index": n, "start_mm": float(edges[n]), "end_mm": float(edges[n + 1]),
                   "bmd_mg_cm3": None if bmd is None else weighted_mean_sd(bmd, weights)[0],
                   "mean_hu": weighted_mean_sd(hu, weights)[0],
                   "volume_mm3": float(weights.sum() * sampling.voxel_volume_mm3),
                   "in_body_fraction": None, "part": None}
        if in_body is not None:
            segment["in_body_fraction"] = weighted_mean_sd(in_body, weights)[0]
        out.append(segment)
    if in_body is not None:
        in_body_segments = [s["index"] for s in out
                            if (s["in_body_fraction"] or 0.0) >= BODY_PART_FRACTION]
        first = in_body_segments[0] if in_body_segments else len(out)
        for s in out:
            s["part"] = ("body" if s["index"] in in_body_segments
                         else "pedicle" if s["index"] < first else "beyond body")
    return out
