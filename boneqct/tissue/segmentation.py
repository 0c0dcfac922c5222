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


def skin_fraction(body: np.ndarray, pixel_mm: np.ndarray, thickness_mm: float) -> np.ndarray:
    """Fraction (0-1) of each body pixel lying within ``thickness_mm`` of the outline.

    A pixel's centre lies at depth ``edt - p/2`` below the outline (which runs along the outer
    edge of the outermost pixels), and the pixel spans that depth +/- p/2, p the mean pixel
    size; the fraction of that span shallower than the thickness is skin.
    """
    p_mm = float(np.mean(pixel_mm))
    centre_depth_mm = ndimage.distance_transform_edt(body, sampling=pixel_mm) - 0.5 * p_mm
    fraction = np.clip((thickness_mm - (centre_depth_mm - 0.5 * p_mm)) / p_mm, 0.0, 1.0)
    return np.where(body, fraction, 0.0).astype(np.float32)


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
