"""The chain of vertebral bodies in front of the spinal canal, between the disc zones.

The CT is straightened along the canal: at each canal slice, the plane across the canal's
smoothed direction is sampled (``u`` anterior, ``v`` to the patient's left, mm). The mean HU of a
band in front of the canal, along the canal, is the body profile. Its disc zones are bright in
every spine: the endplates (cortical plates) are denser than the trabecular interior, and a thin
disc between them is below the resolution of routine slices - while a thick disc is a dark gap
between two bright endplates, and the interior of an osteoporotic body is darker than the disc.
So the sign of "disc minus body" can not be relied on; the profile is closed (grey closing over
DISC_CLOSING_MM, which fills the dark gap of a disc between its endplates) and the bodies are
the valleys that remain: each body is the interval between two disc zones (the maxima between
valleys), its centre along the canal the middle of that interval.

The body's centre across the canal is the centroid of its outline (convex hull of the bone first
met going anterior from the canal, on the maximum projection of its middle slices: the cortical
ring, whether or not the interior is dense).

All thresholds are project choices tuned on the digital phantoms and one real chest CT
(docs/domain.md, "Automatic detection"), not literature values.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, signal

from boneqct.errors import DetectionError

#: Smoothing (Gaussian SD, slices) of the canal's path before taking its direction.
CANAL_SMOOTH_SLICES = 8.0
#: Band of the body profile: from U_NEAR_MM to U_FAR_MM in front of the canal's centre, within
#: V_HALF_MM of its midline (inside the body of every level, T1 to L5).
U_NEAR_MM, U_FAR_MM, V_HALF_MM = 8.0, 30.0, 10.0
#: Grey closing length (mm) of the profile: fills a disc's dark gap between its endplates
#: (lumbar discs up to about 12 mm); shorter than a body (15 mm or more).
DISC_CLOSING_MM = 12.0
#: Least distance (mm) between body centres and least depth (HU) of a body's valley.
MIN_BODY_STEP_MM = 15.0
MIN_VALLEY_HU = 15.0
#: Vertebral pitch (body plus disc, mm) outside which a body is flagged (two merged, or a
#: body split by a fracture or a Schmorl node): about T1 (20 mm) to L5 (40 mm).
PITCH_RANGE_MM = (15.0, 45.0)
#: The cross-section: sampled out to BODY_DEPTH_MAX_MM in front of the canal's centre and
#: BODY_HALF_WIDTH_MM to each side.
BODY_DEPTH_MAX_MM = 60.0
BODY_HALF_WIDTH_MM = 35.0
#: HU of the soft tissue round a body (muscle, about 40 HU), and the least excess (HU) of a
#: body's core over it.
SOFT_TISSUE_HU = 40.0
MIN_BODY_CONTRAST_HU = 20.0
#: Half-width (mm) of the midline band in which the body's posterior wall is sought.
WALL_BAND_MM = 5.0
#: Least distance (mm) between the centres of two blobs of a section (a body and an abutting
#: aorta, about 25 mm across): one centre per body.
BLOB_SEPARATION_MM = 10.0
#: The body's centre: the centroid of its section's part deeper (from its edge) than this
#: fraction of its deepest point.
CORE_DEPTH_FRACTION = 0.5


def canal_frames(canal: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per canal slice: the canal's smoothed centre (z, y, x index), and unit vectors across
    the canal (index units): anterior (towards -y, LPS) and lateral (towards +x), both
    perpendicular to the canal's smoothed direction."""
    z = canal["z"].astype(float)
    y = ndimage.gaussian_filter1d(canal["y"], CANAL_SMOOTH_SLICES, mode="nearest")
    x = ndimage.gaussian_filter1d(canal["x"], CANAL_SMOOTH_SLICES, mode="nearest")
    tangent = np.stack([np.ones_like(z), np.gradient(y), np.gradient(x)], axis=1)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    lateral = np.array([0.0, 0.0, 1.0]) - tangent[:, 2:3] * tangent
    lateral /= np.linalg.norm(lateral, axis=1, keepdims=True)
    anterior = np.cross(lateral, tangent)
    anterior *= -np.sign(anterior[:, 1:2] + 1e-12)          # pointing to -y (anterior)
    return np.stack([z, y, x], axis=1), anterior, lateral


def straightened(hu: np.ndarray, spacing_mm: float, canal: dict) -> dict:
    """The CT resampled across the canal at each canal slice: ``hu`` (slice, u, v), the
    ``u_mm`` (anterior of the canal's centre) and ``v_mm`` (lateral) axes, the frames and the
    arc length (mm) of each slice along the canal."""
    centres, anterior, lateral = canal_frames(canal)
    u_mm = np.arange(0.0, BODY_DEPTH_MAX_MM + spacing_mm / 2, spacing_mm)
    v_mm = np.arange(-BODY_HALF_WIDTH_MM, BODY_HALF_WIDTH_MM + spacing_mm / 2, spacing_mm)
    u, v = u_mm / spacing_mm, v_mm / spacing_mm
    planes = np.empty((len(centres), len(u), len(v)), np.float32)
    for n, (point, a, lat) in enumerate(zip(centres, anterior, lateral, strict=True)):
        coords = (point[:, None, None] + a[:, None, None] * u[None, :, None]
                  + lat[:, None, None] * v[None, None, :])
        planes[n] = ndimage.map_coordinates(hu, coords, order=1, cval=-1000.0)
    step_mm = np.linalg.norm(np.diff(centres, axis=0), axis=1) * spacing_mm
    return {"hu": planes, "u_mm": u_mm, "v_mm": v_mm, "centres": centres,
            "anterior": anterior, "lateral": lateral,
            "arc_mm": np.concatenate([[0.0], np.cumsum(step_mm)])}


def body_profile(straight: dict) -> np.ndarray:
    """Mean HU of the band in front of the canal, per canal slice."""
    u, v = straight["u_mm"], straight["v_mm"]
    band = straight["hu"][:, (u >= U_NEAR_MM) & (u <= U_FAR_MM)][:, :, np.abs(v) <= V_HALF_MM]
    return band.reshape(len(band), -1).mean(axis=1)


def body_intervals(profile: np.ndarray, arc_mm: np.ndarray) -> list[dict]:
    """The bodies along the profile (canal slice order): for each, its valley's slice, the
    disc zones bounding it (fractional slice, or None at the end of the canal), its centre
    (fractional slice), its pitch (mm, disc zone to disc zone) and its valley depth (HU). Bodies of a
    pitch out of PITCH_RANGE_MM are cut off the ends of the chain."""
    step_mm = float(np.median(np.diff(arc_mm)))
    size = max(3, int(round(DISC_CLOSING_MM / step_mm)) | 1)
    closed = ndimage.gaussian_filter1d(
        ndimage.grey_closing(profile, size=size, mode="nearest"), 1.0)
    valleys, props = signal.find_peaks(-closed, distance=max(1, int(MIN_BODY_STEP_MM / step_mm)),
                                       prominence=MIN_VALLEY_HU)
    if valleys.size < 2:
        raise DetectionError("The spinal canal was found but not two vertebral bodies in "
                             "front of it with discs between. Give seed points "
                             "(--seeds/--seed) or a label map (--labels) instead.")
    discs = [_disc_at(profile, closed, p, q) for p, q in zip(valleys, valleys[1:], strict=False)]
    slices = np.arange(len(arc_mm))
    bodies = []
    for n, valley in enumerate(valleys):
        below = discs[n - 1] if n > 0 else None
        above = discs[n] if n < len(discs) else None
        ends_mm = [np.interp(d, slices, arc_mm) for d in (below, above) if d is not None]
        if len(ends_mm) == 2:
            centre = float(np.interp(np.mean(ends_mm), arc_mm, slices))
            pitch = ends_mm[1] - ends_mm[0]
        else:  # an end body, one disc in view: its centre is its valley
            centre, pitch = float(valley), 2 * abs(arc_mm[valley] - ends_mm[0])
        bodies.append({"valley": int(valley), "discs": (below, above), "centre": centre,
                       "pitch_mm": float(pitch), "valley_hu": float(props["prominences"][n])})
    # an end of the chain with no vertebra's pitch is the canal running on past the spine
    # (into the neck, or lung filling the band): cut off
    while bodies and not pitch_is_plausible(bodies[0]["pitch_mm"]):
        bodies.pop(0)
    while bodies and not pitch_is_plausible(bodies[-1]["pitch_mm"]):
        bodies.pop()
    return bodies


def _disc_at(profile: np.ndarray, closed: np.ndarray, lo: int, hi: int) -> float:
    """The disc between the valleys at slices lo and hi (fractional slice). A disc resolved by
    the scan is the dark gap of the raw profile below the closed one (centre of mass of the gap,
    when deeper than MIN_VALLEY_HU) where the closed profile rises above half its rise over the
    lower valley; an unresolved disc is the centre of mass of the closed profile's rise over the
    higher valley (the middle of the bright zone)."""
    segment = closed[lo:hi + 1]
    index = np.arange(len(segment))
    rise = segment - min(segment[0], segment[-1])
    gap = np.where(rise >= 0.5 * rise.max(), segment - profile[lo:hi + 1], 0.0)
    if gap.max() > MIN_VALLEY_HU:
        weights = np.clip(gap - 0.5 * gap.max(), 0.0, None)
    else:
        weights = np.clip(segment - max(segment[0], segment[-1]), 0.0, None)
    if weights.sum() <= 0:
        return float(lo + np.argmax(segment))
    return float(lo + (weights * index).sum() / weights.sum())


def cross_section(straight: dict, lo: int, hi: int) -> tuple | None:
    """Centroid (u, v mm) and extent (depth, width mm) of the body's cross-section on the mean
    of canal slices lo..hi; None where the core (the profile's band) is not denser than soft
    tissue.

    The dense region: above the midpoint of the core's HU and soft tissue's (SOFT_TISSUE_HU),
    in front of the body's posterior wall on the midline (not the pedicles beside the canal),
    holes filled. A contrast-filled aorta or a psoas can touch the body in it, so the region is
    split into blobs (watershed of its distance map from its maxima): the body is the blob
    holding most of the core, its centre the centroid of its thick part."""
    u, v = straight["u_mm"], straight["v_mm"]
    section = straight["hu"][lo:hi + 1].mean(axis=0)
    band = (u[:, None] >= U_NEAR_MM) & (u[:, None] <= U_FAR_MM)
    core = band & (np.abs(v)[None] <= V_HALF_MM)
    core_hu = float(np.median(section[core]))
    if core_hu <= SOFT_TISSUE_HU + MIN_BODY_CONTRAST_HU:
        return None
    dense = section > (core_hu + SOFT_TISSUE_HU) / 2
    midline = dense[:, np.abs(v) <= WALL_BAND_MM].any(axis=1)
    dense[:int(np.argmax(midline))] = False
    dense = ndimage.binary_fill_holes(dense)
    blobs = _blobs(dense, BLOB_SEPARATION_MM / (u[1] - u[0]))
    held = np.bincount(blobs[core], minlength=blobs.max() + 1)
    held[0] = 0
    if held.max() == 0:
        return None
    body = blobs == int(np.argmax(held))
    # the centre of its thick part: thin outgrowths (pedicle roots, osteophytes) do not pull it
    depth = ndimage.distance_transform_edt(body)
    rows, cols = np.nonzero(depth >= CORE_DEPTH_FRACTION * depth.max())
    extent_rows, extent_cols = np.nonzero(body)
    step = u[1] - u[0]
    return ((float(u[rows].mean()), float(v[cols].mean())),
            (float(np.ptp(extent_rows) + 1) * step, float(np.ptp(extent_cols) + 1) * step))


def _blobs(mask: np.ndarray, separation: float) -> np.ndarray:
    """The mask split into blobs: watershed of its negated distance map from its maxima at
    least ``separation`` (pixels) apart (labels 1..n; 0 outside the mask)."""
    distance = ndimage.distance_transform_edt(mask)
    size = 2 * int(separation) + 1
    peaks = (distance == ndimage.maximum_filter(distance, size=size)) & (distance > 0)
    markers, _ = ndimage.label(peaks, structure=np.ones((3, 3)))
    basins = sitk.GetArrayFromImage(sitk.MorphologicalWatershedFromMarkers(
        sitk.GetImageFromArray((-distance).astype(np.float32)),
        sitk.GetImageFromArray(markers.astype(np.uint32)), markWatershedLine=False,
        fullyConnected=True))
    return np.where(mask, basins, 0)


def pitch_is_plausible(pitch_mm: float) -> bool:
    """Whether a body's pitch (mm) lies in the range of a single vertebra."""
    return PITCH_RANGE_MM[0] <= pitch_mm <= PITCH_RANGE_MM[1]
