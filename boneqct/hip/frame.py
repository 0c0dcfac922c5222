"""Anatomical frame of the proximal femur and the rotation to the DXA position.

Head: sphere fitted (scipy least squares, robust loss) to the periosteal surface around the
largest inscribed sphere of the femur. Shaft: line through the centroids of axial
cross-sections of the femur well below the lesser trochanter (on a scan that ends above that
range, a shorter segment below the total hip's distal border, or a refusal naming the shaft
present and needed). Neck: from the head centre
through the centroid of the femur in a spherical shell just beyond the head.

DXA position (what a technologist does with internal rotation of the leg): the shaft is
vertical in the image and the neck axis parallel to the image plane; the projection runs
antero-posteriorly, perpendicular to both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize

from boneqct.errors import FusedFemurError, TruncatedFemurError
from boneqct.hip.extraction import voxel_centers_ras
from boneqct.volume import Volume

#: Shaft cross-sections fitted for the shaft axis, distance below the head centre (mm): below
#: the lesser trochanter of an adult femur (placeholder, about 3.5-5 head radii).
SHAFT_FIT_BELOW_HEAD_MM = (90.0, 115.0)
#: Shortest shaft segment (mm) below the total hip's distal border on which the shaft axis is
#: fitted when the scan ends above ``SHAFT_FIT_BELOW_HEAD_MM``'s lower end (measured on the
#: digital femur phantom, Testing/test_hip_refusals.py; not verified on patient scans).
MIN_SHAFT_FIT_MM = 10.0
#: Margin (mm) beyond the head's medial edge from which femur-mask bone is pelvis, and the
#: volume (cm3) of such bone from which the femur counts as fused with the pelvis (chosen on
#: the digital phantom: a joint space bridged by the threshold leaves none; not verified).
FUSED_MEDIAL_MARGIN_MM = 3.0
FUSED_MIN_VOLUME_CM3 = 0.5
#: Height (mm) of the top of a femur reaching the scan's upper end searched for its head
#: (below about 1.5 head radii the trochanter is thicker than a head cut near its centre).
HEAD_SEARCH_TOP_MM = 30.0
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
        shaft_fit_below_head_mm: depths below the head centre (mm) between which the shaft
            axis was fitted (shorter than ``SHAFT_FIT_BELOW_HEAD_MM`` on a short scan).
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
    shaft_fit_below_head_mm: tuple[float, float] = SHAFT_FIT_BELOW_HEAD_MM

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
                "anteversion_deg": self.anteversion_deg, "neck_length_mm": self.neck_length_mm,
                "shaft_fit_below_head_mm": list(self.shaft_fit_below_head_mm)}

    @classmethod
    def from_dict(cls, d: dict) -> FemurFrame:
        """Inverse of :meth:`to_dict`."""
        vectors = ("head_center_ras_mm", "neck_axis_ras", "shaft_axis_ras", "shaft_point_ras_mm")
        return cls(**{**d, **{k: np.asarray(d[k], dtype=float) for k in vectors},
                      "shaft_fit_below_head_mm": tuple(d["shaft_fit_below_head_mm"])})


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


def fit_head(mask: np.ndarray, volume: Volume, top_mm: float | None = None
             ) -> tuple[np.ndarray, float, float]:
    """Head sphere (centre RAS mm, radius mm, RMS mm): start at the deepest point of the filled
    femur (the head is its thickest part, also when pelvic bone is joined to it and rises
    above it), or of its highest ``top_mm`` (a head cut by the scan's top is thinner than the
    trochanter), and fit its surface."""
    spacing_kji = volume.spacing_mm[::-1]
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    if top_mm is not None:
        n_top = int(np.ceil(top_mm / spacing_kji[0]))
        ks = slice(box[0].start, min(box[0].start + n_top, box[0].stop)) \
            if superior_end_slice(volume) == 0 else slice(max(box[0].stop - n_top, box[0].start),
                                                         box[0].stop)
        box = (ks, *box[1:])
    depth = ndimage.distance_transform_edt(np.pad(mask[box], 1), sampling=spacing_kji)[1:-1, 1:-1, 1:-1]
    peak = np.unravel_index(np.argmax(depth), depth.shape)
    center0 = voxel_centers_ras(volume, np.array([peak]) + [b.start for b in box])[0]
    radius0 = float(depth[peak])
    # the surface around the deepest point (a cap of 1.5 start radii holds the whole head)
    reach = [int(np.ceil(1.5 * radius0 / s)) + 1 for s in spacing_kji]
    near_box = tuple(slice(max(b.start + c - r, b.start), min(b.start + c + r + 1, b.stop))
                     for b, c, r in zip(box, peak, reach, strict=True))
    points = _surface_points(mask, volume, near_box)
    center, radius = center0, radius0
    for _ in range(3):
        dist = np.linalg.norm(points - center, axis=1)
        near = points[np.abs(dist - radius) < max(3.0, 0.25 * radius)]
        center, radius, rms = fit_sphere(near, center, radius)
    return center, radius, rms


def _depth_below_head_mm(volume: Volume, head_center_ras_mm: np.ndarray) -> np.ndarray:
    """Per slice k: how far (mm, RAS z) the slice lies below the head centre."""
    nk = volume.array_kji.shape[0]
    z_k = volume.ijk_to_ras_points(np.column_stack([np.zeros(nk), np.zeros(nk), np.arange(nk)]))[:, 2]
    return head_center_ras_mm[2] - z_k


def shaft_fit_range_mm(mask: np.ndarray, volume: Volume, head_center_ras_mm: np.ndarray,
                       distal_border_below_head_mm: float) -> tuple[float, float]:
    """Depths below the head centre (mm) between which the shaft axis is fitted.

    ``SHAFT_FIT_BELOW_HEAD_MM`` when the scan covers it; else, when the scan's distal end is
    at least ``MIN_SHAFT_FIT_MM`` below the total hip's distal border, the shaft from that
    border (below the lesser trochanter by the border's definition) to one slice above the
    scan's end.

    Raises:
        TruncatedFemurError: the scan cuts the shaft above that (message: shaft present and
            needed, in mm).
    """
    depth_mm = _depth_below_head_mm(volume, head_center_ras_mm)
    reach_mm = float(depth_mm[np.flatnonzero(mask.any(axis=(1, 2)))].max())
    low, high = SHAFT_FIT_BELOW_HEAD_MM
    if reach_mm >= high:
        return low, high
    end_mm = reach_mm - float(volume.spacing_mm[2])
    present_mm = max(0.0, end_mm - distal_border_below_head_mm)
    if present_mm >= MIN_SHAFT_FIT_MM:
        return distal_border_below_head_mm, end_mm
    needed_mm = distal_border_below_head_mm + MIN_SHAFT_FIT_MM + float(volume.spacing_mm[2])
    raise TruncatedFemurError(
        f"The femoral shaft is cut by the scan's lower end: the femur reaches {reach_mm:.0f} mm "
        f"below the femoral head centre, leaving {present_mm:.1f} mm of shaft below the total "
        f"hip region's distal border ({distal_border_below_head_mm:.0f} mm below the head "
        f"centre); the method needs at least {MIN_SHAFT_FIT_MM:.0f} mm there to fit the shaft "
        f"axis ({high - low:.0f} mm, {low:.0f}-{high:.0f} mm below the head centre, when the "
        "scan reaches that far). The femoral head is inside the scan; it is the distal end "
        f"that is missing. Use a scan that extends at least {needed_mm:.0f} mm below the "
        f"femoral head centre (better {high:.0f} mm), well below the lesser trochanter.")


def _shaft(mask: np.ndarray, volume: Volume, head_center_ras_mm: np.ndarray,
           below_head_mm: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Shaft axis (unit, superior) and a point on it from the centroids of the axial
    cross-sections between ``below_head_mm`` (depths below the head centre, mm)."""
    depth_mm = _depth_below_head_mm(volume, head_center_ras_mm)
    ks = np.flatnonzero((depth_mm >= below_head_mm[0]) & (depth_mm <= below_head_mm[1]))
    centroids = []
    for k in ks:
        jj, ii = np.nonzero(mask[k])
        if jj.size:
            centroids.append(volume.ijk_to_ras_points([[ii.mean(), jj.mean(), k]])[0])
    centroids = np.asarray(centroids)
    mean = centroids.mean(axis=0)
    _, _, vt = np.linalg.svd(centroids - mean)
    axis = vt[0] if vt[0][2] > 0 else -vt[0]
    return axis, mean


def neck_axis(mask: np.ndarray, volume: Volume, center: np.ndarray, radius: float,
              shaft_axis: np.ndarray) -> np.ndarray:
    """Unit vector from the head centre through the centroid of the neck just beyond the head,
    searched in narrowing cones about the distal direction ``-shaft_axis``."""
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


def superior_end_slice(volume: Volume) -> int:
    """Index k of the scan's superior (highest RAS z) end slice."""
    nk = volume.array_kji.shape[0]
    z_ends = volume.ijk_to_ras_points([[0, 0, 0], [0, 0, nk - 1]])[:, 2]
    return 0 if z_ends[0] > z_ends[1] else nk - 1


def check_head_in_scan(volume: Volume, head_center_ras_mm: np.ndarray,
                       head_radius_mm: float) -> None:
    """Refuse a femoral head (fitted sphere) that reaches the scan's superior end slice."""
    top_z = volume.ijk_to_ras_points([[0, 0, superior_end_slice(volume)]])[0, 2]
    above_mm = head_center_ras_mm[2] + head_radius_mm - top_z
    if above_mm > -0.5 * float(volume.spacing_mm[2]):
        raise TruncatedFemurError(
            "The femoral head is cut by the scan's upper end: the fitted head reaches "
            f"{max(above_mm, 0.0):.0f} mm beyond the top slice. Use a scan that covers the whole "
            "femoral head and the acetabulum above it.")


def check_not_fused(mask_kji: np.ndarray, volume: Volume, head_center_ras_mm: np.ndarray,
                    head_radius_mm: float, neck_axis_ras: np.ndarray,
                    bone_threshold_mg_cm3: float) -> None:
    """Refuse a femur mask, already cut from the acetabulum at the joint space, that still
    holds what is not the femur: a mask still reaching the scan's superior end slice is a
    head cut off by the scan that the fit missed (TruncatedFemurError); more than
    ``FUSED_MIN_VOLUME_CM3`` medial to the head (beyond its radius plus
    ``FUSED_MEDIAL_MARGIN_MM``, horizontally away from the neck), where no part of a femur is,
    is pelvic bone joined to it (FusedFemurError)."""
    medial = -neck_axis_ras * [1.0, 1.0, 0.0]
    medial /= np.linalg.norm(medial)
    kji = np.argwhere(mask_kji)
    beyond = (voxel_centers_ras(volume, kji) - head_center_ras_mm) @ medial \
        > head_radius_mm + FUSED_MEDIAL_MARGIN_MM
    medial_cm3 = float(np.count_nonzero(beyond) * np.prod(volume.spacing_mm) / 1000.0)
    if mask_kji[superior_end_slice(volume)].any():  # the head found was not the top of it
        raise TruncatedFemurError(
            "The femoral head is cut by the scan's upper end: the femur still reaches the top "
            "slice where it was cut from the acetabulum (or pelvic bone joined to it does). Use "
            "a scan that covers the whole femoral head and the acetabulum above it; if it does, "
            "give a label map of the femur (--labels).")
    if medial_cm3 > FUSED_MIN_VOLUME_CM3:
        raise FusedFemurError(
            "The femur could not be separated from the pelvis: at the bone threshold of "
            f"{bone_threshold_mg_cm3:g} mg/cm3 it is joined to pelvic bone beyond the joint space "
            f"where the extraction cuts ({medial_cm3:.1f} cm3 of bone medial to the femoral "
            "head). Give a label map of the femur "
            "(--labels, e.g. TotalSegmentator's femur_left/femur_right), or raise the bone "
            "threshold (--bone-threshold-mg-cm3) if a narrow joint space is bridged.")


def femur_frame(mask_kji: np.ndarray, volume: Volume, distal_border_below_head_mm: float
                ) -> FemurFrame:
    """Fit the anatomical frame of a filled femur mask on ``volume``'s grid; the shaft axis
    over ``shaft_fit_range_mm`` (which refuses a shaft cut above the total hip's distal
    border at ``distal_border_below_head_mm`` plus ``MIN_SHAFT_FIT_MM``)."""
    center, radius, rms = fit_head(mask_kji, volume)
    fit_range = shaft_fit_range_mm(mask_kji, volume, center, distal_border_below_head_mm)
    shaft_axis, shaft_point = _shaft(mask_kji, volume, center, fit_range)
    neck = neck_axis(mask_kji, volume, center, radius, shaft_axis)
    nsa = float(np.degrees(np.arccos(np.clip(-neck @ -shaft_axis, -1, 1))))
    to_head = -neck
    medial = to_head - (to_head @ shaft_axis) * shaft_axis
    medial /= np.linalg.norm(medial)
    anteversion = float(np.degrees(np.arcsin(np.clip(medial[1], -1, 1))))
    # closest approach of the neck line (centre + t * neck) to the shaft line
    w = center - shaft_point
    b = neck @ shaft_axis
    t = (b * (w @ shaft_axis) - (w @ neck)) / max(1 - b * b, 1e-9)
    return FemurFrame(center, radius, rms, neck, shaft_axis, shaft_point, nsa, anteversion,
                      float(t), fit_range)


__all__ = ["MIN_SHAFT_FIT_MM", "SHAFT_FIT_BELOW_HEAD_MM", "FemurFrame", "check_head_in_scan",
           "check_not_fused", "femur_frame", "fit_head", "fit_sphere", "neck_axis",
           "shaft_fit_range_mm", "superior_end_slice"]
