"""Hologic-style regions on the DXA projection and their per-region measurements.

Conventions, with their sources:
- Neck box: 15 mm along the neck axis (Hologic default 49 x 15 pixels, ISCD DXA atlas,
  "Incorrect femoral neck box size"), placed across the neck perpendicular to its axis where
  the neck is narrowest (smallest mean width over the box; the middle of a plateau of equal
  widths), as Hologic's default placement (docs/domain.md section 5; the narrowest-part rule is not
  verified in a Hologic manual).
- Total hip: the bone lateral to the box's medial edge and above a distal border
  ``DISTAL_BORDER_BELOW_LESSER_TROCHANTER_MM`` below the lesser trochanter (ISCD DXA atlas,
  "Total hip region of interest incorrect/Hologic": the bottom line is 10 pixels below; the
  pixel-to-mm conversion, 1 mm, is not verified). The lesser trochanter's distal end is where
  the silhouette's medial outline, followed up the shaft, leaves the shaft's medial edge by
  ``OUTLINE_PROMINENCE_MM``.
- Trochanter / intertrochanter: split by a line from the neck box's inferior-lateral corner
  (at the neck's inferior margin) to the base of the greater trochanter (Lenchik et al. 2003,
  Radiology 228:620, figure 4 legend: the line "is drawn to the base of the greater
  trochanter"), the point where the silhouette's lateral outline, followed up the shaft, leaves
  the shaft's lateral edge by ``OUTLINE_PROMINENCE_MM``.

The regions partition the total hip, so its BMC, area and volume are the sums of the three. A
region's bone is its pixels inside the projected silhouette (``Projection.silhouette``, the
half-maximum edge): its area is their area and its BMC the mineral projected into them, so both
come from the same pixels; aBMD = BMC / area, volume the femur volume projected into them and
vBMD = BMC / volume.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

from boneqct.hip.options import (
    DISTAL_BORDER_BELOW_HEAD_MM,
    DISTAL_BORDER_BELOW_LESSER_TROCHANTER_MM,
    NECK_BOX_WIDTH_MM,
)
from boneqct.hip.projection import Projection

#: Neck box height as a multiple of the neck width (the box spans the neck with margins).
NECK_BOX_HEIGHT_PER_WIDTH = 1.6
#: How far (mm) an outline must leave the shaft's edge to mark a trochanter (chosen: twice a
#: projection pixel above noise on the digital phantom; not verified).
OUTLINE_PROMINENCE_MM = 2.0
#: The region conventions as they reach hip.json and the report: their sources and the values
#: not checked against a primary source (see the module docstring).
REGION_CONVENTIONS = {
    "sources": ["ISCD DXA atlas: Hologic neck box 49 x 15 pixels; total hip bottom line 10 "
                "pixels below the lesser trochanter",
                "Lenchik et al. 2003, Radiology 228:620: trochanter line to the base of the "
                "greater trochanter"],
    "not_verified": ["a Hologic hip pixel taken as 1 mm (neck box 15 mm, distal border 10 mm)",
                     "neck box at the narrowest part of the neck (not checked in a Hologic "
                     "manual)",
                     "half-maximum bone edge (Hangartner 2007, recalled, not re-read)",
                     "outline prominence 2 mm, soft-tissue baseline shell 3-6 mm, spill shell "
                     "1.5 mm (chosen on the digital phantom)"],
}
ROI_NAMES = ("neck", "trochanter", "intertrochanter", "total")
ROI_LABELS = {"neck": 1, "trochanter": 2, "intertrochanter": 3}


@dataclass(frozen=True)
class RoiPlacement:
    """Where the regions are, in the projection's (u, w) mm (see ``Projection``).

    ``neck_center_uw_mm`` and ``neck_axis_uw`` (unit, lateral) place the neck box of
    ``neck_box_width_mm`` x ``neck_box_height_mm``; ``lesser_trochanter_w_mm`` is the lesser
    trochanter's distal end and ``distal_border_w_mm`` the total hip's distal edge;
    the trochanteric split line runs from ``trochanter_line_start_uw_mm`` (the box's
    inferior-lateral corner) to ``trochanter_line_end_uw_mm`` (the greater trochanter's base),
    ``trochanter_line_angle_deg`` above the image horizontal (lateral end up).
    """

    neck_center_uw_mm: tuple[float, float]
    neck_axis_uw: tuple[float, float]
    neck_box_width_mm: float
    neck_box_height_mm: float
    lesser_trochanter_w_mm: float
    distal_border_w_mm: float
    trochanter_line_start_uw_mm: tuple[float, float]
    trochanter_line_end_uw_mm: tuple[float, float]

    @property
    def trochanter_line_angle_deg(self) -> float:
        """The split line's angle above the image horizontal, its lateral end up (deg)."""
        du = self.trochanter_line_end_uw_mm[0] - self.trochanter_line_start_uw_mm[0]
        dw = self.trochanter_line_end_uw_mm[1] - self.trochanter_line_start_uw_mm[1]
        return float(np.degrees(np.arctan2(dw, abs(du))))

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
                "lesser_trochanter_w_mm": self.lesser_trochanter_w_mm,
                "distal_border_w_mm": self.distal_border_w_mm,
                "trochanter_line_start_uw_mm": list(self.trochanter_line_start_uw_mm),
                "trochanter_line_end_uw_mm": list(self.trochanter_line_end_uw_mm),
                "trochanter_line_angle_deg": self.trochanter_line_angle_deg,
                "bone_edge": "half-maximum silhouette (boneqct.hip.projection)",
                "neck_box_corners_uw_mm": self.neck_box_corners_uw_mm().tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> RoiPlacement:
        """Inverse of :meth:`to_dict` (the derived entries are computed again)."""
        return cls(**{f.name: tuple(d[f.name]) if isinstance(d[f.name], list) else d[f.name]
                      for f in fields(cls)})


def _perpendicular_down(axis_uw) -> np.ndarray:
    """Unit vector perpendicular to ``axis_uw`` pointing inferiorly (negative w)."""
    p = np.array([-axis_uw[1], axis_uw[0]])
    return p if p[1] < 0 else -p


def _outline_departure_uw_mm(projection: Projection, sign_u: float, below_w_mm: float,
                             shaft_w_mm: tuple[float, float]) -> tuple[float, float]:
    """Follow one outline of the silhouette (the side ``sign_u`` of u) up the shaft: the
    shaft's edge is the median extent ``sign_u * u`` (mm) of the bone over the rows with w in
    ``shaft_w_mm`` (low, high); returns (u, w) of the outline at the lowest row, between the
    shaft rows and ``below_w_mm``, that starts a run of ``OUTLINE_PROMINENCE_MM`` of rows lying
    ``OUTLINE_PROMINENCE_MM`` beyond that edge (the shaft's top edge when there is none)."""
    silhouette = projection.silhouette
    rows = np.arange(silhouette.shape[0])
    u_cols, _ = projection.uw_of_pixels(0, np.arange(silhouette.shape[1]))
    _, w_rows = projection.uw_of_pixels(rows, 0)
    extent = np.array([(sign_u * u_cols[line]).max() if line.any() else np.nan
                       for line in silhouette])
    shaft = (w_rows >= shaft_w_mm[0]) & (w_rows <= shaft_w_mm[1]) & ~np.isnan(extent)
    edge = float(np.median(extent[shaft]))
    candidates = (w_rows < below_w_mm) & (w_rows > shaft_w_mm[1]) & ~np.isnan(extent)
    run = max(1, int(round(OUTLINE_PROMINENCE_MM / projection.pixel_mm)))
    beyond = ndimage.binary_opening(candidates & (extent > edge + OUTLINE_PROMINENCE_MM),
                                    np.ones(run, bool))
    if not beyond.any():
        return sign_u * edge, shaft_w_mm[1]
    lowest = rows[beyond].max()
    return float(sign_u * extent[lowest]), float(w_rows[lowest])


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
               neck_length_mm: float, shaft_fit_below_head_mm: tuple[float, float],
               neck_box_width_mm: float = NECK_BOX_WIDTH_MM,
               distal_border_below_lesser_trochanter_mm: float =
               DISTAL_BORDER_BELOW_LESSER_TROCHANTER_MM,
               neck_center_s_mm: float | None = None) -> RoiPlacement:
    """Automatic placement from the anatomical frame and the silhouette (module docstring);
    ``shaft_fit_below_head_mm`` (depths below the head centre, mm) is the shaft segment whose
    outline edges the trochanters are found against; ``neck_center_s_mm`` (distance of the neck
    box centre from the head centre along the neck axis) overrides the search."""
    axis = np.array([neck_axis_ras @ projection.axes_ras[:, 0], neck_axis_ras @ projection.axes_ras[:, 1]])
    axis /= np.linalg.norm(axis)
    bone = projection.silhouette
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
    center = neck_center_s_mm * axis
    lateral = 1.0 if axis[0] > 0 else -1.0
    shaft_w = (-shaft_fit_below_head_mm[1], -shaft_fit_below_head_mm[0])
    _, lesser_w = _outline_departure_uw_mm(projection, -lateral, center[1], shaft_w)
    # the split line: from the neck's inferior margin at the box's lateral edge
    start = center + neck_box_width_mm / 2.0 * axis + neck_width / 2.0 * _perpendicular_down(axis)
    end = _outline_departure_uw_mm(projection, lateral, start[1], shaft_w)
    return RoiPlacement(
        neck_center_uw_mm=(float(center[0]), float(center[1])),
        neck_axis_uw=(float(axis[0]), float(axis[1])), neck_box_width_mm=neck_box_width_mm,
        neck_box_height_mm=NECK_BOX_HEIGHT_PER_WIDTH * neck_width,
        lesser_trochanter_w_mm=lesser_w,
        distal_border_w_mm=lesser_w - distal_border_below_lesser_trochanter_mm,
        trochanter_line_start_uw_mm=(float(start[0]), float(start[1])),
        trochanter_line_end_uw_mm=end)


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
    box = (s >= -half_w) & (s < half_w) & (np.abs(t) <= half_h)  # half-open: 15 mm exactly
    # the neck: the femur in the box connected to the box centre (a trochanter corner is not)
    femur = projection.volume_cm3 > 0
    pieces, _ = ndimage.label(box & femur)
    r0, c0 = (int(round(v)) for v in projection.pixels_of_uw(cu, cw))
    neck = pieces == pieces[r0, c0] if pieces[r0, c0] else box
    # the split line; its normal points superiorly
    start = np.asarray(placement.trochanter_line_start_uw_mm)
    direction = np.asarray(placement.trochanter_line_end_uw_mm) - start
    normal = np.array([-direction[1], direction[0]])
    normal = normal if normal[1] > 0 else -normal
    above = (u - start[0]) * normal[0] + (w - start[1]) * normal[1] >= 0
    labels = np.zeros(projection.bmc_g.shape, np.uint8)
    labels[total & above & ~neck] = ROI_LABELS["trochanter"]
    labels[total & ~above & ~neck] = ROI_LABELS["intertrochanter"]
    labels[total & neck] = ROI_LABELS["neck"]
    return labels


def measure_rois(projection: Projection, labels: np.ndarray) -> dict:
    """Per region, over its pixels in the silhouette: abmd_g_cm2, vbmd_mg_cm3, bmc_g, area_cm2,
    volume_cm3 (total = the sum)."""
    out = {}
    for name in ROI_NAMES:
        zone = (labels > 0 if name == "total" else labels == ROI_LABELS[name]) & projection.silhouette
        bmc_g = float(projection.bmc_g[zone].sum())
        area_cm2 = float(np.count_nonzero(zone) * projection.pixel_area_cm2)
        volume_cm3 = float(projection.volume_cm3[zone].sum())
        out[name] = {"abmd_g_cm2": bmc_g / area_cm2 if area_cm2 else None,
                     "vbmd_mg_cm3": 1000.0 * bmc_g / volume_cm3 if volume_cm3 else None,
                     "bmc_g": bmc_g, "area_cm2": area_cm2, "volume_cm3": volume_cm3}
    return out


__all__ = ["DISTAL_BORDER_BELOW_HEAD_MM", "DISTAL_BORDER_BELOW_LESSER_TROCHANTER_MM",
           "NECK_BOX_WIDTH_MM", "OUTLINE_PROMINENCE_MM", "ROI_LABELS", "ROI_NAMES",
           "RoiPlacement", "measure_rois", "place_rois", "roi_label_image"]
