"""Anatomical frame of the proximal femur and the rotation to the DXA position.

Head: sphere fitted (scipy least squares, robust loss) to the periosteal surface around the
largest inscribed sphere of the upper femur. Shaft: line through the centroids of axial
cross-sections of the femur well below the lesser trochanter. Neck: from the head centre
through the centroid of the femur in a spherical shell just beyond the head.

DXA position (what a technologist does with internal rotation of the leg): the shaft is
vertical in the image and the neck axis parallel to the image plane; the projection runs
antero-posteriorly, perpendicular to both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize

from boneqct.hip.errors import TruncatedFemurError
from boneqct.hip.extraction import voxel_centers_ras
from boneqct.volume import Volume

#: Shaft cross-sections fitted for the shaft axis, distance below the head centre (mm): below
#: the lesser trochanter of an adult femur (placeholder, about 3.5-5 head radii).
SHAFT_FIT_BELOW_HEAD_MM = (90.0, 115.0)
#: Shell beyond the head surface (mm) whose femur voxels give the neck direction.
NECK_SHELL_MM = (4.0, 14.0)


@dataclass(frozen=True)
class FemurFrame:
    """Anatomical frame (RAS mm; unit vectors in RAS).

    Attributes:
        head_center_ras_mm, head_radius_mm: fitted head sphere; ``head_fit_rms_mm`` its RMS
            residual.
        neck_axis_ras: unit vector from the head centre along the neck (laterally).
        shaft_axis_ras: unit vector along the shaft, towards the head (superior).
        shaft_point_ras_mm: a point on the shaft axis.
        neck_shaft_angle_deg: angle between the neck (towards the head) and the shaft
            (distally), typically 125-135.
        anteversion_deg: angle of the neck axis out of the scanner's coronal plane, about the
            shaft (positive: head anterior); the knee is not in the scan, so this is relative
            to the scanner, not the condylar axis.
        neck_length_mm: head centre to the neck and shaft axes' closest approach.
    """

    head_center_ras_mm: np.ndarray
    head_radius_mm: float
    head_fit_rms_mm: float
    neck_axis_ras: np.ndarray
    shaft_axis_ras: np.ndarray
    shaft_point_ras_mm: np.ndarray
    neck_shaft_angle_deg: float
    anteversion_deg: float
    neck_length_mm: float

    def dxa_axes_ras(self) -> np.ndarray:
        """3x3 matrix whose columns are the DXA image's right-going axis (towards the patient's
        left, as on an antero-posterior film), its up axis (the shaft) and the beam's direction
        (posterior to anterior)."""
        up = self.shaft_axis_ras
        to_head = -self.neck_axis_ras
        medial = to_head - (to_head @ up) * up
        beam = np.cross(up, medial)
        beam /= np.linalg.norm(beam)
        if beam[1] < 0:
            beam = -beam
        right = np.cross(beam, up)
        if right[0] > 0:
            right = -right
        return np.column_stack([right, up, beam])

    def dxa_rotation_ras(self) -> np.ndarray:
        """4x4 RAS transform about the head centre that brings the femur to the DXA position:
        the image's right axis to -x (patient left), the shaft to +z, the beam to +y."""
        rotation = np.column_stack([[-1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]]) @ self.dxa_axes_ras().T
        m = np.eye(4)
        m[:3, :3] = rotation
        m[:3, 3] = self.head_center_ras_mm - rotation @ self.head_center_ras_mm
        return m

    def to_dict(self) -> dict:
        return {"head_center_ras_mm": self.head_center_ras_mm.tolist(),
                "head_radius_mm": self.head_radius_mm, "head_fit_rms_mm": self.head_fit_rms_mm,
                "neck_axis_ras": self.neck_axis_ras.tolist(),
                "shaft_axis_ras": self.shaft_axis_ras.tolist(),
                "shaft_point_ras_mm": self.shaft_point_ras_mm.tolist(),
                "neck_shaft_angle_deg": self.neck_shaft_angle_deg,
                "anteversion_deg": self.anteversion_deg, "neck_length_mm": self.neck_length_mm}


def fit_sphere(points_mm: np.ndarray, center0_mm: np.ndarray, radius0_mm: float,
               loss_scale_mm: float = 1.0) -> tuple[np.ndarray, float, float]:
    """Robust least-squares sphere (soft-L1 loss) through (N, 3) points: centre, radius, RMS."""
    def residuals(x):
        return np.linalg.norm(points_mm - x[:3], axis=1) - x[3]

    fit = optimize.least_squares(residuals, np.r_[center0_mm, radius0_mm], loss="soft_l1",
                                 f_scale=loss_scale_mm)
    rms = float(np.sqrt(np.mean(np.square(residuals(fit.x)))))
    return fit.x[:3], float(fit.x[3]), rms


def _surface_points(mask: np.ndarray, volume: Volume, box) -> np.ndarray:
    """RAS of the mask's surface voxels inside ``box``."""
    sub = mask[box]
    surface = sub & ~ndimage.binary_erosion(sub)
    return voxel_centers_ras(volume, np.argwhere(surface) + [b.start for b in box])


def _head(mask: np.ndarray, volume: Volume) -> tuple[np.ndarray, float, float]:
    """Head sphere: start at the deepest point of the upper femur, fit its surface."""
    spacing_kji = volume.spacing_mm[::-1]
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    # the upper part of the femur in RAS z: slices nearest the top of the femur
    z_of_k = volume.ijk_to_ras_points([[0, 0, box[0].start], [0, 0, box[0].stop - 1]])[:, 2]
    top_first = z_of_k[0] > z_of_k[1]
    n_top = int(np.ceil(70.0 / spacing_kji[0]))
    ks = slice(box[0].start, min(box[0].start + n_top, box[0].stop)) if top_first else \
        slice(max(box[0].stop - n_top, box[0].start), box[0].stop)
    upper = (ks, box[1], box[2])
    depth = ndimage.distance_transform_edt(np.pad(mask[upper], 1), sampling=spacing_kji)[1:-1, 1:-1, 1:-1]
    peak = np.unravel_index(np.argmax(depth), depth.shape)
    center0 = voxel_centers_ras(volume, np.array([peak]) + [b.start for b in upper])[0]
    radius0 = float(depth[peak])
    points = _surface_points(mask, volume, upper)
    center, radius = center0, radius0
    for _ in range(3):
        dist = np.linalg.norm(points - center, axis=1)
        near = points[np.abs(dist - radius) < max(3.0, 0.25 * radius)]
        center, radius, rms = fit_sphere(near, center, radius)
    return center, radius, rms


def _shaft(mask: np.ndarray, volume: Volume, head_center_ras_mm: np.ndarray,
           below_head_mm=SHAFT_FIT_BELOW_HEAD_MM) -> tuple[np.ndarray, np.ndarray]:
    """Shaft axis (unit, superior) and a point on it from axial cross-section centroids."""
    nk = mask.shape[0]
    z_k = volume.ijk_to_ras_points(np.column_stack([np.zeros(nk), np.zeros(nk), np.arange(nk)]))[:, 2]
    depth_mm = head_center_ras_mm[2] - z_k
    ks = np.flatnonzero((depth_mm >= below_head_mm[0]) & (depth_mm <= below_head_mm[1]))
    centroids = []
    for k in ks:
        jj, ii = np.nonzero(mask[k])
        if jj.size:
            centroids.append(volume.ijk_to_ras_points([[ii.mean(), jj.mean(), k]])[0])
    needed = 0.8 * (below_head_mm[1] - below_head_mm[0]) / volume.spacing_mm[2]
    if len(centroids) < max(needed, 3):
        reach = float(depth_mm[np.flatnonzero(mask.any(axis=(1, 2)))].max())
        raise TruncatedFemurError(
            f"The proximal femur is truncated: the scan reaches {reach:.0f} mm below the femoral "
            f"head centre, and the analysis needs the shaft down to {below_head_mm[1]:.0f} mm "
            "(below the lesser trochanter, for the shaft axis and the total hip region). Use a "
            "scan that covers the proximal femur to below the lesser trochanter.")
    centroids = np.asarray(centroids)
    mean = centroids.mean(axis=0)
    _, _, vt = np.linalg.svd(centroids - mean)
    axis = vt[0] if vt[0][2] > 0 else -vt[0]
    return axis, mean


def _neck_axis(mask: np.ndarray, volume: Volume, center: np.ndarray, radius: float,
               shaft_axis: np.ndarray) -> np.ndarray:
    """Unit vector from the head centre through the centroid of the neck just beyond the head."""
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    kji = np.argwhere(mask[box]) + [b.start for b in box]
    d = voxel_centers_ras(volume, kji) - center
    dist = np.linalg.norm(d, axis=1)
    shell = d[(dist >= radius + NECK_SHELL_MM[0]) & (dist <= radius + NECK_SHELL_MM[1])]
    axis = -shaft_axis  # the neck runs distally from the head
    for cone_deg in (80.0, 45.0, 35.0):
        direction = shell / np.linalg.norm(shell, axis=1, keepdims=True)
        chosen = shell[direction @ axis >= np.cos(np.radians(cone_deg))]
        if len(chosen) == 0:
            break
        axis = chosen.mean(axis=0)
        axis /= np.linalg.norm(axis)
    return axis


def check_head_in_scan(mask_kji: np.ndarray, volume: Volume) -> None:
    """Refuse a femur that reaches the scan's superior end slice (head cut off)."""
    nk = mask_kji.shape[0]
    z_ends = volume.ijk_to_ras_points([[0, 0, 0], [0, 0, nk - 1]])[:, 2]
    if mask_kji[0 if z_ends[0] > z_ends[1] else nk - 1].any():
        raise TruncatedFemurError(
            "The proximal femur is truncated: the femoral head reaches the end of the scan. "
            "Use a scan that covers the whole femoral head and the acetabulum.")


def femur_frame(mask_kji: np.ndarray, volume: Volume) -> FemurFrame:
    """Fit the anatomical frame of a filled femur mask on ``volume``'s grid."""
    center, radius, rms = _head(mask_kji, volume)
    shaft_axis, shaft_point = _shaft(mask_kji, volume, center)
    neck_axis = _neck_axis(mask_kji, volume, center, radius, shaft_axis)
    nsa = float(np.degrees(np.arccos(np.clip(-neck_axis @ -shaft_axis, -1, 1))))
    to_head = -neck_axis
    medial = to_head - (to_head @ shaft_axis) * shaft_axis
    medial /= np.linalg.norm(medial)
    anteversion = float(np.degrees(np.arcsin(np.clip(medial[1], -1, 1))))
    # closest approach of the neck line (centre + t * neck) to the shaft line
    w = center - shaft_point
    b = neck_axis @ shaft_axis
    t = (b * (w @ shaft_axis) - (w @ neck_axis)) / max(1 - b * b, 1e-9)
    return FemurFrame(center, radius, rms, neck_axis, shaft_axis, shaft_point, nsa, anteversion,
                      float(t))


__all__ = ["FemurFrame", "check_head_in_scan", "femur_frame", "fit_sphere"]
