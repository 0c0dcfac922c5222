"""Body axis (endplate normal) of a vertebral body from its voxels.

The axis is the direction, within ``MAX_TILT_DEG`` of the patient's cranio-caudal (RAS S)
direction, along which the body's voxels have the smallest robust extent (2nd-98th
percentile of their projections): a vertebral body is wider than it is tall, so its height
is smallest along the endplates' normal. Coarse-to-fine search over directions (5 degrees,
then 1 degree), on a subsample of the voxels projected by one matrix product per step.

The percentile extent is flat near its minimum on a voxel lattice, so the direction found is
refined by the endplates themselves: in columns along the current axis (``COLUMN_MM`` wide,
within ``ENDPLATE_CORE_FRACTION`` of the body's radius, clear of the rim), the highest and
lowest voxel of each column sample the upper and lower endplate surfaces; a least-squares
plane through each gives two normals, and the axis is their mean (the bisector for a wedged
body). Two iterations.
"""

from __future__ import annotations

import numpy as np

#: Largest tilt (degrees) of a body axis from RAS S considered (lumbar lordosis, scoliosis).
MAX_TILT_DEG = 30.0
#: Percentiles of the robust extent.
EXTENT_PERCENTILES = (2.0, 98.0)
#: Steps of the extent search: a 5-degree grid of tilts and 30-degree azimuths, then
#: (half-range, step) in degrees of the finer grids around the best direction; the endplate
#: fit that follows needs a start within a degree or two.
FINE_SEARCH_DEG = ((6.0, 1.0),)
#: Voxels (a random subsample) used by the extent search.
_MAX_POINTS = 4000
#: Column width (mm) and central fraction of the body radius used to fit the endplates.
COLUMN_MM = 1.0
ENDPLATE_CORE_FRACTION = 0.7
#: Largest change (degrees) the endplate fit may make to the extent minimum.
MAX_REFINE_DEG = 8.0


def robust_extent_mm(points_mm: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Robust extent (mm) of (N, 3) points projected on each of (K, 3) unit directions."""
    projections = directions @ points_mm.T  # one contiguous row per direction
    lo, hi = np.percentile(projections, EXTENT_PERCENTILES, axis=1)
    return hi - lo


def _directions(tilt_deg: np.ndarray, azimuth_deg: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Unit vectors at (tilt, azimuth) about the frame's third column (K, 3)."""
    t, a = np.radians(tilt_deg), np.radians(azimuth_deg)
    local = np.stack([np.sin(t) * np.cos(a), np.sin(t) * np.sin(a), np.cos(t)], axis=-1)
    return local @ frame.T


def _frame_about(axis: np.ndarray) -> np.ndarray:
    """An orthonormal frame (columns) whose third column is ``axis``."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(helper, axis)
    e1 /= np.linalg.norm(e1)
    return np.column_stack([e1, np.cross(axis, e1), axis])


def _trimmed_plane_slope(design: np.ndarray, heights_mm: np.ndarray) -> np.ndarray:
    """Slopes (du, dv) of a least-squares plane, refitted without residuals beyond 1.5 mm."""
    keep = np.ones(len(heights_mm), bool)
    for _ in range(3):
        coef = np.linalg.lstsq(design[keep], heights_mm[keep], rcond=None)[0]
        keep = np.abs(design @ coef - heights_mm) <= 1.5
        if keep.sum() < 10:
            break
    return coef[:2]


def _endplate_axis(points_mm: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Mean normal of planes fitted to the upper and lower surfaces of centred points."""
    frame = _frame_about(axis)
    local = points_mm @ frame
    radius = np.hypot(local[:, 0], local[:, 1])
    keep = radius <= ENDPLATE_CORE_FRACTION * np.percentile(radius, 98.0)
    local = local[keep]
    cols = np.floor(local[:, :2] / COLUMN_MM).astype(int)
    cols -= cols.min(axis=0)
    column = cols[:, 0] * (cols[:, 1].max() + 1) + cols[:, 1]
    top = np.full(column.max() + 1, -np.inf)
    bottom = np.full(column.max() + 1, np.inf)
    np.maximum.at(top, column, local[:, 2])
    np.minimum.at(bottom, column, local[:, 2])
    used = np.isfinite(top)
    if used.sum() < 10:
        return axis
    center_uv = np.zeros((column.max() + 1, 2))
    np.add.at(center_uv, column, local[:, :2])
    center_uv = center_uv[used] / np.bincount(column)[used][:, None]
    design = np.column_stack([center_uv, np.ones(len(center_uv))])
    slopes = [_trimmed_plane_slope(design, surface[used]) for surface in (top, bottom)]
    mean_slope = 0.5 * (slopes[0] + slopes[1])
    normal = frame @ np.array([-mean_slope[0], -mean_slope[1], 1.0])
    return normal / np.linalg.norm(normal)


def find_body_axis(points_ras_mm: np.ndarray, seed: int = 0) -> np.ndarray:
    """Unit body axis in RAS (pointing superior) of a body given by its voxel centres (mm)."""
    points = np.asarray(points_ras_mm, float)
    points = points - points.mean(axis=0)
    all_points = points
    if len(points) > _MAX_POINTS:
        points = points[np.random.default_rng(seed).choice(len(points), _MAX_POINTS, False)]
    superior = np.array([0.0, 0.0, 1.0])
    tilts = np.arange(5.0, MAX_TILT_DEG + 1e-9, 5.0)
    azimuths = np.arange(0.0, 360.0, 30.0)
    tt, aa = np.meshgrid(tilts, azimuths)
    candidates = np.vstack([superior, _directions(tt.ravel(), aa.ravel(),
                                                  _frame_about(superior))])
    best = candidates[np.argmin(robust_extent_mm(points, candidates))]
    for half_range_deg, step_deg in FINE_SEARCH_DEG:
        frame = _frame_about(best)
        offsets = np.radians(np.arange(-half_range_deg, half_range_deg + 1e-9, step_deg))
        xx, yy = np.meshgrid(offsets, offsets)
        local = np.stack([np.tan(xx.ravel()), np.tan(yy.ravel()), np.ones(xx.size)], axis=1)
        candidates = local @ frame.T
        candidates /= np.linalg.norm(candidates, axis=1, keepdims=True)
        tilt_ok = candidates @ superior >= np.cos(np.radians(MAX_TILT_DEG))
        if not tilt_ok.any():
            break
        candidates = candidates[tilt_ok]
        best = candidates[np.argmin(robust_extent_mm(points, candidates))]
    refined = best
    for _ in range(2):
        refined = _endplate_axis(all_points, refined)
    # keep the extent minimum if the endplate fit wanders off (damaged or irregular endplates)
    if abs(refined @ best) >= np.cos(np.radians(MAX_REFINE_DEG)):
        best = refined
    return best if best @ superior >= 0 else -best
