"""Coarser grids as scanners and segmentation tools write them.

``average_to_spacing`` averages a volume onto a coarser grid with the same axes and outer
extent, each new voxel the overlap-weighted mean of the old voxels it covers (partial-volume
averaging, exact for box-shaped voxels); ``labels_to_grid`` puts a label map on another
volume's grid by nearest neighbour, as segmentation tools resample their output.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import sparse

from boneqct.io.images import volume_from_sitk, volume_to_sitk
from boneqct.volume import Volume, stated_slice_thickness_mm


def _overlap_matrix(n_old: int, old_mm: float, new_mm: float) -> tuple[sparse.csr_matrix, float]:
    """Sparse (n_new, n_old) matrix of overlap fractions of old voxels in new ones along one
    axis, rows summing to 1, and the shift (mm) of the first new centre from the old one."""
    extent_mm = n_old * old_mm
    n_new = max(int(round(extent_mm / new_mm)), 1)
    new_mm = extent_mm / n_new
    old_edges = np.arange(n_old + 1) * old_mm
    rows, cols, weights = [], [], []
    for row in range(n_new):
        lo, hi = row * new_mm, (row + 1) * new_mm
        first = int(np.floor(lo / old_mm))
        last = min(int(np.ceil(hi / old_mm)), n_old)
        for col in range(first, last):
            overlap = min(hi, old_edges[col + 1]) - max(lo, old_edges[col])
            if overlap > 1e-9:
                rows.append(row)
                cols.append(col)
                weights.append(overlap / new_mm)
    matrix = sparse.csr_matrix((weights, (rows, cols)), shape=(n_new, n_old))
    return matrix, 0.5 * (new_mm - old_mm)


def average_to_spacing(volume: Volume, spacing_mm) -> Volume:
    """The volume averaged onto voxels of about ``spacing_mm`` (i, j, k, mm) covering the
    same extent (each spacing adjusted so a whole number of voxels fits), float32.

    Every new voxel is the mean of the old voxel values weighted by their overlap with it:
    the partial-volume average a scanner forms over a larger voxel. Averaged along k, a
    slice thickness the source states (``stated_slice_thickness_mm``) becomes the averaged
    slices' nominal one: the mean of slices ``t`` mm thick every ``d`` mm over ``D`` mm
    reads a trapezoid of full width at half maximum ``max(D, t)`` when they touch or overlap
    (``t >= d``), and ``D - d + t`` mm end to end when they leave gaps; a stated thickness
    the source's own check refused is dropped (it could pass the coarser grid's).
    """
    array = volume.array_kji.astype(np.float64)
    shifts_ijk, new_spacing_ijk = [], []
    for axis_kji, (old_mm, new_mm) in enumerate(zip(volume.spacing_mm[::-1],
                                                   np.asarray(spacing_mm, float)[::-1],
                                                   strict=True)):
        matrix, shift_mm = _overlap_matrix(array.shape[axis_kji], float(old_mm), float(new_mm))
        moved = np.moveaxis(array, axis_kji, 0)
        averaged = matrix @ moved.reshape(moved.shape[0], -1)
        array = np.moveaxis(averaged.reshape((matrix.shape[0],) + moved.shape[1:]), 0, axis_kji)
        shifts_ijk.insert(0, shift_mm)
        new_spacing_ijk.insert(0, old_mm * volume.array_kji.shape[axis_kji] / matrix.shape[0])
    direction = volume.direction_ras
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = direction * np.array(new_spacing_ijk)
    ijk_to_ras[:3, 3] = volume.origin_ras_mm + direction @ np.array(shifts_ijk)
    metadata = dict(volume.metadata)
    old_k_mm, new_k_mm = float(volume.spacing_mm[2]), float(new_spacing_ijk[2])
    if new_k_mm > old_k_mm * (1.0 + 1e-9) and "slice_thickness_mm" in metadata:
        stated_mm = stated_slice_thickness_mm(volume)
        if stated_mm is None:
            del metadata["slice_thickness_mm"]
        elif stated_mm >= old_k_mm:
            metadata["slice_thickness_mm"] = max(stated_mm, new_k_mm)
        else:
            metadata["slice_thickness_mm"] = new_k_mm - old_k_mm + stated_mm
    return Volume(array.astype(np.float32), ijk_to_ras, metadata, list(volume.warnings))


def labels_to_grid(labels: Volume, reference: Volume) -> Volume:
    """A label map resampled by nearest neighbour onto a reference volume's grid (0 outside)."""
    resampled = sitk.Resample(volume_to_sitk(labels), volume_to_sitk(reference),
                              sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return volume_from_sitk(resampled)
