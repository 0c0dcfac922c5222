"""A small isotropic working grid around a point, aligned with RAS, and the maps to a CT grid.

The spine geometry is done on this grid in physical mm whatever the CT's voxel order and
spacing (e.g. PIR-stored, anisotropic). Array axes are (S, A, R): ``array[k, j, i]`` is the
voxel at ``origin_ras_mm + spacing_mm * (i, j, k)``. Every map to or from the CT works on the
part of the CT the box covers, never on the whole CT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from boneqct.volume import Volume

BoxKJI = tuple[slice, slice, slice]


def bounding_box(mask: np.ndarray, pad: int = 0) -> BoxKJI:
    """Slices (k, j, i) of a non-empty mask's bounding box, padded by ``pad`` voxels (clipped)."""
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        lo.append(max(present[0] - pad, 0))
        hi.append(min(present[-1] + pad + 1, mask.shape[axis]))
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


@dataclass(frozen=True)
class LocalGrid:
    """An isotropic RAS-aligned box: RAS position of voxel (0, 0, 0), spacing and shape (k, j, i)."""

    origin_ras_mm: np.ndarray
    spacing_mm: float
    shape_kji: tuple[int, int, int]

    @classmethod
    def around(cls, center_ras_mm, half_size_mm: float, spacing_mm: float) -> LocalGrid:
        """A cube of side ``2 * half_size_mm`` centred on ``center_ras_mm``."""
        n = int(np.ceil(2.0 * half_size_mm / spacing_mm)) + 1
        origin = np.asarray(center_ras_mm, float) - spacing_mm * (n - 1) / 2.0
        return cls(origin, float(spacing_mm), (n, n, n))

    @property
    def ijk_to_ras(self) -> np.ndarray:
        """4x4 IJK->RAS matrix of this grid (i along R, j along A, k along S)."""
        matrix = np.diag([self.spacing_mm] * 3 + [1.0])
        matrix[:3, 3] = self.origin_ras_mm
        return matrix

    def kji_to_ras(self, kji: np.ndarray) -> np.ndarray:
        """(N, 3) fractional (k, j, i) indices -> RAS mm."""
        return self.origin_ras_mm + self.spacing_mm * np.asarray(kji, float)[:, ::-1]

    def ras_to_kji(self, ras_mm: np.ndarray) -> np.ndarray:
        """(N, 3) RAS mm -> fractional (k, j, i) indices."""
        return ((np.atleast_2d(ras_mm) - self.origin_ras_mm) / self.spacing_mm)[:, ::-1]

    def _local_to_ct_kji(self, volume: Volume) -> tuple[np.ndarray, np.ndarray]:
        """Matrix and offset taking local (k, j, i) indices to the CT's (k, j, i) indices."""
        ras_to_ijk = np.linalg.inv(volume.ijk_to_ras)
        ijk_to_ijk = ras_to_ijk[:3, :3] * self.spacing_mm
        offset_ijk = ras_to_ijk[:3, :3] @ self.origin_ras_mm + ras_to_ijk[:3, 3]
        flip = np.eye(3)[::-1]  # (k, j, i) <-> (i, j, k)
        return flip @ ijk_to_ijk @ flip, flip @ offset_ijk

    def _ct_box_of(self, volume: Volume, local_box: BoxKJI, pad: int) -> BoxKJI:
        """Slices (k, j, i) of the CT voxels covering a part of this grid, padded, clipped."""
        matrix, offset = self._local_to_ct_kji(volume)
        corners_kji = np.array([[k, j, i] for k in (local_box[0].start, local_box[0].stop - 1)
                                for j in (local_box[1].start, local_box[1].stop - 1)
                                for i in (local_box[2].start, local_box[2].stop - 1)], float)
        ct_kji = corners_kji @ matrix.T + offset
        lo = np.floor(ct_kji.min(axis=0)).astype(int) - pad
        hi = np.ceil(ct_kji.max(axis=0)).astype(int) + pad + 1
        shape = volume.array_kji.shape
        return tuple(slice(min(max(lo[a], 0), shape[a]), max(min(hi[a], shape[a]), 0))
                     for a in range(3))

    def sample(self, volume: Volume, order: int = 1, cval: float = -1000.0) -> np.ndarray:
        """Volume values at the local voxel centres (linear for HU, order 0 for labels)."""
        box = self._ct_box_of(volume, tuple(slice(0, n) for n in self.shape_kji), pad=1)
        if any(s.stop <= s.start for s in box):
            return np.full(self.shape_kji, cval, np.float32 if order > 0 else
                           volume.array_kji.dtype)
        matrix, offset = self._local_to_ct_kji(volume)
        data = volume.array_kji[box]
        if order > 0:
            data = data.astype(np.float32)
        start_kji = np.array([s.start for s in box], float)
        return ndimage.affine_transform(data, matrix, offset - start_kji,
                                        output_shape=self.shape_kji, order=order,
                                        mode="constant", cval=cval)

    def inside_scan(self, volume: Volume) -> np.ndarray:
        """Bool array: local voxels whose centre lies within the CT's voxel extent."""
        matrix, offset = self._local_to_ct_kji(volume)
        corners_kji = np.array(list(np.ndindex(2, 2, 2)), float) * (np.array(self.shape_kji) - 1)
        corners_ct_kji = corners_kji @ matrix.T + offset
        inside = np.ones(self.shape_kji, bool)
        if np.all((corners_ct_kji >= -0.5) & (corners_ct_kji <= np.array(volume.array_kji.shape)
                                                               - 0.5)):
            return inside  # the box is convex: all inside when its corners are
        kk, jj, ii = (np.arange(n, dtype=np.float32) for n in self.shape_kji)
        for axis, size in enumerate(volume.array_kji.shape):
            coord = (matrix[axis, 0] * kk[:, None, None] + matrix[axis, 1] * jj[None, :, None]
                     + matrix[axis, 2] * ii[None, None, :] + offset[axis])
            inside &= (coord >= -0.5) & (coord <= size - 0.5)
        return inside

    def masks_to_ct_box(self, masks: list[np.ndarray],
                         volume: Volume) -> tuple[BoxKJI, list[np.ndarray]]:
        """Local bool masks on the CT grid (nearest neighbour), within the CT box (slices
        k, j, i) holding the first, non-empty one (which must contain the others)."""
        local_box = bounding_box(masks[0], pad=1)
        box = self._ct_box_of(volume, local_box, pad=1)
        matrix, offset = self._local_to_ct_kji(volume)
        inverse = np.linalg.inv(matrix)
        start_ct = np.array([s.start for s in box], float)
        start_local = np.array([s.start for s in local_box], float)
        # CT (k, j, i) in the box -> local (k, j, i) in the local box
        ct_offset = inverse @ (start_ct - offset) - start_local
        shape = tuple(s.stop - s.start for s in box)
        on_ct = [ndimage.affine_transform(mask[local_box].astype(np.uint8), inverse, ct_offset,
                                          output_shape=shape, order=0, mode="constant",
                                          cval=0) > 0 for mask in masks]
        tight = bounding_box(on_ct[0])
        return (tuple(slice(s.start + t.start, s.start + t.stop)
                      for s, t in zip(box, tight, strict=True)), [m[tight] for m in on_ct])
