"""Voxel hexahedral mesh of a vertebral body in its own axis frame, with PMMA endplate layers.

The body is resampled onto a grid of cubic elements (edge ``element_mm``) whose k axis is the
body axis (the endplates' normal), j the anterior direction and i their cross product, so the
load is applied along the body axis whatever the scanner's z.

Partial-volume rule: each element is sampled at ``SUBSAMPLES**3`` regularly spaced points;
its mask fraction is the fraction of points inside the body mask (nearest neighour on the
CT grid), and it is kept when that fraction is at least ``MIN_MASK_FRACTION`` (so the bone
volume is unbiased across element sizes). A kept element's density is the mean of the
calibrated density (trilinear on the CT grid) over its points inside the mask: bone is not
diluted by the soft tissue outside the mask. Only the largest face-connected piece is kept
(islands would make the stiffness singular).

PMMA: a layer of at least ``pmma_mm`` is cast onto each endplate: in every element column
whose bone reaches within ``PMMA_REACH_MM`` of the extreme endplate plane, PMMA fills from the
bone to a flat platen face ``pmma_mm`` beyond that plane, following the endplate's shape
(after Ogo, layers shaped to the endplates of at least 3 mm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from boneqct.errors import FEError
from boneqct.volume import Volume

#: Sub-sample points per element edge for the partial-volume rule.
SUBSAMPLES = 3
#: Smallest fraction of an element inside the body mask for the element to be kept.
MIN_MASK_FRACTION = 0.5
#: Default PMMA layer thickness beyond the most prominent endplate point (mm; Ogo: >= 3 mm).
DEFAULT_PMMA_MM = 3.0
#: Columns whose bone starts within this distance (mm) of the extreme endplate plane get PMMA.
PMMA_REACH_MM = 6.0
#: Element materials.
EMPTY, BONE, PMMA = 0, 1, 2


@dataclass
class VoxelMesh:
    """A voxel mesh on a grid in the body's axis frame.

    Attributes:
        element_mm: edge of the cubic elements (mm).
        material_kji: uint8 (nk, nj, ni): EMPTY, BONE or PMMA per grid cell.
        bmd_mg_cm3_kji: float (nk, nj, ni): element density (mg/cm3 of ``density_material``),
            NaN where not bone.
        density_material: "K2HPO4" or "HA" (the calibration's material).
        node_ijk_to_ras: 4x4 matrix taking node grid indices (i, j, k) to RAS mm; its columns
            are the i, j (anterior), k (body axis, superior) directions times ``element_mm``.
        bone_height_mm: extent of the bone along the body axis (mm).
        mask_fraction_kji: float (nk, nj, ni): the partial-volume fraction of each cell.
    """

    element_mm: float
    material_kji: np.ndarray
    bmd_mg_cm3_kji: np.ndarray
    density_material: str
    node_ijk_to_ras: np.ndarray
    bone_height_mm: float
    mask_fraction_kji: np.ndarray

    @property
    def elements_kji(self) -> np.ndarray:
        """Bool (nk, nj, ni): cells holding an element (bone or PMMA)."""
        return self.material_kji != EMPTY

    @property
    def n_elements(self) -> int:
        """Number of elements (bone and PMMA)."""
        return int(self.elements_kji.sum())

    def element_values(self, array_kji: np.ndarray) -> np.ndarray:
        """Values of a cell array at the elements, in element order (C order of the grid)."""
        return np.asarray(array_kji)[self.elements_kji]

    def node_ras(self, node_kji: np.ndarray) -> np.ndarray:
        """RAS mm of nodes given by (n, 3) grid indices (k, j, i)."""
        ijk = np.asarray(node_kji, float)[:, ::-1]
        return ijk @ self.node_ijk_to_ras[:3, :3].T + self.node_ijk_to_ras[:3, 3]


def axis_frame(axis_ras, anterior_ras) -> np.ndarray:
    """3x3 matrix whose columns are the frame's i, j (anterior), k (axis) unit vectors in RAS;
    right-handed, j made orthogonal to the axis."""
    k = np.asarray(axis_ras, float)
    k = k / np.linalg.norm(k)
    j = np.asarray(anterior_ras, float)
    j = j - (j @ k) * k
    if np.linalg.norm(j) < 1e-6:
        raise FEError("The anterior direction is parallel to the body axis; the vertebral body's "
                      "orientation is invalid. Re-run the body delineation.")
    j /= np.linalg.norm(j)
    return np.stack([np.cross(j, k), j, k], axis=1)


def mesh_vertebral_body(bmd: Volume, body_mask_kji: np.ndarray, axis_ras, anterior_ras, *,
                        density_material: str = "K2HPO4", element_mm: float = 1.0,
                        pmma_mm: float = DEFAULT_PMMA_MM) -> VoxelMesh:
    """Build the voxel mesh of a vertebral body with PMMA layers on both endplates.

    Args:
        bmd: calibrated density volume (mg/cm3 of ``density_material``) with its IJK->RAS.
        body_mask_kji: bool mask of the body on ``bmd``'s grid (posterior elements excluded).
        axis_ras: body axis (endplate normal, superior), RAS unit vector.
        anterior_ras: anterior direction, RAS (made orthogonal to the axis).
        density_material: the calibration's material ("K2HPO4" or "HA").
        element_mm: edge of the cubic elements (mm).
        pmma_mm: PMMA thickness beyond the most prominent endplate point (mm).

    Raises:
        FEError: empty mask, mask on another grid, non-positive element size.
    """
    mask = np.asarray(body_mask_kji, bool)
    if mask.shape != bmd.array_kji.shape:
        raise FEError("The vertebral body mask is not on the CT's grid; give a mask with the "
                      "same voxel grid as the density volume.")
    if not element_mm > 0 or not pmma_mm >= 0:
        raise FEError("The element size must be positive and the PMMA thickness non-negative "
                      f"(got {element_mm} mm and {pmma_mm} mm).")
    found_kji = np.argwhere(mask)
    if len(found_kji) == 0:
        raise FEError("The vertebral body mask is empty; delineate the body (seed or label map) "
                      "before building the finite-element model.")
    frame = axis_frame(axis_ras, anterior_ras)
    h = float(element_mm)
    points_frame = bmd.ijk_to_ras_points(found_kji[:, ::-1]) @ frame
    half_voxel = 0.5 * np.abs(bmd.ijk_to_ras[:3, :3] @ np.ones(3)) @ np.abs(frame)
    lo = points_frame.min(axis=0) - half_voxel - h
    counts = np.ceil((points_frame.max(axis=0) + half_voxel + h - lo) / h).astype(int)
    fraction, density = _sample_cells(bmd, mask, frame, lo, h, counts)
    bone = _largest_component(fraction >= MIN_MASK_FRACTION)
    if not bone.any():
        raise FEError(f"No {h:g} mm element is at least half inside the vertebral body mask; use "
                      "smaller elements or check the mask.")
    # Crop along the axis to the bone; the PMMA layers then pad both ends.
    bone_k = np.flatnonzero(bone.any(axis=(1, 2)))
    crop = slice(bone_k[0], bone_k[-1] + 1)
    bone, fraction, density = bone[crop], fraction[crop], density[crop]
    material, n_layers = _add_pmma(bone, h, pmma_mm)
    inner = slice(n_layers, material.shape[0] - n_layers)
    bmd_cells = np.full(material.shape, np.nan)
    bmd_cells[inner][bone] = density[bone]
    fraction_cells = np.zeros(material.shape)
    fraction_cells[inner] = fraction
    node_ijk_to_ras = np.eye(4)
    node_ijk_to_ras[:3, :3] = frame * h
    node_ijk_to_ras[:3, 3] = frame @ (lo + np.array([0.0, 0.0, (bone_k[0] - n_layers) * h]))
    return VoxelMesh(h, material, bmd_cells, density_material, node_ijk_to_ras,
                     float(bone.shape[0] * h), fraction_cells)


def _sample_cells(bmd: Volume, mask: np.ndarray, frame: np.ndarray, lo_frame: np.ndarray,
                  h: float, counts_ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mask fraction and mean in-mask density of each cell of the frame grid (k, j, i)."""
    s = SUBSAMPLES
    offsets = (np.arange(s) + 0.5) / s
    ni, nj, nk = (int(c) for c in counts_ijk)
    fraction = np.zeros((nk, nj, ni))
    weighted = np.zeros((nk, nj, ni))
    ras_to_ijk = np.linalg.inv(bmd.ijk_to_ras)
    kk, jj, ii = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    density = bmd.array_kji.astype(np.float32, copy=False)
    for oz in offsets:
        for oy in offsets:
            for ox in offsets:
                frame_mm = lo_frame + h * np.stack([ii + ox, jj + oy, kk + oz], axis=-1)
                ijk = (frame_mm @ frame.T) @ ras_to_ijk[:3, :3].T + ras_to_ijk[:3, 3]
                coords = ijk[..., ::-1].reshape(-1, 3).T
                inside = ndimage.map_coordinates(mask, coords, order=0, mode="constant",
                                                 cval=False).reshape(kk.shape)
                value = ndimage.map_coordinates(density, coords, order=1, mode="nearest")
                fraction += inside
                weighted += np.where(inside, value.reshape(kk.shape), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_density = np.where(fraction > 0, weighted / fraction, np.nan)
    return fraction / s**3, mean_density


def _largest_component(cells: np.ndarray) -> np.ndarray:
    """The largest face-connected component of a bool cell array."""
    labels, n = ndimage.label(cells)
    if n <= 1:
        return cells
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (np.argmax(sizes) + 1)


def _add_pmma(bone: np.ndarray, h: float, pmma_mm: float) -> tuple[np.ndarray, int]:
    """Material grid: ``bone`` (cropped to its axial extent) padded along k by the PMMA layers,
    PMMA cast onto both endplates; also returns the number of layers added at each end."""
    n_layers = int(np.ceil(pmma_mm / h - 1e-9))
    reach = int(np.ceil(PMMA_REACH_MM / h))
    nk = bone.shape[0]
    has_bone = bone.any(axis=0)
    k_index = np.arange(nk)[:, None, None]
    lowest = np.where(bone, k_index, nk).min(axis=0)
    highest = np.where(bone, k_index, -1).max(axis=0)
    material = np.pad(np.where(bone, BONE, EMPTY).astype(np.uint8),
                      ((n_layers, n_layers), (0, 0), (0, 0)))
    k_padded = np.arange(nk + 2 * n_layers)[:, None, None] - n_layers
    below = (has_bone & (lowest <= reach)) & (k_padded < lowest)
    above = (has_bone & (highest >= nk - 1 - reach)) & (k_padded > highest)
    material[below | above] = PMMA
    return material, n_layers
