"""Partial-volume-aware bone mineral of the spine region (integral, cancellous, cortical).

Thresholding loses a thin cortex: a 1-2 mm shell blurred by a ~1 mm PSF and 1.25 mm pixels
peaks below any sensible cortical threshold at its edges, so the thresholded cortical mass
runs 20 % low on the digital phantom. The rules here use what blurring conserves instead.

Rules (see ``bone_mineral``):

1. Integral mineral (conservation). The PSF and the slice profile are linear and preserve
   the integral of the calibrated density, so the mineral of the bone equals the sum of
   ``(BMD - baseline) x voxel volume`` over a region that contains the bone and its blur
   (the bone found, closed and hole-filled, dilated by ``INTEGRATION_MARGIN_MM``, much more
   than the blur, and ``REGION_SLICES`` slice beyond it: a slice holding a thin share of an
   end plate averages below any seed level), plus ``baseline x bone volume`` (the soft tissue
   the bone displaces, small; the bone volume is the cancellous holes and the voxels above
   ``DISPLACED_BONE_MG_CM3``). The baseline is the local soft-tissue density, interpolated
   into the region from the surrounding soft tissue by normalised convolution (Knutsson &
   Westin 1993, CVPR 515-523) of width ``BASELINE_SD_MM``. This is the excess-mass (integral) approach of
   QCT mineral measurement (Prevrhal, Engelke & Kalender 1999, Phys Med Biol 44:751: the
   product thickness x density of a thin cortex is preserved by blurring even where neither
   factor is).
2. Cancellous mineral = trabecular density x volume inside the inner cortical surface. The
   density is the mean BMD of the interior of each vertebral body (the thresholded cancellous
   holes, gaps of ``INTERIOR_GAP_SLICES`` slices bridged, eroded in-plane by
   ``INTERIOR_EROSION_MM`` and without end slices). The inner surface comes from a model of the
   body fitted to the image (``_fit_body_walls``, ``_fit_body_ends``): an elliptic cylinder
   along the slice axis, trabecular density inside a cortical shell (wall thickness, end-plate
   thicknesses, one cortical density), over the local soft-tissue baseline, blurred as the
   scanner blurs it - an in-plane Gaussian PSF and the pixel (supersampled partial volume), and
   the rectangular slice profile of the slice thickness (DICOM SliceThickness, else the
   spacing). The walls are fitted (soft-L1 least squares, robust to the posterior elements
   attached to the back of the body) on the mean of the central slices; the PSF's SD is a free
   parameter where the wall is thick enough to resolve it (>= ``PSF_RESOLVING_SHELL_MM``) and
   that scan-wide value is imposed on thinner walls, whose thickness and density otherwise
   trade off. Each end plate (outer surface and thickness) is then found by a grid search
   with the walls' cortical density: 2 mm slices see a 1-2 mm plate only through its share
   of a slice, which fixes the product thickness x density and the position, not both
   factors. The cancellous fraction of a voxel is the model core's partial volume (in-plane
   share x slice-profile share). A body with too few slices falls back on the half-maximum
   rule (``_inner_fraction``: the half-max between trabecular level and cortical peak on the
   inner flank of the radial profile), which puts the surface too deep for a thin shell.
3. Cortical mineral = integral - cancellous.

Assumptions of the model: the body is a prism (elliptic cross-section constant along the slice
axis: a tilted spine or wedged, concave end plates would need a 3D shape), the PSF is Gaussian
and the same over the scan, walls and end plates share one cortical density.

Measured on the phantom (Testing/test_tissue.py; cancellous / cortical / total): 1.25 mm noise
20 seed 1 -0.1 / +0.9 / +0.7 %, noise 40 seed 2 -0.3 / +1.1 / +0.8 %, noise 20 seed 3
-0.1 / +0.3 / +0.2 %; 0.8 mm noise 20 seed 2 +1.0 / +1.3 / +1.3 % (before: the half-max rule
-3.4, -6.9, -4.6, -2.5 % cancellous; the smoothed seed as the displaced volume and no slice
beyond the bone, total -2.0, -1.2, -2.3, +1.8 %). Per body the thin L1 (1 mm shell, 50
mg/cm3) is the worst: -0.3, -2.1, +0.4 % at 1.25 mm (its noisy interior misses end slices;
the end-plate search walks from the central slices to the disc). The displaced-volume level matters:
150 / 300 mg/cm3 give totals of +1.1..+2.0 % / -0.4..+0.1 %. Off the default geometry:
3 mm slice profile over 2 mm spacing +0.1 / +1.2 / +1.0 %, 1 mm slices -0.2 / +1.1 / +0.8 %,
a 42 x 35 mm body turned 15 deg +0.0 / -0.2 / -0.1 % (the half-max rule: -4.8, +0.4, -6.4 %
cancellous); a spine tilted 8 deg breaks the prism assumption: -2.9 % cancellous (half-max
-7.2 %); 0.8 mm shells everywhere leave L1 without a thresholded interior (no cancellous
found there, either rule) and L3 at -4 %.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from boneqct.tissue.segmentation import _disk

#: Margin (mm) of the integration region around the bone: covers the PSF and pixel blur.
INTEGRATION_MARGIN_MM = 3.0
#: Slices the integration region reaches beyond the bone found (the slice profile's spread).
REGION_SLICES = 1
#: Density (mg/cm3) above which an unsmoothed voxel counts in the bone's own volume (the soft
#: tissue it displaces, added back to the excess integral): about half way between soft tissue
#: (~40) and the least dense bone outside the bodies (the phantom's posterior elements, 400).
DISPLACED_BONE_MG_CM3 = 218.0
#: Gap (mm) between the integration region and the soft tissue that sets the baseline.
BASELINE_GAP_MM = 2.0
#: Gaussian SD (mm) of the normalised convolution interpolating the soft-tissue baseline.
BASELINE_SD_MM = 5.0
#: Gaps (mm) in a thresholded cortex bridged before its interior is filled.
CORTEX_CLOSING_MM = 3.0
#: Smoothed density (mg/cm3) above which a voxel seeds the bone region (with the cortex):
#: catches thin posterior elements and end plates whose blurred peak falls below the cortical
#: threshold; above any soft tissue's density.
BONE_SEED_MG_CM3 = 200.0
#: In-plane Gaussian SD (pixels) of the smoothing before seeding.
SEED_SMOOTHING_SD_PX = 1.0
#: In-plane erosion (mm) of the cancellous region where the trabecular density is measured.
INTERIOR_EROSION_MM = 2.5


#: Reach (mm) of the radial density profile around a body's interior, each way.
PROFILE_REACH_MM = 8.0
#: Bin width (mm) of the radial density profile.
PROFILE_BIN_MM = 0.25
#: Slice gaps (slices) bridged in a body's interior (a noisy thin cortex may not close a slice).
INTERIOR_GAP_SLICES = 2


def _close_along_slices(mask: np.ndarray) -> np.ndarray:
    """Bridge gaps of up to ``INTERIOR_GAP_SLICES`` slices along k (pixel by pixel)."""
    r = INTERIOR_GAP_SLICES // 2 + INTERIOR_GAP_SLICES % 2
    line = np.ones((2 * r + 1, 1, 1), bool)
    padded = np.pad(mask, ((r, r), (0, 0), (0, 0)))
    return mask | ndimage.binary_closing(padded, line)[r:len(padded) - r]


def _grow_box(box, shape, sampling, reach_mm) -> tuple[slice, ...]:
    grow = [int(np.ceil(reach_mm / s)) for s in sampling]
    return tuple(slice(max(0, b.start - g), min(n, b.stop + g))
                 for b, g, n in zip(box, grow, shape, strict=True))


def _half_max_inner(centres: np.ndarray, profile: np.ndarray, level_in: float) -> float | None:
    """Position of the half-maximum between ``level_in`` and the cortical peak on the inner
    flank (from the peak towards the interior), linearly interpolated; None without a peak."""
    valid = np.isfinite(profile)
    if valid.sum() < 4:
        return None
    c, v = centres[valid], profile[valid]
    near = (c > -3.0) & (c < 4.0)
    if not near.any():
        return None
    peak_at = np.flatnonzero(near)[np.argmax(v[near])]
    half = 0.5 * (level_in + v[peak_at])
    for m in range(peak_at, 0, -1):
        if v[m - 1] <= half <= v[m]:
            return float(c[m - 1] + (half - v[m - 1]) / (v[m] - v[m - 1]) * (c[m] - c[m - 1]))
    return None


def _inner_fraction(bmd: np.ndarray, interior: np.ndarray, sampling, trabecular: float
                    ) -> tuple[np.ndarray, dict]:
    """Fraction (0-1) of each voxel inside the inner cortical surface of one body.

    Each voxel's signed distance to the interior's voxel boundary (negative inside) and its
    class (wall: nearest boundary in-plane; end plate: across slices) give a radial density
    profile per class, averaged over the whole surface; the inner surface lies at the
    half-maximum between the trabecular level and the cortical peak on its inner flank. A
    voxel's fraction is the share of its extent along the normal inside that surface.
    """
    sampling = np.asarray(sampling, float)
    d_out, near_in = ndimage.distance_transform_edt(~interior, sampling=sampling,
                                                    return_indices=True)
    d_in, near_out = ndimage.distance_transform_edt(interior, sampling=sampling,
                                                    return_indices=True)
    grid = np.indices(interior.shape)
    step = np.where(interior, near_out - grid, near_in - grid) * sampling[:, None, None, None]
    plate = np.abs(step[0]) > np.hypot(step[1], step[2])
    extent = np.where(plate, sampling[0], 0.5 * (sampling[1] + sampling[2]))
    signed = np.where(interior, 0.5 * extent - d_in, d_out - 0.5 * extent)
    fraction = np.zeros(interior.shape)
    found = {}
    edges = np.arange(-PROFILE_REACH_MM, PROFILE_REACH_MM + 1e-9, PROFILE_BIN_MM)
    centres = 0.5 * (edges[1:] + edges[:-1])
    for name, cls in (("wall", ~plate), ("end_plate", plate)):
        s, v = signed[cls], bmd[cls]
        count, _ = np.histogram(s, edges)
        total, _ = np.histogram(s, edges, weights=v)
        profile = np.where(count >= 5, total / np.maximum(count, 1), np.nan)
        position = _half_max_inner(centres, profile, trabecular)
        if position is None:
            position = 0.0
        found[name] = position
        fraction[cls] = np.clip((position - signed[cls]) / extent[cls] + 0.5, 0.0, 1.0)
    return fraction, found


# ----- model-based partition: a blurred elliptic-cylinder body with a cortical shell ------------

#: Sub-samples per pixel edge of the body model (partial volume of the model's surfaces).
MODEL_SUPERSAMPLE = 4
#: In-plane margin (mm) of the model's box around a body's interior.
MODEL_MARGIN_MM = 6.0
#: Robust (soft-L1) residual scale (mg/cm3) of the in-plane fit: the posterior elements
#: attached to the back of the body lie outside the model and must not pull it.
MODEL_RESIDUAL_SCALE_MG_CM3 = 50.0
#: Initial shell thickness (mm), cortical density (mg/cm3) and PSF SD (mm) of the fit.
MODEL_START = (1.5, 700.0, 0.45)
#: A fit whose shell is at least this thick (mm) resolves the blur (its two flanks separate)
#: and sets the scan's PSF for the thinner shells, whose thickness and density trade off.
PSF_RESOLVING_SHELL_MM = 1.4
#: Slices beyond a body's central slices searched for the end plate and the disc past it, and
#: the step (mm) of the search; the model's window reaches END_PLATE_REACH_SLICES past the
#: interior found.
END_PLATE_SEARCH_SLICES = 10
END_PLATE_REACH_SLICES = 6
END_PLATE_STEP_MM = 0.05


def _ellipse_fraction(yy, xx, centre, semi, angle, h):
    """Anti-aliased indicator of an ellipse on a fine grid of spacing ``h`` (mm): the share of
    each fine sample inside, from the first-order signed distance to the ellipse."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - centre[1], yy - centre[0]
    u, v = dx * c + dy * s, -dx * s + dy * c
    a, b = semi
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    grad = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2) / np.maximum(rho, 1e-9)
    return np.clip(0.5 - (rho - 1.0) / np.maximum(grad, 1e-9) / h, 0.0, 1.0)


class _InPlaneModel:
    """Pixel values of a filled ellipse blurred by a Gaussian PSF and the pixel (box)."""

    def __init__(self, shape_ji, pixel_mm):
        n = MODEL_SUPERSAMPLE
        offsets = (np.arange(n) + 0.5) / n - 0.5
        self.yy = ((np.arange(shape_ji[0])[:, None] + offsets).ravel() * pixel_mm[0])[:, None]
        self.xx = ((np.arange(shape_ji[1])[:, None] + offsets).ravel() * pixel_mm[1])[None, :]
        self.h = float(np.sqrt(pixel_mm[0] * pixel_mm[1])) / n
        self.shape = shape_ji

    def __call__(self, centre, semi, angle, sigma_mm=0.0):
        fine = _ellipse_fraction(self.yy, self.xx, centre, semi, angle, self.h)
        if sigma_mm > 0:
            fine = ndimage.gaussian_filter(fine, sigma_mm / self.h, mode="nearest", truncate=4.0)
        n = MODEL_SUPERSAMPLE
        return fine.reshape(self.shape[0], n, self.shape[1], n).mean(axis=(1, 3))


def _slice_overlap(z_mm, thickness_mm, lo, hi):
    """Share of each slice's rectangular sensitivity profile inside [lo, hi] (mm)."""
    return np.clip(np.minimum(z_mm + thickness_mm / 2, hi)
                   - np.maximum(z_mm - thickness_mm / 2, lo), 0.0, None) / thickness_mm


def _fit_walls(image, base, rho_t, model, start, sigma_mm=None):
    """Least-squares (soft-L1) fit of the mean central slice of a body: outer ellipse (centre,
    semi-axes, angle), wall thickness, cortical density and (unless given) the PSF SD.
    Model: base x (1 - O) + rho_c x (O - C) + rho_t x C, O and C the blurred outer and core
    (outer semi-axes minus the wall) ellipses."""
    from scipy.optimize import least_squares

    names = ("cy", "cx", "a", "b", "angle", "wall", "rho_c", "sigma")
    x0 = np.array([*start, *MODEL_START[:2], MODEL_START[2] if sigma_mm is None else sigma_mm])
    free = np.ones(len(names), bool)
    free[-1] = sigma_mm is None
    lower = np.array([-np.inf, -np.inf, 3.0, 3.0, -np.inf, 0.2, 100.0, 0.05])
    upper = np.array([np.inf, np.inf, 150.0, 150.0, np.inf, 8.0, 3000.0, 3.0])
    scale = np.array([1.0, 1.0, 1.0, 1.0, 0.05, 0.2, 50.0, 0.1])

    def full(q):
        p = x0.copy()
        p[free] = q
        return p

    def residual(q):
        cy, cx, a, b, angle, wall, rho_c, sigma = full(q)
        outer = model((cy, cx), (a, b), angle, sigma)
        core = model((cy, cx), (a - wall, b - wall), angle, sigma)
        return (base * (1 - outer) + rho_c * (outer - core) + rho_t * core - image).ravel()

    fit = least_squares(residual, x0[free], bounds=(lower[free], upper[free]), loss="soft_l1",
                        f_scale=MODEL_RESIDUAL_SCALE_MG_CM3, x_scale=scale[free], diff_step=1e-3)
    return dict(zip(names, full(fit.x), strict=True)), bool(fit.success)


def _fit_end(values, base, outer, core, rho_c, rho_t, z_mm, thickness_mm, side, inner_mm):
    """Grid search of one end plate: its outer surface and thickness (the cortical density
    from the walls), least squares over the slices ``values`` (K, J, I) near that end.

    ``side`` is -1 (low z end) or +1; ``inner_mm`` a z well inside the core. Returns
    (outer surface z, thickness) in mm."""
    p = (rho_c - base) * outer            # per unit of the outer body's slice share
    q = np.broadcast_to((rho_t - rho_c) * core, values.shape)  # per unit of the core's share
    r0 = base - values
    sums = [np.einsum("kji,kji->k", x, y) for x, y in
            ((r0, p), (r0, q), (p, p), (p, q), (q, q))]
    rp, rq, pp, pq, qq = sums
    span = float(np.abs(z_mm - inner_mm).max()) + thickness_mm
    ends = np.arange(0.0, span, END_PLATE_STEP_MM)
    plates = np.arange(0.2, 4.0 + 1e-9, END_PLATE_STEP_MM)
    edge = inner_mm + side * ends[:, None, None]                        # outer surface
    inside = edge - side * plates[None, :, None]                        # inner surface
    zz = z_mm[None, None, :]
    far = inner_mm - side * 1e3
    lo_o, hi_o = (edge, far) if side < 0 else (far, edge)
    lo_c, hi_c = (inside, far) if side < 0 else (far, inside)
    zo = _slice_overlap(zz, thickness_mm, np.minimum(lo_o, hi_o), np.maximum(lo_o, hi_o))
    zc = _slice_overlap(zz, thickness_mm, np.minimum(lo_c, hi_c), np.maximum(lo_c, hi_c))
    cost = (2 * zo * rp + 2 * zc * rq + zo**2 * pp + 2 * zo * zc * pq + zc**2 * qq).sum(axis=-1)
    cost = np.where(ends[:, None] > plates[None, :], cost, np.inf)
    e, t = np.unravel_index(np.argmin(cost), cost.shape)
    return float(inner_mm + side * ends[e]), float(plates[t])


def _body_window(box, shape, sampling, reach_slices):
    grow = [reach_slices, *(int(np.ceil(MODEL_MARGIN_MM / s)) for s in sampling[1:])]
    return tuple(slice(max(0, b.start - g), min(n, b.stop + g))
                 for b, g, n in zip(box, grow, shape, strict=True))


def _fit_body_walls(bmd, base, component, box, sampling, rho_t, sigma_mm=None):
    """The in-plane (wall) fit of one body on the mean of its central slices; None when the
    body has too few slices."""
    ks = np.flatnonzero(component.any(axis=(1, 2)))
    if len(ks) < 7:
        return None
    central = ks[2:-2]
    window = _body_window(box, bmd.shape, sampling, END_PLATE_REACH_SLICES)
    k_abs = central + box[0].start
    image = bmd[k_abs][:, window[1], window[2]].mean(axis=0)
    ground = base[k_abs][:, window[1], window[2]].mean(axis=0)
    foot = component[central].any(axis=0)
    fj, fi = np.nonzero(foot)
    y = (fj + box[1].start - window[1].start) * sampling[1]
    x = (fi + box[2].start - window[2].start) * sampling[2]
    w, vec = np.linalg.eigh(np.cov(np.vstack([x, y])))
    start = (y.mean(), x.mean(), 2 * np.sqrt(w[1]) + 1.0, 2 * np.sqrt(max(w[0], 1.0)) + 1.0,
             np.arctan2(vec[1, 1], vec[0, 1]))
    model = _InPlaneModel(image.shape, sampling[1:])
    params, ok = _fit_walls(image.astype(float), ground.astype(float), rho_t, model, start,
                            sigma_mm)
    # plausible: a shell denser than the interior, a core of about the interior found
    core = np.pi * (params["a"] - params["wall"]) * (params["b"] - params["wall"])
    found = foot.sum() * sampling[1] * sampling[2]
    ok = ok and params["rho_c"] > rho_t + 100.0 and 0.7 < core / found < 1.5
    return {"params": params, "ok": ok, "window": window, "model": model,
            "k_first": int(ks[0] + box[0].start), "k_last": int(ks[-1] + box[0].start),
            "k_central": (int(k_abs[0]), int(k_abs[-1]))}


def _end_slices(level, k_in, side, nk, rho_t, rho_c) -> list[int]:
    """Slices from a central one ``k_in`` outwards (``side`` -1 or +1) through the end plate to
    the disc: the level (mean density over the core's footprint) leaves the trabecular level
    at the plate, and the walk stops where it rises again after falling (the next body)."""
    tolerance = max(15.0, 0.1 * abs(rho_c - rho_t))
    ks, departed, falling, previous = [k_in], False, False, None
    for n in range(1, END_PLATE_SEARCH_SLICES + 1):
        k = k_in + side * n
        if not 0 <= k < nk:
            break
        value = level(k)
        if departed and previous is not None:
            if falling and value > previous:
                break
            falling = falling or value < previous
        ks.append(k)
        departed = departed or abs(value - rho_t) > tolerance
        previous = value if departed else None
    return sorted(ks)


def _fit_body_ends(bmd, base, fit, rho_t, z_mm, thickness_mm):
    """End plates of a body whose walls are fitted; the core's partial-volume fraction in the
    body's window (K, J, I) and the end-plate parameters."""
    p, model, window = fit["params"], fit["model"], fit["window"]
    centre, angle, sigma = (p["cy"], p["cx"]), p["angle"], p["sigma"]
    outer = model(centre, (p["a"], p["b"]), angle, sigma)
    core = model(centre, (p["a"] - p["wall"], p["b"] - p["wall"]), angle, sigma)
    deep = core > 0.99
    ends = {}
    nk = bmd.shape[0]
    for side, k_in in ((-1, fit["k_central"][0]), (1, fit["k_central"][1])):
        ks = _end_slices(lambda k: float(bmd[k][window[1:]][deep].mean()) if deep.any()
                         else float(bmd[k][window[1:]][core > 0.5].mean()),
                         k_in, side, nk, rho_t, p["rho_c"])
        planes = (ks, window[1], window[2])
        ends[side] = _fit_end(bmd[planes].astype(float), base[planes].astype(float), outer, core,
                              p["rho_c"], rho_t, z_mm[ks], thickness_mm, side, float(z_mm[k_in]))
    (lo, t_lo), (hi, t_hi) = ends[-1], ends[1]
    ks = np.arange(window[0].start, window[0].stop)
    share = _slice_overlap(z_mm[ks], thickness_mm, lo + t_lo, hi - t_hi)
    inside = model(centre, (p["a"] - p["wall"], p["b"] - p["wall"]), angle, 0.0)
    return share[:, None, None] * inside[None], {"low_mm": lo, "low_plate_mm": t_lo,
                                                 "high_mm": hi, "high_plate_mm": t_hi}


def _per_slice(function, mask: np.ndarray) -> np.ndarray:
    return np.stack([function(m) for m in mask]) if len(mask) else mask.copy()


def bone_regions(cortical: np.ndarray, pixel_mm: np.ndarray, min_cancellous_area_mm2: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per slice: the filled bone (cortex closed over gaps of ``CORTEX_CLOSING_MM``, holes
    filled) and the cancellous holes of at least ``min_cancellous_area_mm2`` it encloses."""
    from boneqct.tissue.segmentation import bone_envelope

    disk = _disk(CORTEX_CLOSING_MM / pixel_mm)
    closed = _per_slice(lambda m: ndimage.binary_closing(m, disk) | m, cortical)
    filled = _per_slice(ndimage.binary_fill_holes, closed)
    holes = _per_slice(lambda m: bone_envelope(m, pixel_mm, min_cancellous_area_mm2), closed)
    return filled, holes


def _baseline(bmd: np.ndarray, soft: np.ndarray, sd_px: np.ndarray) -> np.ndarray:
    """Soft-tissue density interpolated everywhere by normalised in-plane convolution."""
    sigma = (0.0, *sd_px)
    weight = ndimage.gaussian_filter(soft.astype(np.float32), sigma)
    value = ndimage.gaussian_filter(np.where(soft, bmd, 0.0).astype(np.float32), sigma)
    fallback = float(np.median(bmd[soft])) if soft.any() else 0.0
    return np.where(weight > 1e-3, value / np.maximum(weight, 1e-3), fallback)


def bone_mineral(bmd: np.ndarray, body: np.ndarray, cortical: np.ndarray, spacing_mm,
                 min_cancellous_area_mm2: float, soft_tissue: np.ndarray,
                 slice_thickness_mm: float | None = None, model: bool = True,
                 open_cortex_cancellous: np.ndarray | None = None) -> dict:
    """Voxel maps of the partial-volume-aware mineral (module docstring, rules 1-3).

    Args:
        bmd: calibrated density (mg/cm3), KJI.
        body: body mask, KJI.
        cortical: thresholded cortex, KJI.
        spacing_mm: (i, j, k) spacing in mm (square-ish pixels assumed).
        min_cancellous_area_mm2: smallest cancellous cross-section.
        soft_tissue: voxels that may set the baseline (fat and lean soft tissue), KJI.
        slice_thickness_mm: width of the rectangular slice profile (DICOM SliceThickness);
            None: the slice spacing.
        model: split cancellous from cortical by the fitted body model (rule 2); False: by the
            half-maximum rule only.
        open_cortex_cancellous: cancellous bone the caller found where the cortex does not
            close (``segmentation.open_cortex_cancellous``), KJI; added to the enclosed holes.

    Returns:
        ``{"integral", "cancellous", "cortical"}`` voxel maps of mineral density x fraction
        (mg/cm3; sum x voxel volume = mass), ``"cancellous_fraction"`` (0-1) and
        ``"trabecular_bmd"`` (one value per cancellous component), ``"inner_surfaces"`` (per
        body the fitted model's parameters in mm and mg/cm3 - window coordinates - or the
        half-max rule's surface offsets), and ``"bone"`` (the
        filled bone) and ``"region"`` (the integration region).
    """
    pixel_mm = np.array([spacing_mm[1], spacing_mm[0]], float)
    smooth = ndimage.gaussian_filter(bmd, (0.0, SEED_SMOOTHING_SD_PX, SEED_SMOOTHING_SD_PX))
    seed = cortical | (body & (smooth >= BONE_SEED_MG_CM3))
    # only what is joined (in 3D) to thresholded cortex is bone: contrast-filled kidneys and
    # vessels above the seed level without any cortex are not (on the real slices they put
    # 28 g of "cortical mineral" in the kidneys)
    seed_labels, _ = ndimage.label(seed)
    seed = np.isin(seed_labels, np.unique(seed_labels[cortical & seed])) & (seed_labels > 0)
    filled, seed_holes = bone_regions(seed, pixel_mm, min_cancellous_area_mm2)
    shell, holes = bone_regions(cortical, pixel_mm, min_cancellous_area_mm2)
    shell &= body
    filled &= body
    holes &= body
    if open_cortex_cancellous is not None:
        holes |= open_cortex_cancellous & body
    grow = _disk(INTEGRATION_MARGIN_MM / pixel_mm)
    # the slice next to a bone's end may hold a thin share of an end plate or process (below
    # the seed level after the slice profile averages it with the disc): integrate it too
    reach = ndimage.binary_dilation(filled, np.ones((2 * REGION_SLICES + 1, 1, 1), bool)) \
        if len(filled) > 1 else filled
    region = _per_slice(lambda m: ndimage.binary_dilation(m, grow), reach) & body
    far = _per_slice(lambda m: ndimage.binary_dilation(
        m, _disk((INTEGRATION_MARGIN_MM + BASELINE_GAP_MM) / pixel_mm)), reach)
    soft = soft_tissue & body & ~far
    base = _baseline(bmd, soft, BASELINE_SD_MM / pixel_mm)
    # the bone's own volume (no canal): the cancellous holes and the voxels above the half
    # level of the posterior elements over soft tissue, unsmoothed (the smoothed seed's 200
    # mg/cm3 reaches about a pixel beyond a blurred edge and overstated it by 1-2 % of the mass)
    bone = ((bmd >= DISPLACED_BONE_MG_CM3) | holes) & region
    integral = np.where(region, bmd - base, 0.0) + np.where(bone & region, base, 0.0)

    # cancellous: interior density per vertebral body x volume inside its inner cortical surface
    sampling = (float(spacing_mm[2]), *pixel_mm)
    thickness = float(slice_thickness_mm or spacing_mm[2])
    labels, n = ndimage.label(_close_along_slices(holes))
    trabecular = np.zeros(n)
    fraction = np.zeros(bmd.shape)
    cancellous = np.zeros(bmd.shape)
    erode = _disk(INTERIOR_EROSION_MM / pixel_mm)
    bodies = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        component = labels[box] == index
        interior = _per_slice(lambda m: ndimage.binary_erosion(m, erode), component)
        ks = np.flatnonzero(interior.any(axis=(1, 2)))
        if len(ks) > 2:
            interior[ks[0]] = interior[ks[-1]] = False
        if not interior.any():
            continue
        density = float(bmd[box][interior].mean())
        trabecular[index - 1] = density
        fit = _fit_body_walls(bmd, base, component, box, sampling, density) if model else None
        bodies.append((index, box, density, fit))
    # the scan's PSF from the shells thick enough to resolve it; thinner shells refitted with it
    fits = [b[3] for b in bodies if b[3] is not None]
    resolved = [f["params"]["sigma"] for f in fits if f["params"]["wall"] >= PSF_RESOLVING_SHELL_MM]
    sigma = float(np.median(resolved)) if resolved else None
    surfaces = []
    z_mm = np.arange(bmd.shape[0]) * sampling[0]
    results, extents = [], []
    for index, box, density, fit in bodies:
        if fit is not None and sigma is not None and fit["params"]["wall"] < PSF_RESOLVING_SHELL_MM:
            fit = _fit_body_walls(bmd, base, labels[box] == index, box, sampling, density, sigma)
        if fit is not None and fit["ok"]:
            part, ends = _fit_body_ends(bmd, base, fit, density, z_mm, thickness)
            results.append((index, box, density, fit["window"], part,
                            {**{k: float(v) for k, v in fit["params"].items()}, **ends}))
            extents.append((fit["window"], ends["low_mm"], ends["high_mm"]))
        else:
            results.append((index, box, density, None, None, None))
    for index, box, density, grown, part, found in results:
        if grown is None:
            # a fragment of a modelled body (a slice of its end plate enclosed by its wall,
            # taken for an interior) is that body's: its cancellous bone is the model's
            k_mid = 0.5 * (box[0].start + box[0].stop - 1) * sampling[0]
            j_mid, i_mid = (0.5 * (b.start + b.stop) for b in box[1:])
            if any(w[1].start <= j_mid < w[1].stop and w[2].start <= i_mid < w[2].stop
                   and low - thickness <= k_mid <= high + thickness for w, low, high in extents):
                surfaces.append({"part_of_modelled_body": 1.0})
                continue
            grown = _grow_box(box, bmd.shape, sampling, PROFILE_REACH_MM)
            part, found = _inner_fraction(bmd[grown], labels[grown] == index, sampling, density)
        surfaces.append(found)
        better = part > fraction[grown]
        fraction[grown] = np.where(better, part, fraction[grown])
        cancellous[grown] = np.where(better, part * density, cancellous[grown])
    return {"integral": integral, "cancellous": cancellous, "cortical": integral - cancellous,
            "cancellous_fraction": fraction, "trabecular_bmd": trabecular.tolist(),
            "inner_surfaces": surfaces,
            "bone": bone, "region": region}
