"""Per-slice masks for tissue composition: the body outline without table or phantom, the skin
layer, the visceral cavity inside the muscle wall, and the vertebral bone envelope.

All functions take one axial slice (2D, j x i) with its pixel spacing (mm) and return
boolean masks of the same shape.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: A posterior jump of this much in the outline's width marks where a calibration phantom or
#: the table, wider than the back it supports, begins (mm).
SUPPORT_WIDTH_JUMP_MM = 20.0
#: Radius (mm) of the opening that detaches objects thinner than twice it from the body
#: (clothing, blankets, a table top, the walls of a cushion); not verified beyond the
#: project's real slices, where the table top is about 2 mm thick.
THIN_OBJECT_MM = 2.0
#: Gap (mm) between thresholded cortical fragments that still belong to one bone (a thin
#: vertebral shell breaks up above the cortical threshold); not verified.
FRAGMENT_GAP_MM = 8.0
#: Skeletal muscle (``skeletal_muscle``): fat enclosed by muscle (and the vertebra) up to this
#: area (mm2) is intra- or intermuscular (fatty infiltration of the back muscles). Not verified
#: beyond the project's real slices (T12-L2 of one adult): there pockets of fat enclosed by the
#: multifidus and longissimus reach 7 cm2; at 200 mm2 they were left out (83 % coverage of the
#: labelled back muscles on slice 1 instead of 96 %).
INTRAMUSCULAR_FAT_MM2 = 800.0
#: Skeletal muscle deeper than the band inside the wall (``skeletal_muscle``): lean structures
#: beside the spine, the back muscles' deeper part and the psoas. Radius (mm) of the opening that
#: cuts thin lean bridges (vessels, fascia, a bowel wall touching the muscle) before lean tissue
#: is split into structures; radius (mm) of the closing that shuts the vertebra's bony ring
#: around the spinal canal and the vertebral body; largest area (cm2) of a structure kept (an
#: organ is larger, and so is the lean tissue of a body without fat planes, as in the digital
#: phantom); farthest a structure may lie from the vertebra's bone (mm); half-width (mm) of the
#: midline strip in front of the canal (disc, vertebral body interior, aorta, oesophagus:
#: never muscle). Not verified beyond the project's real slices (T12-L2 of one adult: the
#: back muscles' deep parts are 4-10 cm2 per side and lie 1-12 mm from the bone; at 10 mm the
#: deep part of one lay out of reach, 78 % coverage on slice 3).
DEEP_MUSCLE_OPENING_MM = 3.0
CANAL_CLOSING_MM = 5.0
DEEP_MUSCLE_MAX_CM2 = 50.0
DEEP_MUSCLE_REACH_MM = 15.0
MIDLINE_HALF_WIDTH_MM = 15.0
#: Angular bin (deg) of the wall's outer radius and the median window (deg) that bridges gaps
#: in the wall and spikes where a ray misses it (``visceral_cavity``); not verified beyond the
#: project's real slices (a 10 deg window left 91-97 % of rays meeting SAT before muscle on
#: slices 0, 3 and 5, 20 deg 97-100 %).
WALL_BIN_DEG = 0.5
WALL_GAP_DEG = 20.0
#: Lean tissue along a ray thinner than this (mm) is a fascia or septum in the subcutaneous fat,
#: not the muscle wall (``visceral_cavity``). Not verified beyond the project's real slices
#: (at 2 mm the strands in the fat read as the wall: 83-93 % of rays met SAT before muscle).
MIN_WALL_MM = 3.0


def _disk(radius_px: np.ndarray) -> np.ndarray:
    """Elliptic structuring element of the given radii (pixels, j then i)."""
    rj, ri = np.maximum(np.rint(radius_px).astype(int), 1)
    j, i = np.ogrid[-rj:rj + 1, -ri:ri + 1]
    return (j / rj) ** 2 + (i / ri) ** 2 <= 1.0


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a 2D mask (empty if none)."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask.copy()
    return labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)


def _support_cut(filled: np.ndarray, pixel_mm: np.ndarray, posterior_axis: int,
                 posterior_sign: int) -> np.ndarray | None:
    """Pixels posterior to where a support wider than the back (calibration phantom, table)
    begins, or None: scanning the filled outline's width from anterior to posterior, it widens,
    narrows to the back, and a jump of ``SUPPORT_WIDTH_JUMP_MM`` past the narrowest back marks
    the support. The width is that of the hole-filled body, so lungs and gas inside the body
    do not read as narrowings."""
    across_axis = 1 - posterior_axis
    widths_mm = filled.sum(axis=across_axis) * pixel_mm[across_axis]
    order = np.arange(len(widths_mm))[::posterior_sign]
    order = order[widths_mm[order] > 0]
    widest_mm, narrowest_mm = 0.0, np.inf
    for position in order:
        width = widths_mm[position]
        widest_mm = max(widest_mm, width)
        if width < widest_mm - SUPPORT_WIDTH_JUMP_MM:     # past the widest part of the body
            narrowest_mm = min(narrowest_mm, width)
        if width > narrowest_mm + SUPPORT_WIDTH_JUMP_MM:  # a wider support begins
            beyond = (np.arange(filled.shape[posterior_axis]) - position) * posterior_sign >= 0
            return beyond[:, None] if posterior_axis == 0 else beyond[None, :]
    return None


def body_outline(slice_hu: np.ndarray, pixel_mm: np.ndarray, posterior_axis: int,
                 posterior_sign: int, air_threshold_hu: float) -> np.ndarray:
    """The patient's torso in one slice: above ``air_threshold_hu``, thin objects (clothing,
    blankets, a table top, cushion covers) detached by an opening of ``THIN_OBJECT_MM``, cut
    where a wider support (calibration phantom, table) begins posterior to the back, largest
    component (arms and objects apart from the torso are left out), holes (lungs, bowel gas)
    filled; the edge the opening rounded is restored from the thresholded image.

    Args:
        slice_hu: 2D HU (j, i).
        pixel_mm: (j, i) pixel spacing in mm.
        posterior_axis: 0 if rows (j) run antero-posteriorly, 1 if columns (i) do.
        posterior_sign: +1 if the index increases posteriorly along that axis, else -1.
        air_threshold_hu: air / tissue threshold (HU).
    """
    mask = slice_hu > air_threshold_hu
    disk = _disk(THIN_OBJECT_MM / pixel_mm)
    filled = ndimage.binary_fill_holes(_largest_component(ndimage.binary_opening(mask, disk)))
    if not filled.any():
        return filled
    beyond = _support_cut(filled, pixel_mm, posterior_axis, posterior_sign)
    if beyond is not None:
        mask &= ~beyond
        filled = _largest_component(filled & ~beyond)
    restored = filled | (mask & ndimage.binary_dilation(filled, disk))
    return ndimage.binary_fill_holes(_largest_component(restored))


def visceral_cavity(lean: np.ndarray, fat: np.ndarray, body: np.ndarray,
                    pixel_mm: np.ndarray) -> np.ndarray:
    """The region the muscle wall encloses, the wall included, as a star-shaped region about
    the body's centroid, found from the outside in: along each ray (bins of ``WALL_BIN_DEG``),
    walking in from the outline over ``fat`` (subcutaneous fat and the skin layer), the wall
    begins at the first run of ``lean`` tissue at least ``MIN_WALL_MM`` long (thinner strands
    are fascia and septa in the fat); a ray that meets anything else first (bone, internal
    air, dense tissue, or leaves the body) has no wall of its own and takes its neighbours'.
    That radius is median-filtered over ``WALL_GAP_DEG`` so that gaps in a thin wall (the
    linea alba) and spikes narrower than half that angle do not move it.

    Subcutaneous fat lies outside the wall and reaches the skin; visceral fat is enclosed.

    Args:
        lean: lean soft tissue (2D bool).
        fat: fat and the skin layer (2D bool): what a ray may cross before the wall.
        body: the body outline (2D bool).
        pixel_mm: (j, i) pixel spacing in mm.
    """
    if not (lean & body).any():
        return np.zeros_like(body)
    centre = np.argwhere(body).mean(axis=0)
    n_bins = int(round(360.0 / WALL_BIN_DEG))
    angles = (np.arange(n_bins) + 0.5) * 2.0 * np.pi / n_bins - np.pi
    step_mm = 0.5 * float(pixel_mm.min())
    radii_mm = np.arange(0.0, float(np.hypot(*(np.array(body.shape) * pixel_mm))), step_mm)
    classes = np.where(body, np.where(lean, 2, np.where(fat, 1, 3)), 0).astype(np.uint8)
    rays = ndimage.map_coordinates(
        classes, [centre[0] + np.outer(np.sin(angles), radii_mm) / pixel_mm[0],
                  centre[1] + np.outer(np.cos(angles), radii_mm) / pixel_mm[1]],
        order=0, cval=0)                                      # (ray, sample), outward
    index = np.arange(rays.shape[1])
    outermost = np.where(rays > 0, index, -1).max(axis=1)
    within = index[None, :] <= outermost[:, None]
    n_wall = max(int(round(MIN_WALL_MM / step_mm)), 1)
    run = ndimage.uniform_filter1d((rays == 2).astype(np.float32), n_wall, axis=1,
                                   origin=(n_wall - 1) // 2, mode="constant")
    wall_start = np.where(within & (run > 1.0 - 0.5 / n_wall), index, -1).max(axis=1)
    blocked = np.where(within & ((rays == 0) | (rays == 3)), index, -1).max(axis=1)
    outer_mm = np.where((wall_start >= 0) & (wall_start > blocked),
                        radii_mm[np.maximum(wall_start, 0)], np.nan)
    found = np.isfinite(outer_mm)
    if not found.any():
        return np.zeros_like(body)
    bins = np.arange(n_bins)
    outer_mm = np.interp(bins, bins[found], outer_mm[found], period=n_bins)
    window = int(round(WALL_GAP_DEG / WALL_BIN_DEG)) | 1
    outer_mm = ndimage.median_filter(outer_mm, size=window, mode="wrap")
    jj, ii = np.indices(body.shape)
    dj, di = (jj - centre[0]) * pixel_mm[0], (ii - centre[1]) * pixel_mm[1]
    pixel_bins = ((np.arctan2(dj, di) + np.pi) / (2 * np.pi) * n_bins).astype(int) % n_bins
    return body & (np.hypot(dj, di) <= outer_mm[pixel_bins])


def _vertebra(bone: np.ndarray, cancellous: np.ndarray, pixel_mm: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """The slice's vertebra: its bone (the largest group of bone fragments closer than
    ``FRAGMENT_GAP_MM``; ribs touching it included) and the region its bone encloses (the bone
    closed by ``CANAL_CLOSING_MM`` with its holes filled: spinal canal and vertebral body
    interior, whatever their density)."""
    merged = ndimage.binary_dilation(bone, _disk(FRAGMENT_GAP_MM / 2.0 / pixel_mm))
    vertebra = _largest_component(merged) & bone
    closed = ndimage.binary_closing(bone, _disk(CANAL_CLOSING_MM / pixel_mm))
    return vertebra, ndimage.binary_fill_holes(closed) | cancellous | bone


def _deep_muscle(lean: np.ndarray, vertebra: np.ndarray, enclosed: np.ndarray,
                 pixel_mm: np.ndarray, posterior_axis: int, posterior_sign: int) -> np.ndarray:
    """Lean structures beside the vertebra (``lean`` without the band already taken): each
    structure is a component of the lean tissue opened by ``DEEP_MUSCLE_OPENING_MM`` (thin
    bridges cut), kept if it is at most ``DEEP_MUSCLE_MAX_CM2``, comes within
    ``DEEP_MUSCLE_REACH_MM`` of the vertebra's bone, and its centroid lies neither in front of
    the vertebra's most anterior bone in the midline strip (``MIDLINE_HALF_WIDTH_MM``: the
    vertebral body's front; vessels and bowel in front of it) nor in that strip in front of
    the vertebra's centroid (disc, vertebral body interior). The kept structures are restored
    by the opening's radius within ``lean``."""
    out = np.zeros_like(lean)
    if not vertebra.any():
        return out
    disk = _disk(DEEP_MUSCLE_OPENING_MM / pixel_mm)
    candidates = lean & ~enclosed
    labels, n = ndimage.label(ndimage.binary_opening(candidates, disk))
    if n == 0:
        return out
    index = np.arange(1, n + 1)
    grid = np.indices(lean.shape)
    posterior_mm = grid[posterior_axis] * pixel_mm[posterior_axis] * posterior_sign
    across = 1 - posterior_axis
    lateral_mm = grid[across] * pixel_mm[across]
    mid_lateral = lateral_mm[vertebra].mean()
    mid_posterior = posterior_mm[vertebra].mean()
    strip = np.abs(lateral_mm - mid_lateral) <= MIDLINE_HALF_WIDTH_MM
    front = posterior_mm[vertebra & strip].min() if (vertebra & strip).any() else -np.inf
    area_cm2 = ndimage.sum_labels(np.ones_like(lean), labels, index) * float(np.prod(pixel_mm)) / 100.0
    reach = ndimage.distance_transform_edt(~vertebra, sampling=pixel_mm)
    nearest_mm = ndimage.minimum(reach, labels, index)
    c_posterior = ndimage.mean(posterior_mm, labels, index)
    c_lateral = ndimage.mean(lateral_mm, labels, index)
    in_strip = np.abs(c_lateral - mid_lateral) <= MIDLINE_HALF_WIDTH_MM
    keep = ((area_cm2 <= DEEP_MUSCLE_MAX_CM2) & (nearest_mm <= DEEP_MUSCLE_REACH_MM)
            & (c_posterior >= front) & ~(in_strip & (c_posterior < mid_posterior)))
    kept = np.concatenate([[False], keep])[labels]
    return ndimage.binary_dilation(kept, disk) & candidates


def skeletal_muscle(lean: np.ndarray, cavity: np.ndarray, bone: np.ndarray,
                    cancellous: np.ndarray, pixel_mm: np.ndarray, posterior_axis: int,
                    posterior_sign: int, band_mm: float) -> np.ndarray:
    """Skeletal muscle of one slice: the lean tissue of the ``cavity`` (``visceral_cavity``)
    within ``band_mm`` of its edge (the abdominal wall and the back muscles' surface), the
    lean structures beside the vertebra (``_deep_muscle``: the back muscles' deeper part, 4-6
    cm thick, and the psoas, which lies apart from the wall), with fat enclosed by them and the
    vertebra up to ``INTRAMUSCULAR_FAT_MM2`` (fat within and between muscles). The spinal canal
    and the vertebral body (the region the vertebra's bone encloses) are never muscle.

    Args:
        lean: lean soft tissue without bone (2D bool).
        cavity: the region inside the muscle wall, the wall included (2D bool).
        bone: cortical and cancellous bone (2D bool).
        cancellous: cancellous bone (2D bool).
        pixel_mm: (j, i) pixel spacing in mm.
        posterior_axis, posterior_sign: as in ``body_outline``.
        band_mm: depth of the band inside the wall (mm).

    Measured on the project's real slices (T12-L2, Testing/test_tissue_real_ct.py): 93-99 % of
    the labelled back muscles and psoas per slice (the band alone: 38-62 %). On the digital
    phantom, whose lean organs touch its muscles without a fat plane, the structures beside
    the spine are one component larger than ``DEEP_MUSCLE_MAX_CM2`` and the band alone stays.
    Where an organ lies against the wall, the band takes a strip of it.
    """
    depth_mm = ndimage.distance_transform_edt(cavity, sampling=pixel_mm)
    band = lean & cavity & (depth_mm <= band_mm)
    vertebra, enclosed = _vertebra(bone, cancellous, pixel_mm)
    muscle = band | _deep_muscle(lean & ~band, vertebra, enclosed, pixel_mm, posterior_axis,
                                 posterior_sign)
    wall = muscle | vertebra | enclosed
    holes, n = ndimage.label(ndimage.binary_fill_holes(wall) & ~wall)
    area_mm2 = np.bincount(holes.ravel(), minlength=n + 1) * float(np.prod(pixel_mm))
    small = area_mm2 <= INTRAMUSCULAR_FAT_MM2
    small[0] = False
    return muscle | small[holes]


def bone_envelope(cortical: np.ndarray, pixel_mm: np.ndarray,
                  min_cancellous_area_mm2: float) -> np.ndarray:
    """Cancellous bone: holes enclosed by cortex of at least ``min_cancellous_area_mm2`` (a
    vertebral body's interior; the spinal canal inside the neural arch is smaller)."""
    holes = ndimage.binary_fill_holes(cortical) & ~cortical
    labels, n = ndimage.label(holes)
    if n == 0:
        return holes
    area_mm2 = np.bincount(labels.ravel())[1:] * float(np.prod(pixel_mm))
    keep = np.concatenate([[False], area_mm2 >= min_cancellous_area_mm2])
    return keep[labels]


def _convex_hull(mask: np.ndarray) -> np.ndarray:
    """Pixels whose centres lie in the convex hull of a 2D mask's pixel centres."""
    from scipy.spatial import ConvexHull, Delaunay, QhullError

    points = np.argwhere(mask)
    try:
        hull = Delaunay(points[ConvexHull(points).vertices])
    except QhullError:  # collinear pixels: the mask is its own hull
        return mask.copy()
    (j0, i0), (j1, i1) = points.min(axis=0), points.max(axis=0) + 1
    jj, ii = np.mgrid[j0:j1, i0:i1]
    out = np.zeros_like(mask)
    out[j0:j1, i0:i1] = (hull.find_simplex(np.column_stack([jj.ravel(), ii.ravel()])) >= 0
                         ).reshape(jj.shape)
    return out


def open_cortex_cancellous(cortical: np.ndarray, smooth_bmd: np.ndarray, pixel_mm: np.ndarray,
                           min_cancellous_area_mm2: float, trabecular_min_mg_cm3: float
                           ) -> np.ndarray:
    """Cancellous bone of a vertebra whose thresholded cortex does not close (a thin,
    osteoporotic shell on clinical CT): inside the convex hull of the slice's largest cortical
    component (fragments closer than ``FRAGMENT_GAP_MM`` joined: the vertebra), the pixels of smoothed density >= ``trabecular_min_mg_cm3``
    (mg/cm3; above soft tissue and the canal) that are not cortex: their largest component
    (the body; one per axial slice), if of at least ``min_cancellous_area_mm2``. Empty
    without cortex."""
    merged = ndimage.binary_dilation(cortical, _disk(FRAGMENT_GAP_MM / 2.0 / pixel_mm))
    vertebra = _largest_component(merged) & cortical
    if vertebra.sum() < 3:
        return np.zeros_like(cortical)
    body = _largest_component(_convex_hull(vertebra) & ~cortical
                              & (smooth_bmd >= trabecular_min_mg_cm3))
    return body if body.sum() * float(np.prod(pixel_mm)) >= min_cancellous_area_mm2 else body & False


def outline_depth(slice_hu: np.ndarray, body: np.ndarray, pixel_mm: np.ndarray,
                  level_hu: float, reach_mm: float) -> np.ndarray:
    """Signed depth (mm, positive inside) of each pixel centre below the body outline, located
    to a fraction of a pixel; NaN farther than ``reach_mm`` from the outline.

    The outline is the ``level_hu`` iso-line (midway between air and tissue: the edge of a
    blurred step with a symmetric PSF crosses the mid-level at the true edge), found by
    linear interpolation between neighbouring pixel centres where the image crosses the
    level, across the body's boundary only (outside the body, tissue above the level, such as
    a phantom or the table cut off by ``body_outline``, is taken as air). The depth of a
    pixel is its distance to the line fitted (total least squares) through its four nearest
    edge points.
    """
    from scipy.spatial import cKDTree

    ring = ndimage.binary_dilation(body, iterations=1) & ~ndimage.binary_erosion(body, iterations=1)
    g = np.where(body | (slice_hu <= level_hu), slice_hu, -1000.0).astype(np.float64)
    points = []
    for axis in (0, 1):
        a = g[:-1, :] if axis == 0 else g[:, :-1]
        b = g[1:, :] if axis == 0 else g[:, 1:]
        near = ring[:-1, :] | ring[1:, :] if axis == 0 else ring[:, :-1] | ring[:, 1:]
        cross = near & ((a - level_hu) * (b - level_hu) < 0)
        j, i = np.nonzero(cross)
        t = (level_hu - a[cross]) / (b[cross] - a[cross])
        points.append(np.column_stack([(j + (t if axis == 0 else 0.0)) * pixel_mm[0],
                                       (i + (t if axis == 1 else 0.0)) * pixel_mm[1]]))
    points = np.concatenate(points)
    depth = np.full(body.shape, np.nan)
    if len(points) < 4:
        return depth
    edt_in = ndimage.distance_transform_edt(body, sampling=pixel_mm)
    edt_out = ndimage.distance_transform_edt(~body, sampling=pixel_mm)
    candidates = (edt_in <= reach_mm + pixel_mm.max()) & (edt_out <= 2.0 * pixel_mm.max())
    j, i = np.nonzero(candidates)
    centres = np.column_stack([j * pixel_mm[0], i * pixel_mm[1]])
    _, index = cKDTree(points).query(centres, k=4)
    local = points[index]                                    # (n, 4, 2)
    mean = local.mean(axis=1)
    d = local - mean[:, None, :]
    cov = np.einsum("nki,nkj->nij", d, d)
    _, vectors = np.linalg.eigh(cov)
    normal = vectors[:, :, 0]                                # smallest eigenvalue: the normal
    distance = np.abs(np.einsum("ni,ni->n", centres - mean, normal))
    depth[j, i] = np.where(body[j, i], distance, -distance)
    return depth


def layer_fractions(depth_mm: np.ndarray, pixel_mm: np.ndarray, thickness_mm: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Fractions (0-1) of each pixel in the skin layer (depth 0 to ``thickness_mm``) and below
    it, the pixel spanning its centre depth +/- p/2 along the normal (p the mean pixel size):
    a two-material mixing of the pixel across each boundary, exact on average over the
    outline's sub-pixel positions. Pixels without a depth (NaN: deep inside, or outside) get
    skin 0 and below 1 inside, 0 outside (the caller masks)."""
    p = float(np.mean(pixel_mm))
    lo, hi = depth_mm - p / 2.0, depth_mm + p / 2.0
    skin = np.clip((np.minimum(hi, thickness_mm) - np.maximum(lo, 0.0)) / p, 0.0, 1.0)
    below = np.clip((hi - np.maximum(lo, thickness_mm)) / p, 0.0, 1.0)
    unknown = np.isnan(depth_mm)
    return (np.where(unknown, 0.0, skin).astype(np.float32),
            np.where(unknown, 1.0, below).astype(np.float32))
