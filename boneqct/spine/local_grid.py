"""A small isotropic working grid around a point, aligned with RAS, and the maps to a CT grid.

The spine geometry is done on this grid in physical mm whatever the CT's voxel order and
spacing (e.g. PIR-stored, anisotropic). Array axes are (S, A, R): ``array[k, j, i]`` is the
voxel at ``origin_ras_mm + spacing_mm * (i, j, k)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from boneqct.volume import Volume


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

    def kji_to_ras(self, kji: np.ndarray) -> np.ndarray:
        """(N, 3) fractional (k, j, i) indices -> RAS mm."""
        return self.origin_ras_mm + self.spacing_mm * np.asarray(kji, float)[:, ::-1]

    def ras_to_kji(self, ras_mm: np.ndarray) -> np.ndarray:
        """(N, 3) RAS mm -> fractional (k, j, i) indices."""
        return ((np.atleast_2d(ras_mm) - self.origin_ras_mm) / self.spacing_mm)[:, ::-1]

    def _local_to_ct_kji(self, volume: Volume) -> tuple[np.ndarray, np.ndarray]:
        """Matrix and offset taking local (k, j, i) indices to the CT's (k, j, i) indices."""
        ras_to_ijk = np.linalg.inv(volume.ijk_to_ras)
        local_ijk_to_ras = np.diag([self.spacing_mm] * 3)
        ijk_to_ijk = ras_to_ijk[:3, :3] @ local_ijk_to_ras
        offset_ijk = ras_to_ijk[:3, :3] @ self.origin_ras_mm + ras_to_ijk[:3, 3]
        flip = np.eye(3)[::-1]  # (k, j, i) <-> (i, j, k)
        return flip @ ijk_to_ijk @ flip, flip @ offset_ijk

    def sample(self, volume: Volume, order: int = 1, cval: float = -1000.0) -> np.ndarray:
        """Volume values at the local voxel centres (linear for HU, order 0 for labels)."""
        matrix, offset = self._local_to_ct_kji(volume)
        data = volume.array_kji
        if order > 0:
            data = data.astype(np.float32, copy=False)
        return ndimage.affine_transform(data, matrix, offset, output_shape=self.shape_kji,
                                        order=order, mode="constant", cval=cval)

    def inside_scan(self, volume: Volume) -> np.ndarray:
        """Bool array: local voxels whose centre lies within the CT's voxel extent."""
        matrix, offset = self._local_to_ct_kji(volume)
        kk, jj, ii = np.indices(self.shape_kji, dtype=np.float32)
        inside = np.ones(self.shape_kji, bool)
        for axis, size in enumerate(volume.array_kji.shape):
            coord = (matrix[axis, 0] * kk + matrix[axis, 1] * jj + matrix[axis, 2] * ii
                     + offset[axis])
            inside &= (coord >= -0.5) & (coord <= size - 0.5)
        return inside

    def ct_box(self, volume: Volume) -> tuple[slice, slice, slice]:
        """Slices (k, j, i) of the CT's voxels covering this box (clipped to the CT)."""
        corners_kji = np.array([[k, j, i] for k in (0, self.shape_kji[0] - 1)
                                for j in (0, self.shape_kji[1] - 1)
                                for i in (0, self.shape_kji[2] - 1)], float)
        ijk = volume.ras_to_ijk_points(self.kji_to_ras(corners_kji))
        lo = np.floor(ijk.min(axis=0)).astype(int)
        hi = np.ceil(ijk.max(axis=0)).astype(int) + 1
        size_ijk = volume.size_ijk
        return tuple(slice(max(lo[a], 0), min(hi[a], size_ijk[a])) for a in (2, 1, 0))

    def mask_to_ct(self, mask: np.ndarray, volume: Volume) -> np.ndarray:
        """A local bool mask on the full CT grid (nearest neighbour), False outside the box."""
        box = self.ct_box(volume)
        out = np.zeros(volume.array_kji.shape, dtype=bool)
        if any(s.stop <= s.start for s in box):
            return out
        kk, jj, ii = np.meshgrid(*(np.arange(s.start, s.stop) for s in box), indexing="ij")
        ijk = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1)
        local_kji = self.ras_to_kji(volume.ijk_to_ras_points(ijk))
        values = ndimage.map_coordinates(mask.astype(np.uint8), local_kji.T, order=0,
                                         mode="constant", cval=0)
        out[box] = values.reshape(kk.shape) > 0
        return out
