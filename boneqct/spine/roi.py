"""Trabecular ROI of a delineated vertebral body: mid-height elliptic cylinder or 3D interior.

Elliptic cylinder (QCT spine ROI, docs/domain.md section 3): axis along the body axis, centred on
the trabecular interior's mid-height, ``thickness_mm`` thick. In the body's frame (u to the
side, v anterior) the ellipse, aligned with u and v, is the largest one whose cylinder holds
only trabecular voxels at least ``margin_mm`` from the inner cortical boundary, and that stays
anterior of the basivertebral vein: its posterior edge lies at least ``VEIN_FRACTION`` of the
trabecular antero-posterior depth (measured along the midline in the slab) in front of the
posterior inner cortex, so the ROI excludes the posterior third of the body where the vein
and its channels enter, and its centre lies anterior of the body centre.
The mask holds the CT voxels whose centres lie inside the analytic cylinder (exact on any grid).

"trabecular-3d": every trabecular voxel at least ``margin_mm`` from the inner cortex.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from boneqct.errors import SpineError
from boneqct.spine.local_grid import bounding_box
from boneqct.spine.options import MARGIN_MM, ROI_KINDS, ROI_THICKNESS_MM
from boneqct.spine.types import VertebralBody, VertebralROI, mask_on_grid
from boneqct.volume import Volume

#: Posterior part of the trabecular depth excluded for the basivertebral vein (fraction).
VEIN_FRACTION = 1.0 / 3.0
#: Half-width (mm) of the midline band where the antero-posterior depth is measured.
MIDLINE_HALF_WIDTH_MM = 5.0
#: Ellipse aspect ratios (side / antero-posterior semi-axis) tried.
ASPECT_RATIOS = np.arange(1.0, 3.01, 0.1)
#: Smallest ROI volume (cm3) accepted.
MIN_ROI_CM3 = 0.3


def _largest_ellipse(forbidden_uv, u0, v_lim, v_max):
    """Largest axis-aligned ellipse avoiding points, above v_lim: (u_c, v_c, a, b) in mm."""
    v_centres = np.arange(v_lim, v_max, 0.5)
    if not len(v_centres) or not len(forbidden_uv):
        return None
    best = (0.0, None)
    dv2 = (forbidden_uv[None, :, 1] - v_centres[:, None]) ** 2  # (centre, point)
    for u_c in u0 + np.arange(-3.0, 3.01, 1.0):
        du = forbidden_uv[:, 0] - u_c
        # scale of the ellipse (b = scale, a = ratio * scale) reaching the nearest point
        scale2 = ((du[None, :] / ASPECT_RATIOS[:, None]) ** 2)[None, :, :] + dv2[:, None, :]
        b = np.minimum(0.999 * np.sqrt(scale2.min(axis=2)), (v_centres - v_lim)[:, None])
        area = ASPECT_RATIOS[None, :] * b**2  # (centre, ratio)
        n_v, n_ratio = np.unravel_index(int(np.argmax(area)), area.shape)
        if area[n_v, n_ratio] > best[0]:
            best = (area[n_v, n_ratio], (u_c, v_centres[n_v], ASPECT_RATIOS[n_ratio]
                                         * b[n_v, n_ratio], b[n_v, n_ratio]))
    return best[1]


def _body_frame_coordinates(volume: Volume, box_kji, center_ras_mm, directions_ras):
    """Coordinates (mm) of a box's CT voxel centres along unit directions from a centre, as
    arrays broadcastable to the box's shape (one per direction)."""
    start_ijk = np.array([s.start for s in box_kji[::-1]], float)
    origin = volume.ijk_to_ras_points(start_ijk)[0] - center_ras_mm
    steps_ras = volume.ijk_to_ras[:3, :3]  # columns: RAS step of i, j, k
    ranges_kji = [np.arange(s.stop - s.start, dtype=float) for s in box_kji]
    out = []
    for direction in directions_ras:
        step_ijk = direction @ steps_ras
        out.append(origin @ direction + step_ijk[2] * ranges_kji[0][:, None, None]
                   + step_ijk[1] * ranges_kji[1][None, :, None]
                   + step_ijk[0] * ranges_kji[2][None, None, :])
    return out


def _within(body: VertebralBody, box_kji) -> np.ndarray:
    """The body's trabecular interior on the CT grid (within the label, if one was given),
    cut to a box (slices k, j, i) of the grid."""
    return mask_on_grid(body.box_kji, body.trabecular_in_box, body.grid_shape_kji)[box_kji]


def place_roi(volume_hu: Volume, body: VertebralBody, thickness_mm: float = ROI_THICKNESS_MM,
              margin_mm: float = MARGIN_MM,
              kind: str = "elliptic-cylinder") -> VertebralROI:
    """Place the trabecular ROI of a body on the CT grid.

    The region is found on the body's isotropic working grid, where the interior was
    delineated on the linearly interpolated CT: its edge is where the voxel values
    themselves rise towards the cortex, so a coarse voxel blurred by the cortex lies outside
    it, and the margin (mm) is kept at sub-voxel precision whatever the CT's voxel size. The
    CT mask then holds the voxels whose centres lie in the region (exact on any grid).

    Args:
        volume_hu: the CT the body was delineated on (its grid and IJK->RAS).
        body: the delineated body (masks on the CT and working grids, centre, axis, anterior).
        thickness_mm: cylinder thickness along the body axis (mm).
        margin_mm: least distance (mm) from the inner cortical boundary.
        kind: "elliptic-cylinder" or "trabecular-3d".

    Raises:
        SpineError: the body leaves too little trabecular bone for the ROI.
    """
    if kind not in ROI_KINDS:
        raise ValueError(f"kind must be one of {ROI_KINDS}")
    grid = body.work_grid
    interior = body.trabecular_on_work_grid
    if not interior.any() or not body.trabecular_in_box.any():
        raise SpineError(f"{body.level}: no trabecular bone delineated; check the seed.")
    fine_box = bounding_box(interior, pad=2)
    inner = interior[fine_box]
    fine = Volume(inner, grid.ijk_to_ras)
    fine.ijk_to_ras[:3, 3] = grid.kji_to_ras(np.array([[s.start for s in fine_box]]))[0]
    whole_fine = tuple(slice(0, n) for n in inner.shape)
    # distance of each voxel centre to the inner boundary (half a voxel inside the centres
    # of the outermost interior voxels)
    depth_mm = ndimage.distance_transform_edt(inner) * grid.spacing_mm - 0.5 * grid.spacing_mm
    # the CT box: the body's box grown by a voxel, clipped to the grid
    box = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n))
                for s, n in zip(body.box_kji, body.grid_shape_kji, strict=True))
    warnings: list[str] = []
    if kind == "trabecular-3d":
        allowed = np.zeros_like(interior)
        allowed[fine_box] = inner & (depth_mm >= margin_mm)
        if not allowed.any():
            raise SpineError(f"{body.level}: no trabecular bone {margin_mm:g} mm from the "
                             "cortex; the body may be fractured or deformed.")
        box, (roi_in_box,) = grid.masks_to_ct_box([allowed], volume_hu)
        roi_in_box &= _within(body, box)
        center_ras = body.center_ras_mm.copy()
        semi_axes, thickness = None, None
    else:
        axis, anterior = body.axis_ras, body.anterior_ras
        allowed = inner & (depth_mm >= margin_mm)
        side = np.cross(axis, anterior)
        directions = (side, anterior, axis)
        u, v, w = _body_frame_coordinates(fine, whole_fine, body.center_ras_mm, directions)
        w_lo, w_hi = np.percentile(w[inner], [0.5, 99.5])
        w_mid = 0.5 * (w_lo + w_hi)
        slab = np.abs(w - w_mid) <= thickness_mm / 2.0
        midline = slab & inner & (np.abs(u) <= MIDLINE_HALF_WIDTH_MM)
        usable = slab & allowed
        if midline.sum() < 10 or usable.sum() < 10:
            raise SpineError(f"{body.level}: too little trabecular bone at mid-height for a "
                             f"{thickness_mm:g} mm ROI with a {margin_mm:g} mm margin; the body "
                             "may be fractured or deformed. Exclude this level.")
        v_post, v_ant = np.percentile(v[midline], [1.0, 99.0])
        v_lim = v_post + VEIN_FRACTION * (v_ant - v_post)
        edge = slab & ~allowed & ndimage.binary_dilation(allowed, np.ones((3, 3, 3), bool))
        forbidden_uv = np.column_stack([u[edge], v[edge]])
        front = usable & (v >= v_lim)
        if not front.any():
            raise SpineError(f"{body.level}: no trabecular bone anterior of the basivertebral "
                             "vein region; the body may be fractured or deformed.")
        ellipse = _largest_ellipse(forbidden_uv, float(np.median(u[front])), v_lim,
                                   float(v[front].max()))
        if ellipse is None:
            raise SpineError(f"{body.level}: no room for an ROI in the trabecular bone.")
        u_c, v_c, a, b = ellipse
        u, v, w = _body_frame_coordinates(volume_hu, box, body.center_ras_mm, directions)
        roi_in_box = (np.abs(w - w_mid) <= thickness_mm / 2.0) & (
            ((u - u_c) / a) ** 2 + ((v - v_c) / b) ** 2 <= 1.0)
        center_ras = body.center_ras_mm + u_c * side + v_c * anterior + w_mid * axis
        semi_axes, thickness = (float(a), float(b)), float(thickness_mm)
    voxel_cm3 = float(abs(np.linalg.det(volume_hu.ijk_to_ras[:3, :3]))) / 1000.0
    n_voxels = int(np.count_nonzero(roi_in_box))
    if n_voxels * voxel_cm3 < MIN_ROI_CM3:
        raise SpineError(f"{body.level}: the ROI would hold only {n_voxels} voxels "
                         f"({n_voxels * voxel_cm3:.2f} cm3 < {MIN_ROI_CM3} cm3); the body is "
                         "too small or damaged for a trabecular ROI at this voxel size. Check "
                         "the seed, or give a finer reconstruction.")
    return VertebralROI(level=body.level, kind=kind,
                        mask_kji=mask_on_grid(box, roi_in_box, body.grid_shape_kji),
                        center_ras_mm=center_ras, axis_ras=body.axis_ras.copy(),
                        semi_axes_mm=semi_axes, thickness_mm=thickness, warnings=warnings,
                        box_kji=box)
