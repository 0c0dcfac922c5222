"""Hologic-style regions on the DXA projection and their per-region measurements.

Conventions (ISCD DXA atlas, domain.md section 5): the femoral neck box, 15 mm wide along the
neck axis, is placed across the neck perpendicular to its axis where the neck is narrowest
(smallest mean width over the box; the middle of a plateau of equal widths); the total hip is the bone lateral to the box's medial edge
and above a distal border across the shaft; a line from the neck box's inferior-lateral corner
splits the rest into trochanter (above) and intertrochanter (below). The regions partition the
total hip, so its BMC, area and volume are the sums of the three.

Bone pixels (for the projected area) are those with an areal density at or above
``edge_threshold_g_cm2`` (holes inside filled). A region's BMC is all femur mineral projected
into it, its area its bone pixels, aBMD = BMC / area, its volume the femur volume projected
into it and vBMD = BMC / volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from boneqct.hip.projection import Projection

#: Neck box width along the neck axis (mm); Hologic default 1.5 cm.
NECK_BOX_WIDTH_MM = 15.0
#: Neck box height as a multiple of the neck width (the box spans the neck with margins).
NECK_BOX_HEIGHT_PER_WIDTH = 1.6
#: Distal border of the total hip below the head centre along the shaft (mm; placeholder for
#: "about 10 mm below the lesser trochanter" of an adult femur, which is not detected).
DISTAL_BORDER_BELOW_HEAD_MM = 85.0
#: Areal density (g/cm2) from which a pixel is bone (projected area).
EDGE_THRESHOLD_G_CM2 = 0.3
#: Angle (deg) of the trochanteric split line above the image horizontal (perpendicular to the
#: shaft), its lateral end up; it starts at the neck's inferior margin at the box's lateral edge.
TROCHANTER_LINE_ANGLE_DEG = 0.0
ROI_NAMES = ("neck", "trochanter", "intertrochanter", "total")
ROI_LABELS = {"neck": 1, "trochanter": 2, "intertrochanter": 3}


@dataclass(frozen=True)
class RoiPlacement:
    """Where the regions are, in the projection's (u, w) mm (see ``Projection``).

    ``neck_center_uw_mm`` and ``neck_axis_uw`` (unit, lateral) place the neck box of
    ``neck_box_width_mm`` x ``neck_box_height_mm``; ``distal_border_w_mm`` is the total hip's
    distal edge; ``trochanter_line_angle_deg`` the split line's angle above the horizontal.
    """

    neck_center_uw_mm: tuple[float, float]
    neck_axis_uw: tuple[float, float]
    neck_box_width_mm: float
    neck_box_height_mm: float
    distal_border_w_mm: float
    trochanter_line_angle_deg: float
    edge_threshold_g_cm2: float

    def neck_box_corners_uw_mm(self) -> np.ndarray:
        """(4, 2) corners: medial-superior, lateral-superior, lateral-inferior, medial-inferior."""
        c, a = np.asarray(self.neck_center_uw_mm), np.asarray(self.neck_axis_uw)
        p = _perpendicular_down(a)
        hw, hh = self.neck_box_width_mm / 2.0, self.neck_box_height_mm / 2.0
        return np.array([c - hw * a - hh * p, c + hw * a - hh * p, c + hw * a + hh * p,
                         c - hw * a + hh * p])

    def to_dict(self) -> dict:
        return {"neck_center_uw_mm": list(self.neck_center_uw_mm),
                "neck_axis_uw": list(self.neck_axis_uw),
                "neck_box_width_mm": self.neck_box_width_mm,
                "neck_box_height_mm": self.neck_box_height_mm,
                "distal_border_w_mm": self.distal_border_w_mm,
                "trochanter_line_angle_deg": self.trochanter_line_angle_deg,
                "edge_threshold_g_cm2": self.edge_threshold_g_cm2,
                "neck_box_corners_uw_mm": self.neck_box_corners_uw_mm().tolist()}


def _perpendicular_down(axis_uw) -> np.ndarray:
    """Unit vector perpendicular to ``axis_uw`` pointing inferiorly (negative w)."""
    p = np.array([-axis_uw[1], axis_uw[0]])
    return p if p[1] < 0 else -p


def bone_pixels(projection: Projection, threshold_g_cm2: float = EDGE_THRESHOLD_G_CM2) -> np.ndarray:
    """Pixels of bone: areal density at or above the threshold, holes filled."""
    return ndimage.binary_fill_holes(projection.areal_density_g_cm2 >= threshold_g_cm2)


def _neck_widths(bone: np.ndarray, projection: Projection, axis_uw: np.ndarray,
                 s_mm: np.ndarray, half_span_mm: float) -> np.ndarray:
    """Bone width (mm) across the neck at distances ``s_mm`` along the axis from the head
    centre: the contiguous run of bone through the axis on the perpendicular line."""
    step = projection.pixel_mm / 2.0
    t = np.arange(-half_span_mm, half_span_mm + step / 2, step)
    perp = _perpendicular_down(axis_uw)
    u = s_mm[:, None] * axis_uw[0] + t[None, :] * perp[0]
    w = s_mm[:, None] * axis_uw[1] + t[None, :] * perp[1]
    rows, cols = projection.pixels_of_uw(u, w)
    inside = ndimage.map_coordinates(bone.astype(np.uint8), [rows, cols], order=0, cval=0) > 0
    centre = len(t) // 2
    widths = np.zeros(len(s_mm))
    for n, line in enumerate(inside):
        if not line[centre]:
            continue
        gaps = np.flatnonzero(~line)
        low = gaps[gaps < centre].max() + 1 if (gaps < centre).any() else 0
        high = gaps[gaps > centre].min() if (gaps > centre).any() else len(line)
        widths[n] = (high - low) * step
    return widths


def place_rois(projection: Projection, head_radius_mm: float, neck_axis_ras: np.ndarray,
               neck_length_mm: float, neck_box_width_mm: float = NECK_BOX_WIDTH_MM,
               distal_border_below_head_mm: float = DISTAL_BORDER_BELOW_HEAD_MM,
               trochanter_line_angle_deg: float = TROCHANTER_LINE_ANGLE_DEG,
               edge_threshold_g_cm2: float = EDGE_THRESHOLD_G_CM2,
               neck_center_s_mm: float | None = None) -> RoiPlacement:
    """Automatic placement from the anatomical frame; ``neck_center_s_mm`` (distance of the
    neck box centre from the head centre along the neck axis) overrides the search."""
    axis = np.array([neck_axis_ras @ projection.axes_ras[:, 0], neck_axis_ras @ projection.axes_ras[:, 1]])
    axis /= np.linalg.norm(axis)
    bone = bone_pixels(projection, edge_threshold_g_cm2)
    step = projection.pixel_mm
    s_all = np.arange(0.0, neck_length_mm + step / 2, step)
    widths = _neck_widths(bone, projection, axis, s_all, 2.5 * head_radius_mm)
    if neck_center_s_mm is None:
        window = max(1, int(round(neck_box_width_mm / step)))
        mean_width = np.convolve(widths, np.ones(window) / window, mode="valid")
        starts = np.arange(len(mean_width))
        first = s_all[starts] >= 0.5 * head_radius_mm  # the box starts beyond the head's middle
        valid = first & (mean_width > 0)
        # the narrowest section; on a plateau of equal widths, its middle
        narrowest = valid & (mean_width <= mean_width[valid].min() + step / 2.0)
        best = int(np.median(starts[narrowest]).round())
        neck_center_s_mm = float(s_all[best] + (window - 1) * step / 2.0)
    s_box = s_all[np.abs(s_all - neck_center_s_mm) <= neck_box_width_mm / 2.0]
    neck_width = float(np.median(widths[np.isin(s_all, s_box)]))
    return RoiPlacement(
        neck_center_uw_mm=(float(neck_center_s_mm * axis[0]), float(neck_center_s_mm * axis[1])),
        neck_axis_uw=(float(axis[0]), float(axis[1])), neck_box_width_mm=neck_box_width_mm,
        neck_box_height_mm=NECK_BOX_HEIGHT_PER_WIDTH * neck_width,
        distal_border_w_mm=-distal_border_below_head_mm,
        trochanter_line_angle_deg=trochanter_line_angle_deg,
        edge_threshold_g_cm2=edge_threshold_g_cm2)


def roi_label_image(projection: Projection, placement: RoiPlacement) -> np.ndarray:
    """Region labels per pixel (``ROI_LABELS``; 0 outside the total hip)."""
    rows, cols = np.indices(projection.bmc_g.shape)
    u, w = projection.uw_of_pixels(rows, cols)
    axis = np.asarray(placement.neck_axis_uw)
    down = _perpendicular_down(axis)
    cu, cw = placement.neck_center_uw_mm
    s = (u - cu) * axis[0] + (w - cw) * axis[1]
    t = (u - cu) * down[0] + (w - cw) * down[1]
    half_w, half_h = placement.neck_box_width_mm / 2.0, placement.neck_box_height_mm / 2.0
    total = (s >= -half_w) & (w >= placement.distal_border_w_mm)
    box = (np.abs(s) <= half_w) & (np.abs(t) <= half_h)
    # the neck: the femur in the box connected to the box centre (a trochanter corner is not)
    femur = projection.volume_cm3 > 0
    pieces, _ = ndimage.label(box & femur)
    r0, c0 = (int(round(v)) for v in projection.pixels_of_uw(cu, cw))
    neck = pieces == pieces[r0, c0] if pieces[r0, c0] else box
    # split line from the neck's inferior margin at the box's lateral edge, towards lateral
    corner_t = 0.5 * placement.neck_box_height_mm / NECK_BOX_HEIGHT_PER_WIDTH
    corner_u = cu + half_w * axis[0] + corner_t * down[0]
    corner_w = cw + half_w * axis[1] + corner_t * down[1]
    lateral = 1.0 if axis[0] > 0 else -1.0
    angle = np.radians(placement.trochanter_line_angle_deg)
    line_normal = np.array([-lateral * np.sin(angle), np.cos(angle)])  # points superiorly
    above = (u - corner_u) * line_normal[0] + (w - corner_w) * line_normal[1] >= 0
    labels = np.zeros(projection.bmc_g.shape, np.uint8)
    labels[total & above & ~neck] = ROI_LABELS["trochanter"]
    labels[total & ~above & ~neck] = ROI_LABELS["intertrochanter"]
    labels[total & neck] = ROI_LABELS["neck"]
    return labels


def measure_rois(projection: Projection, labels: np.ndarray, bone: np.ndarray) -> dict:
    """Per region: abmd_g_cm2, vbmd_mg_cm3, bmc_g, area_cm2, volume_cm3 (total = the sum)."""
    out = {}
    for name in ROI_NAMES:
        zone = labels > 0 if name == "total" else labels == ROI_LABELS[name]
        bmc_g = float(projection.bmc_g[zone].sum())
        area_cm2 = float(np.count_nonzero(zone & bone) * projection.pixel_area_cm2)
        volume_cm3 = float(projection.volume_cm3[zone].sum())
        out[name] = {"abmd_g_cm2": bmc_g / area_cm2 if area_cm2 else None,
                     "vbmd_mg_cm3": 1000.0 * bmc_g / volume_cm3 if volume_cm3 else None,
                     "bmc_g": bmc_g, "area_cm2": area_cm2, "volume_cm3": volume_cm3}
    return out


__all__ = ["DISTAL_BORDER_BELOW_HEAD_MM", "EDGE_THRESHOLD_G_CM2", "NECK_BOX_WIDTH_MM",
           "ROI_LABELS", "ROI_NAMES", "RoiPlacement", "bone_pixels", "measure_rois",
           "place_rois", "roi_label_image"]
