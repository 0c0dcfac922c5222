"""Per-slice masks for tissue composition: the body outline without table or phantom, the skin
layer, the visceral cavity inside the muscle wall, and the vertebral bone envelope.

All functions take one axial slice (2D, j x i) with its pixel spacing (mm) and return
boolean masks of the same shape.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: A posterior jump of this much in the outline's width marks where a calibration phantom or
#: the table, wider than the back it supports, begins (mm).
SUPPORT_WIDTH_JUMP_MM = 20.0


def _disk(radius_px: np.ndarray) -> np.ndarray:
    """Elliptic structuring element of the given radii (pixels, j then i)."""
    rj, ri = np.maximum(np.rint(radius_px).astype(int), 1)
    j, i = np.ogrid[-rj:rj + 1, -ri:ri + 1]
    return (j / rj) ** 2 + (i / ri) ** 2 <= 1.0


def body_outline(slice_hu: np.ndarray, pixel_mm: np.ndarray, posterior_axis: int,
                 posterior_sign: int, air_threshold_hu: float) -> np.ndarray:
    """The patient's body in one slice: above ``air_threshold_hu``, cut where a wider support
    (calibration phantom, table) begins posterior to the back, largest component, holes filled.

    Args:
        slice_hu: 2D HU (j, i).
        pixel_mm: (j, i) pixel spacing in mm.
        posterior_axis: 0 if rows (j) run antero-posteriorly, 1 if columns (i) do.
        posterior_sign: +1 if the index increases posteriorly along that axis, else -1.
        air_threshold_hu: air / tissue threshold (HU).
    """
    mask = slice_hu > air_threshold_hu
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    largest = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    across_axis = 1 - posterior_axis
    widths_mm = largest.sum(axis=across_axis) * pixel_mm[across_axis]
    order = np.arange(len(widths_mm))[::posterior_sign]
    order = order[widths_mm[order] > 0]
    widest_mm, narrowest_mm, cut = 0.0, np.inf, None
    for position in order:  # anterior to posterior: the outline widens, narrows to the back
        width = widths_mm[position]
        widest_mm = max(widest_mm, width)
        if width < widest_mm - SUPPORT_WIDTH_JUMP_MM:     # past the widest part of the body
            narrowest_mm = min(narrowest_mm, width)
        if width > narrowest_mm + SUPPORT_WIDTH_JUMP_MM:  # a wider support begins
            cut = position
            break
    if cut is not None:
        index = np.arange(mask.shape[posterior_axis])
        beyond = (index - cut) * posterior_sign >= 0
        mask &= ~(beyond[:, None] if posterior_axis == 0 else beyond[None, :])
        labels, n = ndimage.label(mask)
        largest = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    return ndimage.binary_fill_holes(largest)


def visceral_cavity(lean_or_bone: np.ndarray, pixel_mm: np.ndarray,
                    gap_closing_mm: float) -> np.ndarray:
    """The region enclosed by the muscle wall: holes of the (closed) lean-or-bone mask.

    Subcutaneous fat lies outside the wall and reaches the skin, so it is no hole; visceral fat
    is enclosed by the wall. A closing of ``gap_closing_mm`` bridges small gaps in the wall.
    """
    closed = ndimage.binary_closing(lean_or_bone, _disk(gap_closing_mm / pixel_mm))
    return ndimage.binary_fill_holes(closed)


def bone_envelope(cortical: np.ndarray, pixel_mm: np.ndarray,
                  min_cancellous_area_mm2: float) -> np.ndarray:
    """Cancellous bone: holes enclosed by cortex of at least ``min_cancellous_area_mm2`` (a
    vertebral body's interior; the spinal canal inside the neural arch is smaller)."""
    holes = ndimage.binary_fill_holes(cortical) & ~cortical
    labels, n = ndimage.label(holes)
    if n == 0:
        return holes
    area_mm2 = np.bincount(labels.ravel())[1:] * float(np.prod(pixel_mm))
    keep = np.concatenate([[False], area_mm2 >= min_cancellous_area_mm2])
    return keep[labels]


def outline_depth(slice_hu: np.ndarray, body: np.ndarray, pixel_mm: np.ndarray,
                  level_hu: float, reach_mm: float) -> np.ndarray:
    """Signed depth (mm, positive inside) of each pixel centre below the body outline, located
    to a fraction of a pixel; NaN farther than ``reach_mm`` from the outline.

    The outline is the ``level_hu`` iso-line (midway between air and tissue: the edge of a
    blurred step with a symmetric PSF crosses the mid-level at the true edge), found by
    linear interpolation between neighbouring pixel centres where the image crosses the
    level, across the body's boundary only (outside the body, tissue above the level, such as
    a phantom or the table cut off by ``body_outline``, is taken as air). The depth of a
    pixel is its distance to the line fitted (total least squares) through its four nearest
    edge points.
    """
    from scipy.spatial import cKDTree

    ring = ndimage.binary_dilation(body, iterations=1) & ~ndimage.binary_erosion(body, iterations=1)
    g = np.where(body | (slice_hu <= level_hu), slice_hu, -1000.0).astype(np.float64)
    points = []
    for axis in (0, 1):
        a = g[:-1, :] if axis == 0 else g[:, :-1]
        b = g[1:, :] if axis == 0 else g[:, 1:]
        near = ring[:-1, :] | ring[1:, :] if axis == 0 else ring[:, :-1] | ring[:, 1:]
        cross = near & ((a - level_hu) * (b - level_hu) < 0)
        j, i = np.nonzero(cross)
        t = (level_hu - a[cross]) / (b[cross] - a[cross])
        points.append(np.column_stack([(j + (t if axis == 0 else 0.0)) * pixel_mm[0],
                                       (i + (t if axis == 1 else 0.0)) * pixel_mm[1]]))
    points = np.concatenate(points)
    depth = np.full(body.shape, np.nan)
    if len(points) < 4:
        return depth
    edt_in = ndimage.distance_transform_edt(body, sampling=pixel_mm)
    edt_out = ndimage.distance_transform_edt(~body, sampling=pixel_mm)
    candidates = (edt_in <= reach_mm + pixel_mm.max()) & (edt_out <= 2.0 * pixel_mm.max())
    j, i = np.nonzero(candidates)
    centres = np.column_stack([j * pixel_mm[0], i * pixel_mm[1]])
    _, index = cKDTree(points).query(centres, k=4)
    local = points[index]                                    # (n, 4, 2)
    mean = local.mean(axis=1)
    d = local - mean[:, None, :]
    cov = np.einsum("nki,nkj->nij", d, d)
    _, vectors = np.linalg.eigh(cov)
    normal = vectors[:, :, 0]                                # smallest eigenvalue: the normal
    distance = np.abs(np.einsum("ni,ni->n", centres - mean, normal))
    depth[j, i] = np.where(body[j, i], distance, -distance)
    return depth


def layer_fractions(depth_mm: np.ndarray, pixel_mm: np.ndarray, thickness_mm: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Fractions (0-1) of each pixel in the skin layer (depth 0 to ``thickness_mm``) and below
    it, the pixel spanning its centre depth +/- p/2 along the normal (p the mean pixel size):
    a two-material mixing of the pixel across each boundary, exact on average over the
    outline's sub-pixel positions. Pixels without a depth (NaN: deep inside, or outside) get
    skin 0 and below 1 inside, 0 outside (the caller masks)."""
    p = float(np.mean(pixel_mm))
    lo, hi = depth_mm - p / 2.0, depth_mm + p / 2.0
    skin = np.clip((np.minimum(hi, thickness_mm) - np.maximum(lo, 0.0)) / p, 0.0, 1.0)
    below = np.clip((hi - np.maximum(lo, thickness_mm)) / p, 0.0, 1.0)
    unknown = np.isnan(depth_mm)
    return (np.where(unknown, 0.0, skin).astype(np.float32),
            np.where(unknown, 1.0, below).astype(np.float32))
