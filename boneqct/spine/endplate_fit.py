"""Subvoxel endplate position by fitting a model of the endplate to the CT voxels.

A thin cortical plate in a slice thicker than itself lands wholly in one slice over a range of
positions: a profile interpolated between slice centres then puts the plate at the slice
centre, up to half a slice spacing away (1.5 mm on 3 mm slices). The voxels still hold the
plate's position - in how its partial volume moves between neighbouring slices where a tilted
endplate crosses them - but only a model of what each voxel sees can read it back.

The model, in the body's frame (``s`` along its axis, ``a`` anterior, mm from its centre):
near a height line at ``a0`` the endplate's cortical mid-surface is a polynomial
``s_p(a)`` (straight, or quadratic for the dished middle of a biconcave body) plus a
left-right dish ``d l**2`` (``l`` mm to the left); along the axis
the bone is trabecular (``trabecular_hu``) on the body's side, a plate ``thickness_mm`` thick
(``plate_hu``) on the surface, and disc (``disc_hu``) beyond. Each voxel reads the mean of that
model across its extent along its coarsest axis (the slice, over the thickness the scan
states: a rectangular slice profile).
The parameters are fitted to the voxels within a patch around the line by least squares.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from boneqct.spine.types import VertebralBody
from boneqct.volume import Volume, stated_slice_thickness_mm

#: Step (mm) of the positions tried before the fit (and the least slice extent across the
#: surface), and the half-width (mm, left-right) of the patch of voxels fitted around a line.
POSITION_STEP_MM = 0.4
PATCH_HALF_WIDTH_MM = 2.5
#: Bounds of the plate's fitted thickness (mm): from a trace to a thick sclerotic endplate.
THICKNESS_RANGE_MM = (0.2, 4.0)
#: Strongest left-right curvature (1/mm) of an endplate across a patch (a dish 10 mm deep
#: over a 30 mm wide body: 0.04/mm; a project bound).
MAX_DISH_PER_MM = 0.1
#: Plate thicknesses (mm) of the grid the fit starts from. Position, slope and thickness
#: trade off along a shallow valley of the cost on slices thicker than the plate: with two
#: (0.8 and 2 mm) the fit started on the thick side of a 1 mm plate on 3 mm slices and
#: stopped 1 mm inward (a tilted wedge phantom graded 1 instead of 2; project choice, from
#: Testing/benchmarks/bench_fracture.py over 20 noise seeds).
THICKNESS_STARTS_MM = (0.6, 1.2, 2.0, 3.0)
#: Searches again from the edge of the search range when a fit ends there (at most this
#: often), and keeps a widened patch only when its residual is at most WIDER_RMS_FACTOR times
#: the narrower one's (project choices).
FOLLOW_FITS = 2
WIDER_RMS_FACTOR = 1.25
#: Steepest endplate searched (mm along the axis per mm anterior: a 30 degree wedge).
SLOPE_MAX = 0.6


def voxel_extent_mm(volume: Volume) -> np.ndarray:
    """How far (mm) each voxel reads along its i, j and k axes: the spacing, with k widened
    to the slice thickness the scan states (``stated_slice_thickness_mm``, DICOM
    SliceThickness, within its plausible bound) where that is thicker: an overlapping
    reconstruction (3 mm slices every 1.5 mm) reads each slice over its thickness. A stated
    thickness below the spacing (slices with gaps between them) is not taken."""
    extent = np.asarray(volume.spacing_mm, float).copy()
    extent[2] = max(extent[2], stated_slice_thickness_mm(volume) or 0.0)
    return extent


def _slice_axis(volume: Volume) -> tuple[np.ndarray, float]:
    """The unit RAS direction of the volume's voxel axis read over the longest extent (its
    slices' normal) and that extent (mm, ``voxel_extent_mm``): the slice profile's width."""
    extent = voxel_extent_mm(volume)
    axis = int(np.argmax(extent))
    return volume.direction_ras[:, axis], float(extent[axis])


def _patch_voxels(volume: Volume, body: VertebralBody, a_range_mm, s_range_mm):
    """Body-frame coordinates (s, a, l mm) of the centres of the voxels within a box of the
    body frame (``a_range_mm`` anterior, ``s_range_mm`` along the axis, ``PATCH_HALF_WIDTH_MM``
    left-right) and their values (HU)."""
    left = np.cross(body.axis_ras, body.anterior_ras)
    frame = np.stack([body.axis_ras, body.anterior_ras, left], axis=1)
    corners = np.array([[s, a, lr] for s in s_range_mm for a in a_range_mm
                        for lr in (-PATCH_HALF_WIDTH_MM, PATCH_HALF_WIDTH_MM)])
    ijk = volume.ras_to_ijk_points(body.center_ras_mm + corners @ frame.T)
    size = np.array(volume.size_ijk)
    low = np.clip(np.floor(ijk.min(axis=0)).astype(int), 0, size)
    high = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 1, 0, size)
    if np.any(high <= low):
        return np.empty((0, 3)), np.empty(0)
    grid = np.stack(np.meshgrid(*[np.arange(lo, hi) for lo, hi in zip(low, high, strict=True)],
                                indexing="ij"), axis=-1).reshape(-1, 3)
    local = (volume.ijk_to_ras_points(grid) - body.center_ras_mm) @ frame
    keep = ((local[:, 0] >= min(s_range_mm)) & (local[:, 0] <= max(s_range_mm))
            & (local[:, 1] >= min(a_range_mm)) & (local[:, 1] <= max(a_range_mm))
            & (np.abs(local[:, 2]) <= PATCH_HALF_WIDTH_MM))
    values = volume.array_kji[grid[keep, 2], grid[keep, 1], grid[keep, 0]].astype(float)
    return local[keep], values


def _shares(q_mm: np.ndarray, extent_mm: np.ndarray, thickness_mm) -> np.ndarray:
    """Share of each voxel's slice extent in the trabecular bone, the plate and the disc
    (last axis), for voxel centres ``q_mm`` from the plate's mid-surface into the disc and
    the voxels' slice extent ``extent_mm`` measured along q (a rectangular slice profile
    across a locally flat surface: exact)."""
    thickness_mm = np.asarray(thickness_mm)[..., None]
    inner = np.clip((q_mm + thickness_mm / 2.0) / extent_mm + 0.5, 0.0, 1.0)
    outer = np.clip((q_mm - thickness_mm / 2.0) / extent_mm + 0.5, 0.0, 1.0)
    return np.stack([1.0 - inner, inner - outer, outer], axis=-1)


def _solve_levels(shares: np.ndarray, values: np.ndarray):
    """Least-squares compartment levels (HU) for each grid point of ``shares`` (..., voxel,
    3) and the residual sums of squares."""
    transposed = np.swapaxes(shares, -1, -2)
    normal = transposed @ shares + 1e-9 * np.eye(3)
    levels = np.linalg.solve(normal, (transposed @ values)[..., None])[..., 0]
    residual = (shares @ levels[..., None])[..., 0] - values
    return levels, np.sum(residual ** 2, axis=-1)


def fit_endplate(volume_hu: Volume, body: VertebralBody, at_mm: float, start_mm: float,
                 outward: int, degree: int, a_range_mm: tuple[float, float],
                 reach_mm: tuple[float, float], thickness_mm: float | None = None) -> dict | None:
    """Fitted position (mm along the axis from the body's centre) of an endplate's cortical
    mid-surface at the height line ``at_mm`` (mm anterior of the centre), or None when too
    few voxels lie in the patch.

    ``start_mm`` is a first estimate of the position; ``outward`` (+1 superior endplate, -1
    inferior) points from the body into the disc; voxels within ``a_range_mm`` (anterior
    offsets, mm) and ``reach_mm`` (outward, inward: mm from ``start_mm``) are fitted;
    ``degree`` (1 or 2) is that of the surface polynomial in ``a``; ``thickness_mm`` holds the
    plate's thickness (mm) instead of fitting it. The fit starts from the
    best point of a grid of positions, slopes and plate thicknesses (the levels solved
    exactly there: the model is linear in them), as its cost has local minima about a slice
    apart.

    Returns ``position_mm``, ``slope`` (mm along the axis per mm anterior), ``at_bound``
    (the position or slope ended at the end of its search range: the model did not find the
    endplate), ``phase_span_mm`` (how far the fitted surface moves across the slices within the patch),
    ``contrast_hu`` (the plate over the trabecular bone, averaged over one slice extent),
    ``thickness_mm``, ``rms_hu`` (residual) and ``voxels``.
    """
    s_range = sorted((start_mm + outward * reach_mm[0], start_mm - outward * reach_mm[1]))
    local, values = _patch_voxels(volume_hu, body, a_range_mm, s_range)
    if len(values) < 4 * (degree + 5):
        return None
    slice_ras, slice_mm = _slice_axis(volume_hu)
    along_s, along_a = float(slice_ras @ body.axis_ras), float(slice_ras @ body.anterior_ras)
    along_l = float(slice_ras @ np.cross(body.axis_ras, body.anterior_ras))
    s_mm, a_mm, l_mm = local[:, 0], local[:, 1] - at_mm, local[:, 2]

    def geometry(coefficients, dish=0.0):
        """Voxel centres' q (mm into the disc) and slice extents along q (mm), for a surface
        polynomial in ``a`` (``coefficients``, highest power first) curving ``dish`` (1/mm)
        left-right (a dished endplate across the patch's width)."""
        course = sum(c * a_mm ** (degree - n) for n, c in enumerate(coefficients))
        course = course + dish * l_mm ** 2
        slope = sum((degree - n) * c * a_mm ** (degree - n - 1)
                    for n, c in enumerate(coefficients[:-1]))
        q = outward * (s_mm - course)
        extent = np.maximum(slice_mm * np.abs(along_s - slope * along_a
                                              - 2.0 * dish * l_mm * along_l), POSITION_STEP_MM)
        return q, extent

    def residual(p):
        q, extent = geometry(p[:degree + 1], p[-1])
        return _shares(q, extent, p[degree + 1]) @ p[degree + 2:degree + 5] - values

    search_mm = slice_mm / 2.0 + 1.0
    axes = [np.zeros(1)] if degree == 2 else []  # curvature (1/mm): refined below
    axes += [np.arange(-SLOPE_MAX, SLOPE_MAX + 1e-9, 0.05),  # slope
             np.arange(-search_mm, search_mm + 1e-9, POSITION_STEP_MM) + start_mm,  # mm
             np.asarray(THICKNESS_STARTS_MM if thickness_mm is None else [thickness_mm])]
    mesh = np.meshgrid(*axes, indexing="ij")
    coefficients = [m[..., None] for m in mesh[:-1]]
    q, extent = geometry(coefficients)
    levels, cost = _solve_levels(_shares(q, extent, mesh[-1]), values)
    best = np.unravel_index(np.argmin(cost), cost.shape)
    p0 = np.concatenate([[c[best][0] for c in coefficients], [mesh[-1][best]], levels[best],
                         [0.0]])
    low = np.full(len(p0), -np.inf)
    high = np.full(len(p0), np.inf)
    low[-1], high[-1] = -MAX_DISH_PER_MM, MAX_DISH_PER_MM
    low[degree + 1], high[degree + 1] = (THICKNESS_RANGE_MM if thickness_mm is None
                                         else (thickness_mm - 1e-6, thickness_mm + 1e-6))
    # the lines place the endplate within about half a slice: the fit stays near them
    low[degree], high[degree] = start_mm - search_mm, start_mm + search_mm
    low[degree - 1], high[degree - 1] = -SLOPE_MAX, SLOPE_MAX
    p0 = np.clip(p0, low + 1e-6, high - 1e-6)
    fit = optimize.least_squares(residual, p0, bounds=(low, high), x_scale="jac",
                                 xtol=1e-5, ftol=1e-6, max_nfev=60)
    p = fit.x if fit.cost <= 0.5 * cost[best] else p0
    thickness, trabecular, plate, _disc = p[degree + 1:degree + 5]
    course = np.polyval(p[:degree + 1], a_mm)
    along_slices = a_mm * along_a + course * along_s
    bounded = [degree - 1, degree]  # slope and position
    return {"position_mm": float(p[degree]), "slope": float(p[degree - 1]),
            "at_bound": bool(np.any(np.minimum(p[bounded] - low[bounded],
                                               high[bounded] - p[bounded]) < 1e-3)),
            "phase_span_mm": float(np.ptp(along_slices)),
            "contrast_hu": float((plate - trabecular) * min(1.0, thickness / slice_mm)),
            "thickness_mm": float(thickness),
            "rms_hu": float(np.sqrt(np.mean(residual(p) ** 2))), "voxels": int(len(values))}


def locate_endplate(volume_hu: Volume, body: VertebralBody, at_mm: float, start_mm: float,
                    outward: int, lines_mm: tuple[float, float], reach_mm: tuple[float, float],
                    half_width_mm: float, max_half_width_mm: float,
                    thickness_mm: float | None = None) -> dict | None:
    """``fit_endplate`` (a quadratic surface; straight for a point beyond the lines) on a patch
    ``half_width_mm`` either side of the height line, searched again from the edge of its
    search range when it ends there, then widened up to ``max_half_width_mm`` when the fitted
    surface crosses less than one slice spacing within it (the partial volume of one slice
    alone cannot place it) unless the model fits the wider patch worse. A patch cut by the end
    of the height lines ``lines_mm`` (first, last: anterior offsets, mm) keeps its width on
    the other side. ``thickness_mm`` holds the plate's thickness (``fit_endplate``).

    The fit's dict gains ``crosses_a_slice`` (its surface crosses a whole slice within its
    patch: only then does the partial volume place the plate's edges, and so its thickness;
    on a plate nearly parallel to the slices the fit trades thickness for position, 1.35 mm
    outward per mm thicker on the phantoms' wedge on 3 mm slices).
    """
    _, slice_mm = _slice_axis(volume_hu)

    def patch(half_mm):
        low, high = at_mm - half_mm, at_mm + half_mm
        if low < lines_mm[0]:
            low, high = lines_mm[0], lines_mm[0] + 2.0 * half_mm
        if high > lines_mm[1]:
            low, high = lines_mm[1] - 2.0 * half_mm, lines_mm[1]
        return max(low, lines_mm[0]), min(high, lines_mm[1])

    # a patch on one side of its point cannot hold a quadratic's value at its end: straight
    degree = 2 if lines_mm[0] < at_mm < lines_mm[1] else 1

    def fit(from_mm: float, half_mm: float):
        fitted = fit_endplate(volume_hu, body, at_mm, from_mm, outward, degree, patch(half_mm),
                              reach_mm, thickness_mm)
        if fitted is not None:
            fitted["crosses_a_slice"] = bool(fitted["phase_span_mm"] >= slice_mm)
        return fitted

    fitted = fit(start_mm, half_width_mm)
    for _ in range(FOLLOW_FITS):  # the lines' estimate was off: search again from the edge
        if fitted is None or not fitted["at_bound"]:
            break
        fitted = fit(fitted["position_mm"], half_width_mm)
    if fitted is None or fitted["at_bound"] or fitted["phase_span_mm"] >= slice_mm:
        return fitted
    wider = fit(fitted["position_mm"], min(max_half_width_mm, half_width_mm * slice_mm
                                           / max(fitted["phase_span_mm"], 1e-3)))
    # a surface the model cannot follow over the wider patch (a dish seen by a straight line)
    if wider is None or wider["rms_hu"] > WIDER_RMS_FACTOR * fitted["rms_hu"]:
        return fitted
    return wider
