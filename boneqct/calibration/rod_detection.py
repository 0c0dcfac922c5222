"""Automatic detection and measurement of the calibration phantom's rods in an axial CT.

Algorithm (on the mean image of the chosen slices, block-averaged to ~1/16 rod diameter):

1. Matched circular filter at 10 radii r (0.5-1.6 x nominal): contrast = mean HU in a disk
   of 0.6 r minus mean HU in a thin ring (1.1-1.4 r), kept only where the ring is inside the
   object (no air) and uniform, so that phantom edges and side lobes do not respond.
2. Seeds are the strongest local maxima of |contrast| (rods may be brighter or darker than
   the phantom body). The response is flat once the ring clears the rod (in radius) and
   while the disk stays inside it (in position), so a seed's radius is the smallest that
   reaches 90% of its largest response and its centre is the sub-pixel centroid of
   |HU - ring median| within 1.3 radii; every pair of seeds whose direction is within 20 degrees of
   left-right (taken from ``ijk_to_ras``, not from the array orientation) is a line
   hypothesis, scored by the summed contrast of the seeds of similar radius on it.
3. Along each line the |contrast| profile at the seeds' radius is searched for the
   definition's number of rods (greedy peaks, non-overlapping). A rod with no contrast
   against the body (e.g. HA0 in a water-equivalent block) is placed by the spacing of its
   neighbours; rod spacing must be similar (max/min gap < 1.6) but its value is not used.
4. The most posterior (RAS -y) line that yields the full set of rods wins.
5. Names: rods are ordered along the line from patient right to left (the definitions'
   layout) and the listed order and its reverse are both fitted; the assignment with the
   larger R^2 of the definition's calibration model is kept (ties keep the listed order).

Rods are assumed parallel to the slice normal; ROIs (radius 0.6 x detected radius and at
least 2 voxels inside the edge) are measured in every slice, and slices in which the rods'
HU pattern is absent (phantom shorter than the scan) are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import combinations

import numpy as np
from scipy import fft, ndimage

from boneqct.calibration.definitions import PhantomDefinition
from boneqct.calibration.fit import (
    MINDWAYS_INTERCEPT_OFFSET_HU,
    MINDWAYS_SLOPE_OFFSET_HU_PER_MG_CM3,
    fit_line,
)
from boneqct.errors import CalibrationError
from boneqct.volume import Volume

#: Detected rod radius range relative to the nominal radius (phantom lots differ).
RADIUS_FACTORS = (0.5, 0.57, 0.65, 0.74, 0.84, 0.95, 1.08, 1.23, 1.4, 1.6)
#: A rod's radius is the smallest filter radius whose |contrast| reaches this fraction of the
#: largest |contrast| over all radii (the start of the plateau, where the ring clears the rod).
RADIUS_PLATEAU_FRACTION = 0.9
#: Voxels above this HU belong to the object (patient, phantom, table); below is air.
OBJECT_THRESHOLD_HU = -400.0
#: Largest angle (degrees) between the rod line and the patient's left-right axis.
MAX_LINE_ANGLE_DEG = 20.0
#: Largest ratio of the largest to the smallest gap between neighbouring rods.
MAX_GAP_RATIO = 1.6
#: ROI radius as a fraction of the detected rod radius, and the minimum edge margin (voxels).
ROI_RADIUS_FRACTION = 0.6
ROI_EDGE_MARGIN_VOXELS = 2
#: Largest difference (HU) between a rod placed by spacing and the other rods' prediction.
PLACED_ROD_TOLERANCE_HU = 25.0
#: A slice shows the phantom if its rod HU correlate with the pooled ones at least this much.
MIN_SLICE_CORRELATION = 0.9

_REMEDY = (
    "Check that the phantom is in the field of view below the patient, choose a slice range "
    "that shows its rods (--slices), check the phantom definition (--phantom), or pass "
    "--slope/--intercept for a manual calibration."
)


@dataclass
class DetectedRod:
    """One rod as found and measured.

    Attributes:
        name: rod name from the definition.
        radius_mm: detected rod radius; roi_radius_mm: radius of the measurement ROI.
        center_ras_mm: rod centre in RAS (mm) at the middle of the slices used.
        center_ij: fractional (i, j) voxel position of the centre.
        mean_hu, sd_hu, n_voxels: pooled over all ROI voxels of all slices used.
        mean_hu_per_slice, sd_hu_per_slice, n_voxels_per_slice: one entry per slice used.
        contrast_hu: mean HU of the rod minus its surroundings; placed_by_spacing: True when
            the rod had no measurable contrast and was placed from its neighbours' spacing.
    """

    name: str
    radius_mm: float
    roi_radius_mm: float
    center_ras_mm: np.ndarray
    center_ij: np.ndarray
    mean_hu: float
    sd_hu: float
    n_voxels: int
    mean_hu_per_slice: np.ndarray
    sd_hu_per_slice: np.ndarray
    n_voxels_per_slice: np.ndarray
    contrast_hu: float
    placed_by_spacing: bool = False


@dataclass
class RodDetection:
    """Rods of one phantom found in a volume, in the definition's order."""

    phantom: str
    rods: list[DetectedRod]
    slices_k: list[int]
    body_hu: float
    r2: float
    warnings: list[str] = field(default_factory=list)

    def pooled_hu(self) -> dict[str, float]:
        """Mean HU per rod name, pooled over all slices."""
        return {r.name: r.mean_hu for r in self.rods}


@dataclass
class _Plane:
    """In-plane geometry of the (block-averaged) detection image."""

    spacing_ji_mm: np.ndarray      # pixel size along j, i
    posterior_ji: np.ndarray       # mm of posterior (RAS -y) per pixel step along j, i
    left_ji: np.ndarray            # mm of patient-left (RAS -x) per pixel step along j, i


def _plane_geometry(volume: Volume, factor: int) -> _Plane:
    direction = volume.direction_ras
    if abs(direction[2, 2]) < np.cos(np.radians(30.0)):
        raise CalibrationError(
            "Automatic phantom detection needs axial slices (slice normal within 30 degrees of "
            "the patient's long axis); this volume is not axial. Reformat it to axial or pass "
            "--slope/--intercept for a manual calibration.")
    step_mm = volume.spacing_mm[:2] * factor              # along i, j
    axes_ras = direction[:, :2] * step_mm                 # RAS mm per step along i, j
    return _Plane(spacing_ji_mm=step_mm[::-1],
                  posterior_ji=-axes_ras[1, ::-1], left_ji=-axes_ras[0, ::-1])


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    nj, ni = (s // factor * factor for s in image.shape)
    img = image[:nj, :ni]
    return img.reshape(nj // factor, factor, ni // factor, factor).mean(axis=(1, 3))


def _disk_kernel(r_in_mm: float, r_out_mm: float, spacing_ji_mm: np.ndarray) -> np.ndarray:
    """Normalised kernel of the pixels whose centres are r_in <= r <= r_out mm from the centre."""
    nj, ni = (int(np.ceil(r_out_mm / s)) for s in spacing_ji_mm)
    dj, di = np.mgrid[-nj:nj + 1, -ni:ni + 1]
    r = np.hypot(dj * spacing_ji_mm[0], di * spacing_ji_mm[1])
    k = ((r >= r_in_mm) & (r <= r_out_mm)).astype(np.float32)
    if not k.any():
        k[nj, ni] = 1.0
    return k / k.sum()


def _contrast_maps(image: np.ndarray, obj: np.ndarray, radii_mm, spacing_ji_mm: np.ndarray,
                   noise_hu: float) -> list[np.ndarray]:
    """Matched circular filter: mean HU of a disk (0.6 r) minus that of a thin ring (1.1-1.4 r).

    One map per radius. The thin ring keeps the reference inside the phantom body even when
    the body is only a few mm thicker than the rods. NaN where the ring reaches air (object
    edges); 0 where the ring is not uniform (SD above half the contrast and above 4x the
    noise), which removes the side lobes between bright rods and the response to edges
    between tissues. The image, its square and the object mask are transformed once.
    """
    r_max_mm = 1.4 * max(radii_mm)
    pad_ji = [2 * int(np.ceil(r_max_mm / s)) for s in spacing_ji_mm]
    shape = [fft.next_fast_len(n + p, real=True) for n, p in zip(image.shape, pad_ji, strict=True)]
    spectra = [fft.rfft2(a, s=shape) for a in (image, image * image, obj)]

    def filtered(kernel, image_spectra):
        """The images convolved with ``kernel`` ('same' size, kernel centred)."""
        kernel_spectrum = fft.rfft2(kernel, s=shape)
        hj, hi = kernel.shape[0] // 2, kernel.shape[1] // 2
        return [fft.irfft2(sp * kernel_spectrum, s=shape)[hj:hj + image.shape[0],
                                                          hi:hi + image.shape[1]]
                for sp in image_spectra]

    maps = []
    for radius_mm in radii_mm:
        mean_in, = filtered(_disk_kernel(0.0, ROI_RADIUS_FRACTION * radius_mm, spacing_ji_mm),
                            spectra[:1])
        ring_mean, ring_sq, ring_obj = filtered(
            _disk_kernel(1.1 * radius_mm, 1.4 * radius_mm, spacing_ji_mm), spectra)
        ring_sd = np.sqrt(np.maximum(ring_sq - ring_mean ** 2, 0.0))
        contrast = mean_in - ring_mean
        uniform = ring_sd <= np.maximum(0.5 * np.abs(contrast), 4.0 * noise_hu)
        maps.append(np.where(ring_obj > 0.999, np.where(uniform, contrast, 0.0), np.nan))
    return maps


def _noise_hu(image: np.ndarray, obj: np.ndarray) -> float:
    """Robust pixel noise SD (HU) from horizontal neighbour differences inside the object."""
    inside = obj > 0
    d = np.diff(image, axis=1)[inside[:, 1:] & inside[:, :-1]]
    if d.size < 10:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def _seeds(contrast_maps: list[np.ndarray], radii_mm, min_spacing_px, threshold_hu, n_max=25):
    """Strongest local maxima of |contrast| over scales: arrays (pos_ji, radius_mm, contrast).

    Once the ring clears a rod's edge the contrast stays on a plateau as the radius grows
    (until the ring meets other structures), so the largest response says little about the
    rod's size: its radius is the smallest one that reaches ``RADIUS_PLATEAU_FRACTION`` of
    the seed's largest |contrast| over scales.
    """
    signed_stack = np.stack(contrast_maps)
    stack = np.abs(np.nan_to_num(signed_stack, nan=0.0))
    score = stack.max(axis=0)
    peaks = (score == ndimage.maximum_filter(score, size=min_spacing_px)) & (score > threshold_hu)
    jj, ii = np.nonzero(peaks)
    order = np.argsort(score[jj, ii])[::-1][:n_max]
    jj, ii = jj[order], ii[order]
    per_scale = stack[:, jj, ii]                                        # (radii, seeds)
    edge = (per_scale >= RADIUS_PLATEAU_FRACTION * score[jj, ii]).argmax(axis=0)
    signed = signed_stack[per_scale.argmax(axis=0), jj, ii]
    return (np.stack([jj, ii], axis=1).astype(float), np.asarray(radii_mm)[edge], signed)


def _line_hypotheses(pos_ji, radius_mm, contrast, plane: _Plane, tol_mm, max_span_mm):
    """Candidate rod lines from pairs of seeds: list of (score, inlier indices)."""
    pos_mm = pos_ji * plane.spacing_ji_mm
    lr_mm = plane.left_ji / plane.spacing_ji_mm            # unit-ish direction in mm space
    lr_mm = lr_mm / np.linalg.norm(lr_mm)
    lines = {}
    for a, b in combinations(range(len(pos_mm)), 2):
        v = pos_mm[b] - pos_mm[a]
        length = np.linalg.norm(v)
        if length < 1.5 * min(radius_mm[a], radius_mm[b]) or length > max_span_mm:
            continue
        u = v / length
        if abs(u @ lr_mm) < np.cos(np.radians(MAX_LINE_ANGLE_DEG)):
            continue
        normal = np.array([-u[1], u[0]])
        r_ref = 0.5 * (radius_mm[a] + radius_mm[b])
        inliers = np.nonzero((np.abs((pos_mm - pos_mm[a]) @ normal) < tol_mm)
                             & (radius_mm < 1.6 * r_ref) & (radius_mm > r_ref / 1.6))[0]
        key = tuple(inliers)
        lines[key] = float(np.abs(contrast[inliers]).sum())
    return sorted(((s, np.array(k)) for k, s in lines.items()), key=lambda x: -x[0])


def _rods_along_line(contrast_r, obj, pos_ji, plane: _Plane, n_rods, radius_mm, tol_mm,
                     thr_hu):
    """Rods along the line through ``pos_ji``.

    Returns:
        (alternatives, n_found): each alternative is ((n_rods, 2) positions (j, i) in pixels,
        boolean array of rods placed by spacing); n_found is the number of rods with contrast.
    """
    pos_mm = pos_ji * plane.spacing_ji_mm
    centre = pos_mm.mean(axis=0)
    if len(pos_mm) >= 2:
        _, _, vt = np.linalg.svd(pos_mm - centre)
        u = vt[0]
    else:
        u = plane.left_ji / plane.spacing_ji_mm
        u = u / np.linalg.norm(u)
    normal = np.array([-u[1], u[0]])
    half_span = (pos_mm - centre) @ u
    reach = (n_rods - 1) * 5.0 * radius_mm
    step = float(plane.spacing_ji_mm.min())
    t = np.arange(half_span.min() - reach, half_span.max() + reach + step, step)
    offsets = np.linspace(-tol_mm, tol_mm, 3)
    pts = centre + t[:, None, None] * u + offsets[None, :, None] * normal   # (t, off, 2) mm
    idx = (pts / plane.spacing_ji_mm).reshape(-1, 2).T
    vals = ndimage.map_coordinates(contrast_r, idx, order=0, mode="constant",
                                   cval=np.nan).reshape(len(t), len(offsets))
    inside = np.isfinite(vals).any(axis=1)
    vals = np.where(np.isfinite(vals), vals, 0.0)
    best_off = np.abs(vals).argmax(axis=1)
    profile = np.abs(vals[np.arange(len(t)), best_off])
    profile[~inside] = 0.0
    found = []
    work = profile.copy()
    while len(found) < n_rods:
        m = int(work.argmax())
        if work[m] <= thr_hu:
            break
        found.append(m)
        work[np.abs(t - t[m]) < 1.8 * radius_mm] = 0.0
    found.sort()
    # A rod placed by spacing must lie in the object (it may sit too close to air or other
    # materials for the filter's ring).
    on_line = (centre + t[:, None] * u) / plane.spacing_ji_mm
    in_object = ndimage.map_coordinates(obj, on_line.T, order=0, mode="constant") > 0.5
    alternatives = _complete_set([t[m] for m in found], n_rods, t[in_object])
    result = []
    for ts in alternatives:
        ts = np.asarray(ts)
        off = np.array([offsets[best_off[np.abs(t - x).argmin()]] for x in ts])
        placed = ~np.isin(ts, t[found])
        off[placed] = 0.0
        pts_mm = centre + ts[:, None] * u + off[:, None] * normal
        result.append((pts_mm / plane.spacing_ji_mm, placed))
    return result, len(found)


def _complete_set(t_found, n_rods, t_inside) -> list[list[float]]:
    """Positions along the line of all rods: as found, or with one rod placed by spacing."""
    t_found = sorted(t_found)
    if len(t_found) == n_rods:
        gaps = np.diff(t_found)
        return [t_found] if n_rods < 3 or gaps.max() <= MAX_GAP_RATIO * gaps.min() else []
    if len(t_found) != n_rods - 1 or len(t_found) < 2:
        return []
    gaps = np.diff(t_found)
    lo, hi = (t_inside.min(), t_inside.max()) if t_inside.size else (0.0, -1.0)
    if len(gaps) >= 2:
        big = int(gaps.argmax())
        others = np.delete(gaps, big)
        if 2.0 / MAX_GAP_RATIO * others.max() <= gaps[big] <= 2.0 * MAX_GAP_RATIO * others.min() \
                and gaps[big] > MAX_GAP_RATIO * others.max():
            return [sorted(t_found + [t_found[big] + gaps[big] / 2.0])]
        if gaps.max() > MAX_GAP_RATIO * gaps.min():
            return []
    step = float(np.mean(gaps))
    return [sorted(t_found + [x]) for x in (t_found[0] - step, t_found[-1] + step)
            if lo <= x <= hi]


def _roi_offsets(roi_radius_mm: float, spacing_ji_mm: np.ndarray) -> np.ndarray:
    """Integer (dj, di) offsets of the pixels within ``roi_radius_mm`` of a pixel centre."""
    nj, ni = (int(np.ceil(roi_radius_mm / s)) for s in spacing_ji_mm)
    dj, di = np.mgrid[-nj:nj + 1, -ni:ni + 1]
    inside = (dj * spacing_ji_mm[0]) ** 2 + (di * spacing_ji_mm[1]) ** 2 <= roi_radius_mm ** 2
    return np.stack([dj[inside], di[inside]], axis=1)


def _measure(array_kji: np.ndarray, ks: np.ndarray, center_ji: np.ndarray,
             offsets: np.ndarray) -> np.ndarray:
    """ROI HU values, shape (len(ks), n_offsets); centre rounded to the nearest voxel."""
    c = np.round(center_ji).astype(int)
    jj = np.clip(c[0] + offsets[:, 0], 0, array_kji.shape[1] - 1)
    ii = np.clip(c[1] + offsets[:, 1], 0, array_kji.shape[2] - 1)
    return array_kji[ks[:, None], jj[None, :], ii[None, :]].astype(np.float64)


def _find_line(image, obj, plane: _Plane, definition: PhantomDefinition):
    """Rod sets on the most posterior complete line.

    Returns:
        ((alternatives, radius_mm, contrast_map) or None, largest number of rods seen on a line).
    """
    n_rods = len(definition.rods)
    r_nom = definition.nominal_rod_diameter_mm / 2.0
    radii = [f * r_nom for f in RADIUS_FACTORS]
    noise = _noise_hu(image, obj)
    maps = _contrast_maps(image, obj, radii, plane.spacing_ji_mm, noise)
    # SD of the contrast of the 0.6r disk against its ring, doubled for noise correlation.
    n_in = max(1.0, np.pi * (ROI_RADIUS_FRACTION * radii[0]) ** 2 / np.prod(plane.spacing_ji_mm))
    thr_hu = max(8.0, 5.0 * 2.0 * noise / np.sqrt(n_in))
    min_sep_px = max(3, int(round(radii[0] / plane.spacing_ji_mm.min())))
    pos, rad, con = _seeds(maps, radii, min_sep_px, max(3 * thr_hu, 30.0))
    pos = np.array([_refine_center(image, p, r, _ring_median_hu(image, p, r, plane.spacing_ji_mm),
                                   plane.spacing_ji_mm) for p, r in zip(pos, rad, strict=True)])
    tol_mm = max(1.5 * plane.spacing_ji_mm.max(), 0.3 * r_nom)
    max_span = (n_rods - 1) * 6.0 * r_nom
    posterior_mm = plane.posterior_ji / plane.spacing_ji_mm
    best, most_found = None, 0
    for _score, inliers in _line_hypotheses(pos, rad, con, plane, tol_mm, max_span)[:15]:
        r_line = float(np.median(rad[inliers]))
        contrast_r = maps[radii.index(min(radii, key=lambda r: abs(r - r_line)))]
        alts, n_found = _rods_along_line(contrast_r, obj, pos[inliers], plane, n_rods, r_line,
                                         tol_mm, thr_hu)
        most_found = max(most_found, n_found)
        if not alts:
            continue
        depth = float(np.mean(alts[0][0] * plane.spacing_ji_mm @ posterior_mm))
        if best is None or depth > best[0]:
            best = (depth, alts, r_line, contrast_r)
    return (None if best is None else best[1:]), most_found


def detect_rods(volume: Volume, definition: PhantomDefinition,
                slice_range: tuple[int, int] | None = None) -> RodDetection:
    """Find and measure the rods of ``definition`` in an axial HU volume.

    Args:
        volume: CT volume in HU (KJI array, IJK->RAS matrix).
        definition: the phantom (rod count, nominal diameter, certified densities).
        slice_range: (first_k, stop_k) half-open range of slices to search; default all.

    Raises:
        CalibrationError: no phantom found, or not all of its rods.
    """
    nk = volume.array_kji.shape[0]
    k0, k1 = (0, nk) if slice_range is None else (max(0, slice_range[0]), min(nk, slice_range[1]))
    if k1 <= k0:
        raise CalibrationError(f"The slices {slice_range[0]}:{slice_range[1] - 1} (first:last, "
                               f"inclusive) lie outside this volume's 0:{nk - 1}. {_REMEDY}")
    n_rods = len(definition.rods)
    factor = max(1, int(definition.nominal_rod_diameter_mm / 16.0
                        / volume.spacing_mm[:2].min()))
    plane = _plane_geometry(volume, factor)
    ks = np.arange(k0, k1)
    mean_full = volume.array_kji[k0:k1].mean(axis=0, dtype=np.float32)
    mean_image = _block_mean(mean_full, factor)
    obj = (mean_image > OBJECT_THRESHOLD_HU).astype(np.float32)
    found, most_found = _find_line(mean_image, obj, plane, definition)
    # a partial phantom needs most of its rods in a row: two rod-like blobs in line also
    # occur in the table and the body's soft tissue when no phantom is there
    if found is None and max(2, n_rods // 2 + 1) <= most_found < n_rods:
        raise CalibrationError(
            f"Only {most_found} of the {n_rods} rods of phantom '{definition.name}' "
            f"were found in a row in slices {k0}-{k1 - 1}: "
            f"part of the phantom may be outside the field of view, hidden by artefacts, or the "
            f"phantom definition may not match the scanned phantom. {_REMEDY}")
    if found is None:
        raise CalibrationError(
            f"No calibration phantom '{definition.name}' was found: no row of {n_rods} rods of "
            f"about {definition.nominal_rod_diameter_mm:g} mm diameter was seen in slices "
            f"{k0}-{k1 - 1}. {_REMEDY}")
    alternatives, radius_mm, contrast_r = found
    full_spacing_ji = volume.spacing_mm[1::-1]
    roi_r = min(ROI_RADIUS_FRACTION * radius_mm,
                radius_mm - ROI_EDGE_MARGIN_VOXELS * full_spacing_ji.max())
    offsets = _roi_offsets(max(roi_r, full_spacing_ji.max()), full_spacing_ji)
    left_mm = plane.left_ji / plane.spacing_ji_mm
    body_hu = _body_hu(mean_image, obj, alternatives[0][0], radius_mm, plane)
    candidates = []
    for pos_ji, placed in alternatives:
        full_ji = np.array([c if p else _refine_center(mean_full, c, radius_mm, body_hu,
                                                        full_spacing_ji)
                            for c, p in zip(pos_ji * factor + (factor - 1) / 2.0, placed,
                                            strict=True)])
        values = [_measure(volume.array_kji, ks, c, offsets) for c in full_ji]
        pooled = np.array([v.mean() for v in values])
        right_to_left = np.argsort(pos_ji * plane.spacing_ji_mm @ left_mm)
        for order in (right_to_left, right_to_left[::-1]):
            slope, _, r2, _ = fit_line(definition, pooled[order])
            if slope > 0 and _placed_rod_consistent(definition, pooled[order], placed[order]):
                candidates.append((r2, order, full_ji, values, placed, pos_ji))
    if not candidates:
        raise CalibrationError(
            f"The row of rods found does not match phantom '{definition.name}': fewer than its "
            f"{n_rods} rods show contrast, or their HU do not increase with the certified "
            f"densities in either order along the row. {_REMEDY}")
    r2, order, full_ji, values, placed, pos_ji = max(candidates, key=lambda c: c[0])
    keep = _slices_showing_rods(values)
    warnings = []
    if not keep.all():
        warnings.append(f"The phantom's rods were not seen in {int((~keep).sum())} of "
                        f"{len(keep)} slices; those slices were left out of the calibration.")
    ks_used = ks[keep]
    mid_k = float(np.median(ks_used))
    rods = []
    for name_index, det_index in enumerate(order):
        v = values[det_index][keep]
        cji = full_ji[det_index]
        c_coarse = np.clip(np.round(pos_ji[det_index]).astype(int), 0,
                           np.array(contrast_r.shape) - 1)
        rods.append(DetectedRod(
            name=definition.rods[name_index].name, radius_mm=float(radius_mm),
            roi_radius_mm=float(max(roi_r, full_spacing_ji.max())),
            center_ras_mm=volume.ijk_to_ras_points([cji[1], cji[0], mid_k])[0],
            center_ij=np.array([cji[1], cji[0]]),
            mean_hu=float(v.mean()), sd_hu=float(v.std(ddof=1)), n_voxels=int(v.size),
            mean_hu_per_slice=v.mean(axis=1), sd_hu_per_slice=v.std(axis=1, ddof=1),
            n_voxels_per_slice=np.full(len(v), v.shape[1]),
            contrast_hu=float(np.nan_to_num(contrast_r[tuple(c_coarse)])),
            placed_by_spacing=bool(placed[det_index])))
        if placed[det_index]:
            warnings.append(f"Rod {rods[-1].name} shows no contrast against the phantom body "
                            "and was placed from the spacing of its neighbours.")
    return RodDetection(phantom=definition.name, rods=rods, slices_k=[int(k) for k in ks_used],
                        body_hu=body_hu, r2=float(r2), warnings=warnings)


def _placed_rod_consistent(definition: PhantomDefinition, hu: np.ndarray,
                           placed: np.ndarray) -> bool:
    """A rod placed by spacing must have the HU that the other rods' fit predicts for it.

    It was placed because it showed no contrast, so its measured HU is the body's; the
    assignment is rejected when the line through the other rods predicts otherwise (by more
    than ``PLACED_ROD_TOLERANCE_HU``).
    """
    if not placed.any():
        return True
    i = int(np.argmax(placed))
    others = replace(definition, rods=tuple(r for n, r in enumerate(definition.rods) if n != i))
    slope, intercept, _, _ = fit_line(others, np.delete(hu, i))
    rod = definition.rods[i]
    if definition.fit == "mindways-two-step":
        predicted = (rod.water_mg_cm3 + (slope + MINDWAYS_SLOPE_OFFSET_HU_PER_MG_CM3)
                     * rod.density_mg_cm3 + intercept - MINDWAYS_INTERCEPT_OFFSET_HU)
    else:
        predicted = slope * rod.density_mg_cm3 + intercept
    return abs(predicted - hu[i]) < PLACED_ROD_TOLERANCE_HU


def _refine_center(image: np.ndarray, center_ji: np.ndarray, radius_mm: float, body_hu: float,
                   spacing_ji_mm: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Sub-voxel rod centre (j, i): centroid of |HU - body HU| within 1.3 rod radii."""
    offsets = _roi_offsets(1.3 * radius_mm, spacing_ji_mm)
    c = np.asarray(center_ji, dtype=float)
    for _ in range(iterations):
        base = np.round(c).astype(int)
        jj = np.clip(base[0] + offsets[:, 0], 0, image.shape[0] - 1)
        ii = np.clip(base[1] + offsets[:, 1], 0, image.shape[1] - 1)
        w = np.abs(image[jj, ii] - body_hu)
        if not np.isfinite(body_hu) or w.sum() <= 0:
            break
        c = np.array([np.sum(w * jj), np.sum(w * ii)]) / w.sum()
    return c


def _ring_median_hu(image: np.ndarray, center_ji: np.ndarray, radius_mm: float,
                    spacing_ji_mm: np.ndarray) -> float:
    """Median HU in the filter's ring (1.1-1.4 radii) around a pixel: the rod's surroundings."""
    outer = _roi_offsets(1.4 * radius_mm, spacing_ji_mm)
    outer = outer[np.hypot(*(outer * spacing_ji_mm).T) >= 1.1 * radius_mm]
    c = np.round(center_ji).astype(int)
    jj = np.clip(c[0] + outer[:, 0], 0, image.shape[0] - 1)
    ii = np.clip(c[1] + outer[:, 1], 0, image.shape[1] - 1)
    return float(np.median(image[jj, ii]))


def _slices_showing_rods(values: list[np.ndarray]) -> np.ndarray:
    """Boolean per slice: the rods' HU pattern correlates with the pooled pattern."""
    per_slice = np.stack([v.mean(axis=1) for v in values], axis=1)     # (slices, rods)
    pooled = per_slice.mean(axis=0)
    a = per_slice - per_slice.mean(axis=1, keepdims=True)
    b = pooled - pooled.mean()
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b)
    corr = np.divide(a @ b, denom, out=np.zeros(len(a)), where=denom > 0)
    spread = np.ptp(per_slice, axis=1) > 0.5 * np.ptp(pooled)
    keep = (corr >= MIN_SLICE_CORRELATION) & spread
    return keep if keep.any() else np.ones(len(keep), dtype=bool)


def _body_hu(image, obj, pos_ji, radius_mm, plane: _Plane) -> float:
    """Median HU of the phantom body in a ring 1.3-1.8 rod radii around each rod (mm)."""
    jj, ii = np.indices(image.shape)
    ring = np.zeros(image.shape, dtype=bool)
    for cj, ci in pos_ji:
        d = np.hypot((jj - cj) * plane.spacing_ji_mm[0], (ii - ci) * plane.spacing_ji_mm[1])
        ring |= (d > 1.3 * radius_mm) & (d < 1.8 * radius_mm)
    ring &= obj > 0
    return float(np.median(image[ring])) if ring.any() else float("nan")
