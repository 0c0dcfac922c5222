"""Projection of the femur's mineral in the DXA position: areal density (g/cm2) conserving mass.

Each voxel of the filled femur is split into sub-voxels (along each axis as many as make them at
most half a projection pixel long, so the image is smooth), each carrying its share of the
voxel's mineral (BMD x volume) and spread bilinearly over the four pixels nearest its projected
centre. The split is done in two exact, mass-conserving steps: the voxels' mass is spread
bilinearly on a grid ``FINE_PER_PIXEL`` times finer than the pixels, then every fine cell
deposits the sub-voxels' mean footprint (the same for every voxel: the map is linear). The
image's total mass is therefore exactly the 3D mineral counted, whatever the pose. The volume
of bone is projected the same way (for vBMD).

Mineral counted (``mineral_weights``): the BMD of every voxel of the filled femur, plus, in a
shell of ``SPILL_SHELL_MM`` outside it (where the CT's blur spreads the cortex), the excess of
BMD over the local soft tissue (``soft_tissue_baseline_mg_cm3``, the median BMD of the
non-bone tissue 3-6 mm outside the femur). The surround thus adds no mineral - as DXA's
two-material decomposition counts only mineral in excess of the soft tissue beside the bone
(Blake & Fogelman 1997, Semin Nucl Med 27:210; not re-read here) - while the cortex blurred across the mask's
edge is counted.

Bone edge (``silhouette``): the femur's periosteal surface at half maximum - voxels of the
femur whose BMD is at least half-way between the local soft tissue and the highest BMD within
``EDGE_LOCAL_MAX_MM`` (the 50 % threshold between bone and background, which places the edge of a blurred step
where it is; Hangartner 2007, J Musculoskelet Neuronal Interact 7:9 - recalled, not verified) -
projected along the beam: the pixels whose centres lie in the shadow of that surface.

The rotated BMD volume (for display) is a separate, SimpleITK linear resampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from boneqct.hip.extraction import voxel_centers_ras
from boneqct.hip.frame import FemurFrame
from boneqct.hip.options import DEFAULT_PIXEL_MM
from boneqct.io import volume_from_sitk, volume_to_sitk
from boneqct.resources import check_projection
from boneqct.volume import Volume

#: g per (mg/cm3 x mm3): 1e-3 g/mg x 1e-3 cm3/mm3.
G_PER_MG_CM3_MM3 = 1e-6
#: Margin (mm) of the projection image around the femur.
MARGIN_MM = 6.0
#: Fine grid (per pixel and axis) on which the voxels' mass is gathered before the sub-voxel
#: footprint spreads it on the pixels (a voxel is placed to within 1/8 pixel).
FINE_PER_PIXEL = 4
#: Shell outside the filled femur (mm) whose mineral in excess of the soft tissue is counted:
#: about 3.5 standard deviations of a 1 mm FWHM CT blur (chosen; not verified on patient scans).
SPILL_SHELL_MM = 1.5
#: Shell outside the filled femur (mm) whose non-bone voxels give the soft-tissue baseline.
BASELINE_SHELL_MM = (3.0, 6.0)
#: Neighbourhood (mm) whose highest BMD is the cortex's peak in the half-maximum edge rule.
EDGE_LOCAL_MAX_MM = 2.0


@dataclass
class Projection:
    """Areal images of one femur in the DXA position.

    Rows run down the shaft (inferior), columns towards the patient's left. Pixel (r, c) is at
    ``u = u0 + c * pixel_mm`` along the image's right axis and ``w = w0 - r * pixel_mm`` along
    the shaft from the head centre (mm).

    Attributes:
        bmc_g: mineral mass projected into each pixel (g; ``mineral_weights``).
        volume_cm3: femur volume projected into each pixel (cm3).
        silhouette: the bone's projected area (``silhouette``), the pixels whose area and
            mineral the regions count.
        soft_tissue_mg_cm3: the soft-tissue baseline subtracted in the spill shell.
        pixel_mm: square pixel size.
        origin_uw_mm: (u0, w0) of pixel (0, 0).
        axes_ras: columns right, up, beam (``FemurFrame.dxa_axes_ras``).
        head_center_ras_mm: origin of (u, w).
    """

    bmc_g: np.ndarray
    volume_cm3: np.ndarray
    pixel_mm: float
    origin_uw_mm: tuple[float, float]
    axes_ras: np.ndarray
    head_center_ras_mm: np.ndarray
    silhouette: np.ndarray
    soft_tissue_mg_cm3: float

    @property
    def pixel_area_cm2(self) -> float:
        return (self.pixel_mm / 10.0) ** 2

    @property
    def areal_density_g_cm2(self) -> np.ndarray:
        """Areal mineral density (g/cm2) per pixel."""
        return self.bmc_g / self.pixel_area_cm2

    def uw_of_pixels(self, rows, cols) -> tuple[np.ndarray, np.ndarray]:
        """(u, w) in mm of pixel centres (fractional indices allowed)."""
        return (self.origin_uw_mm[0] + np.asarray(cols) * self.pixel_mm,
                self.origin_uw_mm[1] - np.asarray(rows) * self.pixel_mm)

    def pixels_of_uw(self, u_mm, w_mm) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (row, col) of points given in (u, w) mm."""
        return ((self.origin_uw_mm[1] - np.asarray(w_mm)) / self.pixel_mm,
                (np.asarray(u_mm) - self.origin_uw_mm[0]) / self.pixel_mm)

    def uw_of_ras(self, points_ras_mm) -> tuple[np.ndarray, np.ndarray]:
        """(u, w) in mm of RAS points projected along the beam."""
        d = np.atleast_2d(points_ras_mm) - self.head_center_ras_mm
        return d @ self.axes_ras[:, 0], d @ self.axes_ras[:, 1]

    def as_volume(self, rotation_ras: np.ndarray, values: np.ndarray | None = None) -> Volume:
        """A one-slice volume of the areal density (or ``values``) in the DXA position: the
        image plane through the head centre after ``rotation_ras`` (``dxa_rotation_ras``),
        a coronal slice with columns to -x and rows to -z."""
        image = self.areal_density_g_cm2 if values is None else values
        m = np.eye(4)
        m[:3, 0] = self.axes_ras[:, 0] * self.pixel_mm
        m[:3, 1] = -self.axes_ras[:, 1] * self.pixel_mm
        m[:3, 2] = self.axes_ras[:, 2]
        m[:3, 3] = (self.head_center_ras_mm + self.origin_uw_mm[0] * self.axes_ras[:, 0]
                    + self.origin_uw_mm[1] * self.axes_ras[:, 1])
        return Volume(np.asarray(image, np.float32)[None], rotation_ras @ m,
                      {"unit": "g/cm2" if values is None else ""})


def _subvoxel_offsets(volume: Volume, pixel_mm: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Sub-voxel centre offsets in index units (M, 3) for i, j, k, and the split factors: each
    axis is split so that its sub-voxels are at most half a projection pixel long."""
    splits = tuple(max(1, int(np.ceil(2.0 * s / pixel_mm - 1e-6))) for s in volume.spacing_mm)
    fracs = [(np.arange(n) + 0.5) / n - 0.5 for n in splits]
    grid = np.stack(np.meshgrid(*fracs, indexing="ij"), -1).reshape(-1, 3)
    return grid, splits


def _bilinear_splat(row: np.ndarray, col: np.ndarray, values: np.ndarray,
                    shape: tuple[int, int]) -> np.ndarray:
    """Spread ``values`` at fractional (row, col) bilinearly over the four nearest cells."""
    r0, c0 = np.floor(row).astype(np.int64), np.floor(col).astype(np.int64)
    fr, fc = row - r0, col - c0
    image = np.zeros(shape[0] * shape[1])
    for dr, dc, weight in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                           (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        image += np.bincount((r0 + dr) * shape[1] + c0 + dc, weights=weight * values,
                             minlength=image.size)
    return image.reshape(shape)


def _footprint_kernel(offsets_px: np.ndarray, fine: int) -> tuple[np.ndarray, tuple[int, int]]:
    """What a unit mass at a fine-grid position deposits on the pixels: the mean over the
    sub-voxel offsets (M, 2; row, col in pixels) of the bilinear tent, sampled every
    1/``fine`` pixel. Returns the kernel and the fine offset (row, col) of its first cell; each
    sample sums to one over the pixels it reaches (the tent is a partition of unity)."""
    lo = np.floor((offsets_px.min(axis=0) - 1.0) * fine).astype(int)
    hi = np.ceil((offsets_px.max(axis=0) + 1.0) * fine).astype(int)
    d_row = np.arange(lo[0], hi[0] + 1) / fine
    d_col = np.arange(lo[1], hi[1] + 1) / fine
    tent_r = np.maximum(0.0, 1.0 - np.abs(d_row[None, :] - offsets_px[:, :1]))  # (M, R)
    tent_c = np.maximum(0.0, 1.0 - np.abs(d_col[None, :] - offsets_px[:, 1:]))  # (M, C)
    return tent_r.T @ tent_c / len(offsets_px), (int(lo[0]), int(lo[1]))


def _sample_convolution(fine_image: np.ndarray, kernel: np.ndarray, first: tuple[int, int],
                        fine: int, shape: tuple[int, int]) -> np.ndarray:
    """Pixel (r, c) = sum over fine cells q of fine_image[q] x kernel(fine position of the
    pixel - q): the fine image convolved with the footprint, at the pixel centres only."""
    pad = int(np.max(np.abs([first[0], first[1], first[0] + kernel.shape[0] - 1,
                             first[1] + kernel.shape[1] - 1])))
    padded = np.pad(fine_image, pad)
    out = np.zeros(shape)
    span_r, span_c = (shape[0] - 1) * fine + 1, (shape[1] - 1) * fine + 1
    for a, b in zip(*np.nonzero(kernel), strict=True):
        r, c = pad - (first[0] + a), pad - (first[1] + b)
        out += kernel[a, b] * padded[r:r + span_r:fine, c:c + span_c:fine]
    return out


def _outside_distance_mm(mask_kji: np.ndarray, volume: Volume) -> np.ndarray:
    """Distance (mm) of every voxel from the mask (0 inside)."""
    return ndimage.distance_transform_edt(~mask_kji, sampling=volume.spacing_mm[::-1])


def soft_tissue_baseline_mg_cm3(volume_bmd: Volume, mask_kji: np.ndarray,
                                bone_threshold_mg_cm3: float) -> float:
    """Median BMD (mg/cm3) of the non-bone voxels ``BASELINE_SHELL_MM`` outside the femur (0
    when the box holds none)."""
    distance = _outside_distance_mm(mask_kji, volume_bmd)
    shell = (distance >= BASELINE_SHELL_MM[0]) & (distance <= BASELINE_SHELL_MM[1])
    values = volume_bmd.array_kji[shell & (volume_bmd.array_kji < bone_threshold_mg_cm3)]
    return float(np.median(values)) if values.size else 0.0


def mineral_weights(volume_bmd: Volume, mask_kji: np.ndarray, baseline_mg_cm3: float,
                    bone_threshold_mg_cm3: float) -> tuple[np.ndarray, np.ndarray]:
    """Voxels counted and their mineral density (mg/cm3): the femur's BMD, and in the
    ``SPILL_SHELL_MM`` shell outside it (other bone excluded) BMD minus the soft tissue."""
    distance = _outside_distance_mm(mask_kji, volume_bmd)
    bmd = volume_bmd.array_kji
    shell = (distance > 0) & (distance <= SPILL_SHELL_MM) & (bmd < bone_threshold_mg_cm3)
    counted = mask_kji | shell
    density = np.where(mask_kji, bmd, bmd - baseline_mg_cm3)[counted].astype(np.float64)
    return counted, density


def half_maximum_edge(volume_bmd: Volume, mask_kji: np.ndarray, baseline_mg_cm3: float) -> np.ndarray:
    """The femur's voxels at or above half-way between the soft tissue and the highest BMD
    within ``EDGE_LOCAL_MAX_MM`` (the half-maximum periosteal edge)."""
    reach = [max(1, int(round(EDGE_LOCAL_MAX_MM / s))) for s in volume_bmd.spacing_mm[::-1]]
    peak = ndimage.maximum_filter(np.where(mask_kji, volume_bmd.array_kji, baseline_mg_cm3),
                                  size=[2 * r + 1 for r in reach])
    return mask_kji & (volume_bmd.array_kji >= 0.5 * (baseline_mg_cm3 + peak))


def silhouette(volume: Volume, edge_kji: np.ndarray, axes: np.ndarray, origin_ras_mm: np.ndarray,
               origin_uw_mm: tuple[float, float], pixel_mm: float, shape: tuple[int, int]
               ) -> np.ndarray:
    """Pixels whose centre lies in the projected shadow of ``edge_kji``.

    The sub-voxel centres of its surface voxels (sub-voxels at most half a pixel long) mark
    their nearest cell on a grid of half-pixel cells whose every other cell is centred on a
    pixel centre; holes are filled (the surface's shadow is the solid's) and the pixel centres'
    cells read. Marking whole pixels would widen the shadow by half a pixel less half a
    sub-voxel; half-pixel cells leave a quarter pixel less half a sub-voxel (about 0).
    """
    surface = edge_kji & ~ndimage.binary_erosion(edge_kji)
    offsets_ijk, _ = _subvoxel_offsets(volume, pixel_mm)
    uw_off = (offsets_ijk @ volume.ijk_to_ras[:3, :3].T) @ axes[:, :2]
    uw_vox = (voxel_centers_ras(volume, np.argwhere(surface)) - origin_ras_mm) @ axes[:, :2]
    cell_mm = pixel_mm / 2.0
    fine = np.zeros((2 * shape[0] - 1, 2 * shape[1] - 1), bool)
    for du, dw in uw_off:
        rows = np.rint((origin_uw_mm[1] - (uw_vox[:, 1] + dw)) / cell_mm).astype(np.int64)
        cols = np.rint((uw_vox[:, 0] + du - origin_uw_mm[0]) / cell_mm).astype(np.int64)
        fine[rows, cols] = True
    return ndimage.binary_fill_holes(fine)[::2, ::2]


def project_femur(volume_bmd: Volume, mask_kji: np.ndarray, frame: FemurFrame,
                  bone_threshold_mg_cm3: float, pixel_mm: float = DEFAULT_PIXEL_MM) -> Projection:
    """Project the femur's mineral (``mineral_weights``; BMD in mg/cm3, ``mask_kji`` the filled
    femur) in the DXA position, with its volume and its half-maximum silhouette."""
    axes = frame.dxa_axes_ras()
    baseline = soft_tissue_baseline_mg_cm3(volume_bmd, mask_kji, bone_threshold_mg_cm3)
    counted, density = mineral_weights(volume_bmd, mask_kji, baseline, bone_threshold_mg_cm3)
    kji = np.argwhere(counted)
    in_femur = mask_kji[counted]
    voxel_mm3 = float(abs(np.linalg.det(volume_bmd.ijk_to_ras[:3, :3])))
    offsets_ijk, _ = _subvoxel_offsets(volume_bmd, pixel_mm)
    centres = voxel_centers_ras(volume_bmd, kji) - frame.head_center_ras_mm
    # (u, w) of each voxel centre and of the sub-voxel offsets (the map is linear)
    uw_vox = centres @ axes[:, :2]
    uw_off = (offsets_ijk @ volume_bmd.ijk_to_ras[:3, :3].T) @ axes[:, :2]
    lo = uw_vox.min(axis=0) - MARGIN_MM
    hi = uw_vox.max(axis=0) + MARGIN_MM
    n_cols = int(np.ceil((hi[0] - lo[0]) / pixel_mm)) + 1
    n_rows = int(np.ceil((hi[1] - lo[1]) / pixel_mm)) + 1
    check_projection(n_rows, n_cols, pixel_mm)  # the fine grids below dominate the memory
    origin = (float(lo[0]), float(hi[1]))
    # 1. each voxel's mass, bilinearly onto a grid FINE_PER_PIXEL times finer than the pixels
    f = FINE_PER_PIXEL
    col = (uw_vox[:, 0] - origin[0]) / pixel_mm * f
    row = (origin[1] - uw_vox[:, 1]) / pixel_mm * f
    fine_shape = ((n_rows - 1) * f + 2, (n_cols - 1) * f + 2)
    fine_mass = _bilinear_splat(row, col, density * voxel_mm3 * G_PER_MG_CM3_MM3, fine_shape)
    fine_volume = _bilinear_splat(row, col, np.where(in_femur, voxel_mm3 / 1000.0, 0.0),
                                  fine_shape)
    # 2. the sub-voxels' footprint on the pixels, sampled at the fine positions
    offsets_px = np.column_stack([-uw_off[:, 1], uw_off[:, 0]]) / pixel_mm  # (row, col)
    kernel, first = _footprint_kernel(offsets_px, f)
    bmc = _sample_convolution(fine_mass, kernel, first, f, (n_rows, n_cols))
    volume = _sample_convolution(fine_volume, kernel, first, f, (n_rows, n_cols))
    edge = half_maximum_edge(volume_bmd, mask_kji, baseline)
    shadow = silhouette(volume_bmd, edge, axes, frame.head_center_ras_mm, origin, pixel_mm,
                        (n_rows, n_cols))
    return Projection(bmc, volume, pixel_mm, origin, axes, frame.head_center_ras_mm.copy(),
                      shadow, baseline)


def rotated_volume(volume_bmd: Volume, mask_kji: np.ndarray, frame: FemurFrame,
                   spacing_mm: float | None = None, margin_mm: float = 10.0,
                   default_value: float = 0.0) -> Volume:
    """The BMD volume around the femur resampled (linear) in the DXA position.

    The returned volume's IJK->RAS is axis-aligned: it shows the femur rotated by
    ``frame.dxa_rotation_ras()`` about the head centre.
    """
    spacing = float(spacing_mm or volume_bmd.spacing_mm.min())
    rotation = frame.dxa_rotation_ras()
    box = ndimage.find_objects(mask_kji.astype(np.uint8))[0]
    corners = np.array([[i, j, k] for i in (box[2].start, box[2].stop)
                        for j in (box[1].start, box[1].stop) for k in (box[0].start, box[0].stop)])
    corners_rot = volume_bmd.ijk_to_ras_points(corners) @ rotation[:3, :3].T + rotation[:3, 3]
    lo, hi = corners_rot.min(axis=0) - margin_mm, corners_rot.max(axis=0) + margin_mm
    size = np.ceil((hi - lo) / spacing).astype(int) + 1
    target = np.eye(4)
    target[:3, :3] *= spacing
    target[:3, 3] = lo
    grid_in_ct = np.linalg.inv(rotation) @ target  # the same grid before the rotation
    reference = volume_to_sitk(Volume(np.zeros(size[::-1], np.float32), grid_in_ct))
    image = volume_to_sitk(volume_bmd.with_array(volume_bmd.array_kji.astype(np.float32)))
    resampled = volume_from_sitk(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear,
                                               default_value, sitk.sitkFloat32))
    return Volume(resampled.array_kji, target, {"unit": "mg/cm3"})


__all__ = ["DEFAULT_PIXEL_MM", "Projection", "half_maximum_edge", "mineral_weights",
           "project_femur", "rotated_volume", "silhouette", "soft_tissue_baseline_mg_cm3"]
