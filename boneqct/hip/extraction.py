"""Extraction of one proximal femur from a calibrated CT: a filled mask of its periosteal volume.

Bone is thresholded on the BMD map, the femur is the connected component on the chosen side
that holds the seed (or, without one, the large component reaching furthest distally: the
shaft), and its cortical shell is closed and its interior (trabecular bone, marrow) filled so
that the projection counts all mineral inside the bone. The femur is separated from the
acetabulum at the joint space by the fitted head sphere (``cut_at_joint_space``), so a
narrow joint space that thresholding bridges is cut too. A label map (e.g. TotalSegmentator's
femur_left / femur_right) can replace thresholding.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from boneqct.errors import FemurNotFoundError, HipError, ImplantError
from boneqct.hip.options import DEFAULT_BONE_THRESHOLD_MG_CM3, FEMUR_LABELS
from boneqct.io import volume_from_sitk, volume_to_sitk
from boneqct.volume import Volume

#: CT number above which a voxel is metal (HU): dense cortical bone stays below ~2000 HU.
METAL_THRESHOLD_HU = 2500.0
#: Metal volume (cm3) in or on the femur from which the side is refused.
METAL_MIN_VOLUME_CM3 = 0.05
#: Smallest femur component (cm3) taken for a femur without a seed or labels.
MIN_FEMUR_VOLUME_CM3 = 20.0


def side_unit_x(side: str) -> float:
    """RAS x sign of a side: the patient's left is -x (RAS: +x is the patient's right)."""
    if side not in ("left", "right"):
        raise HipError(f"The side must be 'left' or 'right', not '{side}'.")
    return -1.0 if side == "left" else 1.0


def voxel_centers_ras(volume: Volume, kji: np.ndarray) -> np.ndarray:
    """RAS (mm) of voxels given as an (N, 3) array of (k, j, i) indices."""
    kji = np.asarray(kji)
    m = volume.ijk_to_ras  # i, j, k columns added one by one: fast for many points
    return (kji[:, 2, None] * m[:3, 0] + kji[:, 1, None] * m[:3, 1] + kji[:, 0, None] * m[:3, 2]
            + m[:3, 3])


def patient_midline_x_mm(volume_hu: Volume) -> float:
    """RAS x of the patient's midline: the body's centre when the body lies within the field
    of view left to right, else 0 (the scanner isocentre, where the patient is centred)."""
    body = volume_hu.array_kji[volume_hu.array_kji.shape[0] // 2] > -500
    columns = np.flatnonzero(body.any(axis=0))
    if columns.size == 0 or columns[0] == 0 or columns[-1] == body.shape[1] - 1:
        return 0.0
    rows, cols = np.nonzero(body)
    k = volume_hu.array_kji.shape[0] // 2
    kji = np.column_stack([np.full(rows.size, k), rows, cols])
    return float(voxel_centers_ras(volume_hu, kji)[:, 0].mean())


def crop_volume(volume: Volume, box: tuple[slice, slice, slice]) -> Volume:
    """The sub-volume of a KJI index box (a view of the voxels), with its own IJK->RAS."""
    m = volume.ijk_to_ras.copy()
    m[:3, 3] = volume.ijk_to_ras_points([[box[2].start, box[1].start, box[0].start]])[0]
    return Volume(volume.array_kji[box], m, volume.metadata)


def side_box(volume: Volume, side: str, midline_x_mm: float) -> tuple[slice, slice, slice]:
    """KJI index box of every voxel on ``side`` of the midline, with all the slices.

    RAS x is affine in (i, j, k), so an index along one axis has a voxel on the side when the
    largest signed x over the other two axes is beyond the midline.
    """
    sign = side_unit_x(side)
    a = sign * volume.ijk_to_ras[0, :3]
    d = sign * (volume.ijk_to_ras[0, 3] - midline_x_mm)
    sizes = volume.size_ijk
    best = [max(0.0, a[n] * (sizes[n] - 1)) for n in range(3)]
    ranges = []
    for axis in range(2):  # i, j; k is kept whole (the scan's ends are checked on it)
        reach = a[axis] * np.arange(sizes[axis]) + d + sum(best) - best[axis]
        inside = np.flatnonzero(reach > 0)
        if inside.size == 0:
            raise FemurNotFoundError(
                f"No bone was found on the requested side: the scan holds nothing on the {side} "
                "side of the patient's midline. Check the side and that the scan covers the hip.")
        ranges.append(slice(int(inside[0]), int(inside[-1]) + 1))
    return (slice(0, sizes[2]), ranges[1], ranges[0])


def _side_mask(volume: Volume, side: str, midline_x_mm: float) -> np.ndarray:
    """KJI mask (possibly a broadcast view) of the voxels on the chosen side of the midline."""
    nk, nj, ni = volume.array_kji.shape
    m = volume.ijk_to_ras[0]
    x_ji = (m[0] * np.arange(ni, dtype=np.float32)[None, :] + m[1] * np.arange(nj, dtype=np.float32)[:, None]
            + np.float32(m[3] - midline_x_mm))
    sign = side_unit_x(side)
    if m[2] == 0.0:  # x does not change from slice to slice
        return np.broadcast_to(sign * x_ji > 0, (nk, nj, ni))
    x = x_ji[None] + np.float32(m[2]) * np.arange(nk, dtype=np.float32)[:, None, None]
    return sign * x > 0


def bone_threshold_hu(calibration, bone_threshold_mg_cm3: float, k_index: np.ndarray) -> np.ndarray:
    """CT number (HU) of the bone threshold per slice: BMD > threshold <=> HU > this."""
    slope, intercept = calibration.coefficients_at(k_index)
    return slope * bone_threshold_mg_cm3 + intercept


def bmd_of_box(volume_hu: Volume, calibration, k0: int = 0) -> Volume:
    """BMD (mg/cm3, float32) of a sub-volume of the CT whose first slice is the CT's ``k0``
    (a per-slice calibration is applied with the CT's slice indices)."""
    nk = volume_hu.array_kji.shape[0]
    k_index = np.arange(k0, k0 + nk) if calibration.per_slice is not None else None
    bmd = Volume(calibration.hu_to_bmd(volume_hu.array_kji, k_index=k_index), volume_hu.ijk_to_ras,
                 {**volume_hu.metadata, "units": f"mg {calibration.material}/cm3"})
    return bmd


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Face-connected components (labels KJI, count)."""
    return ndimage.label(mask)


def _pick_femur(labels: np.ndarray, n: int, volume: Volume, seed_ras_mm) -> int:
    """Label of the femur component: the seed's, or the large one reaching lowest in z (of
    those reaching as low, the one whose top is lowest)."""
    voxel_cm3 = float(np.prod(volume.spacing_mm)) / 1000.0
    if seed_ras_mm is not None:
        i, j, k = np.rint(volume.ras_to_ijk_points(seed_ras_mm)[0]).astype(int)
        inside = all(0 <= a < s for a, s in zip((k, j, i), labels.shape, strict=True))
        if inside:
            radius = 3
            box = labels[max(k - radius, 0):k + radius + 1, max(j - radius, 0):j + radius + 1,
                         max(i - radius, 0):i + radius + 1]
            found = np.bincount(box[box > 0].ravel(), minlength=n + 1)
            if found.any():
                return int(np.argmax(found))
        raise FemurNotFoundError(
            "The seed point is not in bone on the requested side. Place it inside the femoral "
            "head or neck of that side, or leave it out to find the femur automatically.")
    sizes = np.bincount(labels[labels > 0], minlength=n + 1)  # bone voxels only: fast
    sizes[0] = 0
    big = np.flatnonzero(sizes * voxel_cm3 >= MIN_FEMUR_VOLUME_CM3)
    if big.size == 0:
        raise FemurNotFoundError(
            "No femur was found on the requested side: no bone large enough for a proximal "
            "femur lies there. Check the side and that the scan covers the hip, or give a seed "
            "point in the femoral head.")
    slices = ndimage.find_objects(labels)
    bottom_z, top_z = [], []
    for label in big:
        k_range = slices[label - 1][0]
        ends = [volume.ijk_to_ras_points([[0, 0, k]])[0, 2] for k in (k_range.start, k_range.stop - 1)]
        bottom_z.append(min(ends))
        top_z.append(max(ends))
    # several reach the scan's lower end (the shaft cut just below the lesser trochanter, and
    # the ischium): the femur's top is its head, below the pelvis rising out of the scan
    lowest = np.flatnonzero(np.asarray(bottom_z) <= min(bottom_z) + float(volume.spacing_mm[2]))
    return int(big[lowest[int(np.argmin(np.asarray(top_z)[lowest]))]])


def _fill(mask: np.ndarray, spacing_ijk_mm: np.ndarray, closing_mm: float) -> np.ndarray:
    """Close the cortical shell, then fill holes in 3D and in each axial slice (the shaft's
    marrow is open where the scan ends)."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in spacing_ijk_mm))
    radius = [max(1, int(round(closing_mm / s))) for s in spacing_ijk_mm]
    closed = sitk.BinaryMorphologicalClosing(image, radius, sitk.sitkBall)
    filled = sitk.GetArrayFromImage(sitk.BinaryFillhole(closed)).astype(bool)
    padded = np.pad(filled, ((1, 1), (0, 0), (0, 0)))
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_fill_holes(padded, structure=in_plane)[1:-1] | mask


def mask_box(mask: np.ndarray, margin: int = 3) -> tuple[slice, ...]:
    """Bounding box of a mask with a margin, clipped to the array."""
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    return tuple(slice(max(b.start - margin, 0), min(b.stop + margin, n))
                 for b, n in zip(box, mask.shape, strict=True))


def femur_component(volume_hu: Volume, calibration, side: str, seed_ras_mm=None,
                    bone_threshold_mg_cm3: float = DEFAULT_BONE_THRESHOLD_MG_CM3,
                    midline_x_mm: float = 0.0) -> np.ndarray:
    """KJI mask of the thresholded femur (cortex and dense trabecular bone, not filled) on the
    ``side`` of ``midline_x_mm`` (RAS x, see ``patient_midline_x_mm``).

    Bone is BMD above ``bone_threshold_mg_cm3``, tested as HU above the threshold's CT number
    under ``calibration`` (per slice when the calibration is), so the CT is not converted.
    ``volume_hu`` holds whole slices (k from 0): pass the CT or a ``side_box`` crop of it.
    """
    nk = volume_hu.array_kji.shape[0]
    threshold_hu = bone_threshold_hu(calibration, bone_threshold_mg_cm3, np.arange(nk))
    if calibration.per_slice is None:
        bone = volume_hu.array_kji > float(threshold_hu[0])
    else:
        bone = volume_hu.array_kji > threshold_hu[:, None, None]
    bone &= _side_mask(volume_hu, side, midline_x_mm)
    labels, n = _components(bone)
    if n == 0:
        raise FemurNotFoundError(
            "No bone was found on the requested side. Check the side and the calibration "
            "(BMD map), and that the scan covers the hip.")
    return labels == _pick_femur(labels, n, volume_hu, seed_ras_mm)


def femur_from_labels(labels: Volume, grid: Volume, side: str,
                      scheme: str = "totalsegmentator") -> np.ndarray:
    """KJI mask of the side's femur from a label map, resampled (nearest) onto ``grid`` and
    grown by one voxel (a label drawn at the surface misses the blurred edge's mineral)."""
    value = FEMUR_LABELS[scheme][side]
    same_grid = (labels.array_kji.shape == grid.array_kji.shape
                 and np.allclose(labels.ijk_to_ras, grid.ijk_to_ras, atol=1e-4))
    if not same_grid:
        resampled = sitk.Resample(volume_to_sitk(labels), volume_to_sitk(grid.with_array(
            np.zeros(grid.array_kji.shape, np.uint8))), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        labels = volume_from_sitk(resampled)
    mask = labels.array_kji == value
    if mask.any():  # include the mineral the PSF spreads just outside a surface-tight label
        box = mask_box(mask, 2)
        mask[box] = ndimage.binary_dilation(mask[box], structure=ndimage.generate_binary_structure(3, 1))
    else:
        raise FemurNotFoundError(
            f"The label map has no {side} femur (label {value} in the {scheme} numbering). "
            "Give the label map of the femur of that side, or use a seed point instead.")
    return mask


def check_no_metal(volume_hu: Volume, femur_mask_kji: np.ndarray, side: str,
                   margin_mm: float = 3.0) -> None:
    """Refuse a femur that holds or touches metal (an implant).

    Raises:
        ImplantError: metal (> ``METAL_THRESHOLD_HU``) of more than ``METAL_MIN_VOLUME_CM3``
            within ``margin_mm`` of the femur.
    """
    box = mask_box(femur_mask_kji, int(np.ceil(margin_mm / volume_hu.spacing_mm.min())) + 1)
    near = ndimage.binary_dilation(femur_mask_kji[box], iterations=max(
        1, int(round(margin_mm / volume_hu.spacing_mm.min()))))
    metal_cm3 = float(np.count_nonzero(near & (volume_hu.array_kji[box] > METAL_THRESHOLD_HU))
                      * np.prod(volume_hu.spacing_mm) / 1000.0)
    if metal_cm3 >= METAL_MIN_VOLUME_CM3:
        raise ImplantError(
            f"Metal ({metal_cm3:.1f} cm3 above {METAL_THRESHOLD_HU:g} HU) was found in the {side} "
            "femur: a hip implant or fixation. CTXA cannot measure a femur with metal; that side "
            "is refused. Measure the other hip.")


def fill_femur(mask_kji: np.ndarray, spacing_ijk_mm: np.ndarray,
               closing_mm: float = 1.0) -> np.ndarray:
    """The femur's periosteal volume: cortex closed, trabecular bone and marrow filled."""
    box = mask_box(mask_kji, int(np.ceil(2 * closing_mm / min(spacing_ijk_mm))) + 2)
    out = np.zeros_like(mask_kji, dtype=bool)
    out[box] = _fill(mask_kji[box], np.asarray(spacing_ijk_mm), closing_mm)
    return out


def cut_at_joint_space(mask_kji: np.ndarray, volume: Volume, head_center_ras_mm: np.ndarray,
                       head_radius_mm: float, neck_axis_ras: np.ndarray,
                       gap_mm: float = 1.0, neck_cone_deg: float = 60.0) -> np.ndarray:
    """Remove what lies outside the head sphere (radius + ``gap_mm``) away from the neck.

    The joint space surrounds the head; anything of the mask beyond it, outside a cone of
    ``neck_cone_deg`` about the neck axis (pointing from the head to the neck), is acetabulum
    or pelvis. The component holding the head centre is kept.
    """
    box = mask_box(mask_kji, 0)
    kji = np.argwhere(mask_kji[box]) + [b.start for b in box]
    d = voxel_centers_ras(volume, kji) - head_center_ras_mm
    dist = np.linalg.norm(d, axis=1)
    cos_neck = d @ neck_axis_ras / np.maximum(dist, 1e-9)
    outside = (dist > head_radius_mm + gap_mm) & (cos_neck < np.cos(np.radians(neck_cone_deg)))
    outside &= dist < head_radius_mm + 25.0  # the acetabulum, not the trochanter or shaft
    cut = mask_kji.copy()
    cut[tuple(kji[outside].T)] = False
    labels, _ = _components(cut)
    i, j, k = np.rint(volume.ras_to_ijk_points(head_center_ras_mm)[0]).astype(int)
    keep = labels[k, j, i]
    return labels == keep if keep else cut


__all__ = ["DEFAULT_BONE_THRESHOLD_MG_CM3", "FEMUR_LABELS", "bmd_of_box", "bone_threshold_hu",
           "check_no_metal", "crop_volume", "mask_box", "cut_at_joint_space", "femur_component",
           "femur_from_labels", "fill_femur", "patient_midline_x_mm", "side_box", "side_unit_x",
           "voxel_centers_ras"]
