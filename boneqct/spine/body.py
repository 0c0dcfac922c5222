"""Vertebral body delineation from a seed point or from a vertebra label map.

Method (on an isotropic RAS-aligned box around the seed, ``local_grid.LocalGrid``):

1. Resample the CT (linear) to ``WORK_SPACING_MM`` and smooth it (Gaussian, ``SMOOTH_MM``).
2. Thresholds from the image itself: the trabecular level is the median HU within
   ``SEED_RADIUS_MM`` of the seed, the cortical level the ``CORTEX_PERCENTILE``th percentile
   within ``CORTEX_RADIUS_MM`` (the densest bone nearby: posterior elements, thick cortex);
   the cortex threshold lies a fraction (``CORTEX_FRACTIONS``, tried in turn) of the way from
   the first to the second, low enough to catch a thin, partial-volumed shell, high enough
   above the noise. Low-density
   trabecular bone has the HU of muscle, so the body is found as the space enclosed by its
   cortical shell, never by a trabecular threshold.
3. The interior is grown from the seed through below-threshold voxels by a ball of radius r
   (opening by reconstruction): voxels farther than r from the cortex connected to the seed,
   dilated back by r. A ball cannot pass a gap in the shell narrower than 2r (basivertebral
   foramen, thin endplates); r is increased (``BALL_RADII_MM``) until the region is closed.
   A region still open (touching the box) means the seed is not inside a vertebral body.
4. The body = interior + the cortex within ``SHELL_MM`` of it; axis from ``axis.find_body_axis``;
   anterior = away from the posterior elements (bone outside the body at the body's height).
5. From a vertebra label map (``body_from_label``) the seed is the label's deepest point and
   the interior grows below the cortex threshold within ``LABEL_REACH_MM`` of the label: the
   cortex stops it where it is seen, the label where the shell has gaps (coarse voxels, thin
   or partial-volumed cortex), and neighbours and posterior elements stay out. The interior
   is kept within the label on the CT grid.

The working box and every map back to the CT cover only the box around the seed; the masks
are returned within the body's bounding box on the CT grid.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from boneqct.errors import SpineError
from boneqct.io.images import volume_to_sitk
from boneqct.spine.axis import find_body_axis
from boneqct.spine.levels import VFA_LEVEL_NAMES, normalize_level
from boneqct.spine.local_grid import LocalGrid, bounding_box
from boneqct.spine.types import VertebralBody
from boneqct.volume import Volume

#: Working grid spacing (mm) and half-sizes (mm) of the box around the seed, tried in turn
#: while a region grown reaches the box's faces: the first holds a large lumbar body (about
#: 50 mm wide inside its cortex) from a seed within about 10 mm of its centre, the second
#: from anywhere in its central part.
WORK_SPACING_MM = 1.0
BOX_HALF_SIZES_MM = (36.0, 48.0)
#: Gaussian smoothing SD (mm) against noise before thresholding.
SMOOTH_MM = 0.8
#: Radius (mm) of the sphere around the seed giving the trabecular HU level.
SEED_RADIUS_MM = 4.0
#: Radius (mm) and percentile giving the cortical HU level (shell and posterior elements).
CORTEX_RADIUS_MM = 25.0
CORTEX_PERCENTILE = 99.5
#: Smallest cortex-trabecular contrast (HU) for a shell to be recognised.
MIN_CONTRAST_HU = 80.0
#: Positions of the cortex threshold between the trabecular and cortical levels, tried in
#: turn until the interior is closed (lower ones catch a faint, thin shell).
CORTEX_FRACTIONS = (0.3, 0.2, 0.12)
#: Seeds whose neighbourhood is darker than this (HU) lie in air or fat.
AIR_FAT_HU = -200.0
#: Ball radii (mm) tried in turn by the interior growing.
BALL_RADII_MM = (2.0, 3.0, 4.5, 6.0)
#: Largest distance (mm) from the seed to a region a ball can reach: a seed on the body's
#: posterior wall or at the centroid of a whole-vertebra label still finds the body.
SEED_SNAP_MM = 10.0
#: Distances (mm) in front of a seed tried when no body is found around the seed itself.
SEED_RETRY_ANTERIOR_MM = (6.0, 12.0)
#: Plausible interior volume (cm3) and cranio-caudal extent (mm) of a vertebral body: a
#: lumbar body is about 50 x 35 x 30 mm (not verified against a primary source), so a region
#: beyond these has leaked through a disc or a gap in the shell into a neighbour or a vessel.
MIN_INTERIOR_CM3 = 2.0
MAX_INTERIOR_CM3 = 60.0
MAX_INTERIOR_HEIGHT_MM = 45.0
#: Where (mm above and below the seed) a leaked interior is cut at its narrowest
#: cross-section, and how narrow (fraction of the seed slice's area) that must be.
ENDPLATE_SEARCH_MM = (6.0, 24.0)
ENDPLATE_NARROWING = 0.5
#: Width (mm) of the cortex added around the interior to form the body.
SHELL_MM = 3.0
#: Bone threshold (HU) for finding the posterior elements: a common CT bone threshold,
#: below cortical and posterior-element HU whatever the body's density.
POSTERIOR_BONE_HU = 200.0
#: Distance (mm) from a vertebra label within which the interior is kept on the working grid
#: (label maps are often a little tight on the cortex).
LABEL_REACH_MM = 2.0
#: A label's cores: where it is at least CORE_DEPTH_FRACTION of its greatest depth (distance
#: to its edge) deep; a second core at least SECOND_CORE_FRACTION as deep as the deepest is a
#: second vertebral body under the same label (the posterior elements that may join two
#: bodies are a few mm thick; a body's core 10-15 mm deep). Project choices.
CORE_DEPTH_FRACTION = 0.6
SECOND_CORE_FRACTION = 0.75
#: Largest angle (degrees) between the anterior direction found and RAS A before falling back.
MAX_ANTERIOR_DEVIATION_DEG = 45.0


class _NoBodyAtSeed(SpineError):
    """No vertebral body around a seed (air, soft tissue, canal): worth a retry in front of it,
    unlike a seed outside the scan, in a disc, or a body cut by the scan's end."""


def _ball_near(shape, center_kji, radius_vox) -> tuple[tuple[slice, ...], np.ndarray]:
    """A ball of a radius (voxels) about a centre (k, j, i), clipped to an array shape: the
    box (slices) holding it and the ball within that box."""
    reach = int(np.ceil(radius_vox))
    box = tuple(slice(max(c - reach, 0), min(c + reach + 1, n))
                for c, n in zip(center_kji, shape, strict=True))
    kk, jj, ii = np.ogrid[box]
    c = center_kji
    return box, (kk - c[0]) ** 2 + (jj - c[1]) ** 2 + (ii - c[2]) ** 2 <= radius_vox**2


def _values_in_ball(values, center_kji, radius_vox, valid) -> np.ndarray:
    """The values within a ball (voxels) about a centre (k, j, i) where ``valid`` holds."""
    box, ball = _ball_near(values.shape, center_kji, radius_vox)
    return values[box][ball & valid[box]]


def _fmt(ras_mm) -> str:
    """A RAS position for messages."""
    return "(" + ", ".join(f"{x:.1f}" for x in ras_mm) + ") mm RAS"


def _touches_faces(mask: np.ndarray) -> bool:
    """True when a mask reaches any face of its array."""
    return any(np.take(mask, index, axis=a).any() for a in range(3) for index in (0, -1))


def _height_mm(core: np.ndarray, radius_mm: float, spacing_mm: float) -> float:
    """Cranio-caudal extent (mm) of a ball-grown core (local axis k is RAS S), ball included."""
    rows = np.flatnonzero(core.any(axis=(1, 2)))
    return float((rows[-1] - rows[0] + 1) * spacing_mm + 2.0 * radius_mm)


def _cut_at_endplates(core: np.ndarray, seed_k: int, spacing_mm: float) -> np.ndarray | None:
    """A core that leaked through the endplates (gaps in a shell blurred by coarse voxels)
    into the discs and neighbours, cut where its cross-section narrows most above and below
    the seed (the endplates, which only their gaps pass): the part holding the seed's
    slice, or None when no narrowing is found."""
    area = ndimage.uniform_filter1d(core.sum(axis=(1, 2)).astype(float), 3)
    least_mm, most_mm = ENDPLATE_SEARCH_MM
    cuts = []
    for direction in (1, -1):
        ks = seed_k + direction * np.arange(int(least_mm / spacing_mm), int(most_mm / spacing_mm))
        ks = ks[(ks > 0) & (ks < len(area) - 1)]
        if not len(ks) or area[seed_k] <= 0:
            return None
        narrowest = ks[np.argmin(area[ks])]
        if area[narrowest] > ENDPLATE_NARROWING * area[seed_k]:
            return None
        cuts.append(narrowest)
    trimmed = core.copy()
    trimmed[max(cuts):] = False
    trimmed[:min(cuts) + 1] = False
    labels, n = ndimage.label(trimmed)
    if n == 0:
        return None
    sizes = ndimage.sum_labels(trimmed, labels, np.arange(1, n + 1))
    return labels == (np.argmax(sizes) + 1)


def _dilated_back(core: np.ndarray, below_kji: np.ndarray, radius_mm: float,
                  spacing_mm: float) -> np.ndarray:
    """The region a ball of ``radius_mm`` sweeps while its centre stays in ``core`` (the
    opening's dilation back), within ``below_kji``, holes filled."""
    box = bounding_box(core, pad=int(radius_mm / spacing_mm) + 2)
    reach_mm = ndimage.distance_transform_edt(~core[box]) * spacing_mm
    interior = np.zeros_like(core)
    interior[box] = ndimage.binary_fill_holes((reach_mm <= radius_mm) & below_kji[box])
    return interior


def _grow_interior(below_kji, seed_kji, spacing_mm, voxel_cm3):
    """Interior grown from the seed by a ball: (interior, ball radius, touched), interior and
    radius None if open; ``touched`` tells whether no closed region was found and a region
    grown reached the array's faces.

    Every region the ball reaches within ``SEED_SNAP_MM`` of the seed is a candidate, and the
    largest closed one of plausible size is the body's interior: a seed on the posterior wall
    (e.g. the centroid of a whole-vertebra label) sees the body and the spinal canal, and the
    canal, open along the spine, reaches the box's faces.
    """
    distance_mm = ndimage.distance_transform_edt(below_kji) * spacing_mm
    touched = False
    for radius_mm in BALL_RADII_MM:
        core = distance_mm > radius_mm
        snap_box, snap_ball = _ball_near(core.shape, seed_kji, SEED_SNAP_MM / spacing_mm)
        if not (snap_ball & core[snap_box]).any():
            continue
        labels, _ = ndimage.label(core)
        candidates = np.unique(labels[snap_box][snap_ball & core[snap_box]])
        sizes = ndimage.sum_labels(core, labels, candidates)
        for label_value, size in sorted(zip(candidates, sizes, strict=True), key=lambda c: -c[1]):
            if size * voxel_cm3 > MAX_INTERIOR_CM3:
                continue
            component = labels == label_value
            if _touches_faces(component):
                touched = True
                continue
            if _height_mm(component, radius_mm, spacing_mm) > MAX_INTERIOR_HEIGHT_MM:
                component = _cut_at_endplates(component, seed_kji[0], spacing_mm)
                if component is None or \
                        _height_mm(component, radius_mm, spacing_mm) > MAX_INTERIOR_HEIGHT_MM:
                    continue
            interior = _dilated_back(component, below_kji, radius_mm, spacing_mm)
            if interior.sum() * voxel_cm3 >= MIN_INTERIOR_CM3:  # not a pocket of the shell
                return interior, radius_mm, False
    return None, None, touched


def _grow_within_cortex(hu, allowed, seed_kji, trabecular_hu, cortex_hu, spacing_mm,
                        fractions=CORTEX_FRACTIONS):
    """The interior closed by the cortex at the first threshold (``fractions`` of the way
    from the trabecular to the cortical level, in turn) that closes it, within ``allowed``:
    ((interior, ball radius, threshold) or None, whether a region grown reached the array's
    faces)."""
    touched = False
    for fraction in fractions:
        threshold_hu = trabecular_hu + fraction * (cortex_hu - trabecular_hu)
        interior, radius_mm, touched_now = _grow_interior(
            (hu < threshold_hu) & allowed, seed_kji, spacing_mm, spacing_mm**3 / 1000.0)
        touched |= touched_now
        if interior is not None:
            return (interior, radius_mm, threshold_hu), touched
    return None, touched


def _anterior_direction(bone_kji, near_body_kji, grid: LocalGrid, center_ras, axis_ras,
                        height_mm) -> tuple[np.ndarray, list[str]]:
    """Unit anterior vector ⟂ axis: away from the bone outside the body at the body's height
    and behind its centre (the posterior elements)."""
    anterior_ref = np.array([0.0, 1.0, 0.0]) - axis_ras[1] * axis_ras
    anterior_ref /= np.linalg.norm(anterior_ref)
    outside = np.argwhere(bone_kji & ~near_body_kji)
    warnings: list[str] = []
    if len(outside):
        offsets = grid.kji_to_ras(outside) - center_ras
        along = offsets @ axis_ras
        radial = offsets - along[:, None] * axis_ras
        # posterior of the body's centre only: contrast-filled aorta and calcified vessels
        # in front of the spine are dense too
        keep = ((np.abs(along) <= height_mm / 2.0) & (np.linalg.norm(radial, axis=1) <= 45.0)
                & (radial @ anterior_ref < 0.0))
        if keep.sum() > 10:
            posterior = radial[keep].mean(axis=0)
            if np.linalg.norm(posterior) > 1.0:
                anterior = -posterior / np.linalg.norm(posterior)
                if anterior @ anterior_ref >= np.cos(np.radians(MAX_ANTERIOR_DEVIATION_DEG)):
                    return anterior, warnings
    warnings.append("Posterior elements not found clearly: anterior taken as the patient's "
                    "anterior (RAS A) perpendicular to the body axis.")
    return anterior_ref, warnings


def _body_around(interior, bone, spacing_mm) -> tuple[np.ndarray, np.ndarray]:
    """The body (interior + the bone within ``SHELL_MM`` of it, holes filled) and the voxels
    within 2 voxels (city-block) of it, on the local grid."""
    box = bounding_box(interior, pad=int(np.ceil(SHELL_MM / spacing_mm)) + 3)
    shell = ndimage.distance_transform_edt(~interior[box]) * spacing_mm <= SHELL_MM
    body = np.zeros_like(interior)
    body[box] = ndimage.binary_fill_holes(interior[box] | (shell & bone[box]))
    near_body = np.zeros_like(interior)
    near_body[box] = ndimage.binary_dilation(body[box], iterations=2)
    return body, near_body


def _delineate(volume_hu: Volume, seed_ras_mm, level: str, label=None) -> VertebralBody:
    """Delineate the body around a seed; ``label`` (a vertebra on the CT grid, as a box and
    the mask in it) trims the interior to within ``LABEL_REACH_MM`` of it (working grid) and
    to it (CT grid), and bounds the growth when the cortex alone does not close it."""
    seed_ras_mm = np.asarray(seed_ras_mm, float).reshape(3)
    seed_ijk = volume_hu.ras_to_ijk_points(seed_ras_mm)[0]
    size_ijk = np.array(volume_hu.size_ijk)
    if np.any(seed_ijk < -0.5) or np.any(seed_ijk > size_ijk - 0.5):
        raise SpineError(f"The seed of {level} at {_fmt(seed_ras_mm)} lies outside the scan. "
                         "Place the seed inside the vertebral body on this CT.")
    for half_size_mm in BOX_HALF_SIZES_MM:
        grid = LocalGrid.around(seed_ras_mm, half_size_mm, WORK_SPACING_MM)
        spacing = grid.spacing_mm
        inside = grid.inside_scan(volume_hu)
        hu = ndimage.gaussian_filter(grid.sample(volume_hu, order=1), SMOOTH_MM / spacing)
        seed_kji = np.round(grid.ras_to_kji(seed_ras_mm)[0]).astype(int)
        trabecular_hu = float(np.median(_values_in_ball(hu, seed_kji, SEED_RADIUS_MM / spacing,
                                                        inside)))
        if trabecular_hu < AIR_FAT_HU:
            raise _NoBodyAtSeed(f"The seed of {level} at {_fmt(seed_ras_mm)} lies in air or fat "
                             f"(about {trabecular_hu:.0f} HU), not in bone. Move it into the "
                             "vertebral body.")
        cortex_hu = float(np.percentile(_values_in_ball(hu, seed_kji, CORTEX_RADIUS_MM / spacing,
                                                        inside), CORTEX_PERCENTILE))
        if cortex_hu - trabecular_hu < MIN_CONTRAST_HU:
            raise _NoBodyAtSeed(f"No cortical bone around the seed of {level} at "
                             f"{_fmt(seed_ras_mm)}: the seed is not in a vertebral body. Move "
                             "it into the body.")
        reach = None if label is None else _reach_on_grid(label, volume_hu, grid)
        # within a label, closing is easy: the lowest threshold first keeps the interior off
        # the cortex's partial-volume band
        grown, touched = _grow_within_cortex(
            hu, inside if reach is None else inside & reach, seed_kji, trabecular_hu, cortex_hu,
            spacing, CORTEX_FRACTIONS if reach is None else CORTEX_FRACTIONS[::-1])
        warnings: list[str] = []
        if not touched:  # the box held every region grown
            break
    if grown is None:
        raise _NoBodyAtSeed(f"The seed of {level} at {_fmt(seed_ras_mm)} is not enclosed by a "
                         "vertebral body's cortex (it lies in soft tissue, a disc or the canal, "
                         "or the body is badly broken). Move it into the body.")
    interior, radius_mm, threshold_hu = grown
    if reach is not None:
        interior &= reach
    near_box = bounding_box(interior, pad=3)
    if (ndimage.binary_dilation(interior[near_box], iterations=2) & ~inside[near_box]).any():
        raise SpineError(f"Level {level} is cut by the end of the scan: the vertebral body is "
                         "not entirely on the CT. Measure another level or use a longer scan.")
    if interior.sum() * spacing**3 / 1000.0 < MIN_INTERIOR_CM3:
        raise _NoBodyAtSeed(f"The body of {level} found at {_fmt(seed_ras_mm)} is too small "
                         f"(< {MIN_INTERIOR_CM3} cm3) for a measurement; check the seed and "
                         "the level, or exclude the level.")
    bone = (hu >= threshold_hu) & inside
    body, near_body = _body_around(interior, bone, spacing)
    interior_ras = grid.kji_to_ras(np.argwhere(interior))
    center_ras = interior_ras.mean(axis=0)
    axis_ras = find_body_axis(interior_ras)
    along = (grid.kji_to_ras(np.argwhere(body)) - center_ras) @ axis_ras
    height_mm = float(np.ptp(np.percentile(along, [1.0, 99.0])) + spacing)
    if not body[tuple(seed_kji)] and abs((seed_ras_mm - center_ras) @ axis_ras) > 0.4 * height_mm:
        raise SpineError(f"The seed of {level} at {_fmt(seed_ras_mm)} lies above or below a "
                         "vertebral body, not in it (in a disc or an endplate's neighbour). Move "
                         "it into the body.")
    anterior_ras, anterior_warnings = _anterior_direction(
        bone | (hu >= POSTERIOR_BONE_HU), near_body, grid, center_ras, axis_ras, height_mm)
    warnings += anterior_warnings
    if radius_mm > BALL_RADII_MM[0]:
        warnings.append(f"{level}: gaps in the cortical shell; interior grown with a "
                        f"{radius_mm:.1f} mm ball.")
    box, (body_ct, interior_ct) = grid.masks_to_ct_box([body, interior], volume_hu)
    if label is not None:
        interior_ct &= _label_in_box(label, box)
    return VertebralBody(
        level=level, box_kji=box, body_in_box=body_ct, trabecular_in_box=interior_ct,
        grid_shape_kji=volume_hu.array_kji.shape, center_ras_mm=center_ras, axis_ras=axis_ras,
        anterior_ras=anterior_ras, height_mm=height_mm, threshold_hu=float(threshold_hu),
        ball_radius_mm=float(radius_mm), work_grid=grid, trabecular_on_work_grid=interior,
        warnings=warnings)


def delineate_body_from_seed(volume_hu: Volume, seed_ras_mm, level: str) -> VertebralBody:
    """Delineate a vertebral body (posterior elements excluded) from a seed inside it.

    Args:
        volume_hu: the CT in HU with its IJK->RAS matrix (any voxel order and spacing).
        seed_ras_mm: a point inside the vertebral body (RAS mm).
        level: level name ("L1", ...).

    A seed on the body's posterior wall or in front of the canal (e.g. the centroid of a
    whole-vertebra label, which the posterior elements pull backwards) is retried from
    points ``SEED_RETRY_ANTERIOR_MM`` in front of it (RAS A), where the body lies on a CT
    of a patient lying on the table; the move is reported in the body's warnings.

    Raises:
        SpineError: seed outside the scan or outside bone, body cut by the scan's end, body
            too small (the first attempt's reason when no retry finds the body).
    """
    level = normalize_level(level, VFA_LEVEL_NAMES)
    seed_ras_mm = np.asarray(seed_ras_mm, float).reshape(3)
    try:
        return _delineate(volume_hu, seed_ras_mm, level)
    except _NoBodyAtSeed as first:
        for shift_mm in SEED_RETRY_ANTERIOR_MM:
            try:
                body = _delineate(volume_hu, seed_ras_mm + [0.0, shift_mm, 0.0], level)
            except SpineError:
                continue
            body.warnings.append(f"{level}: no body around the seed itself ({first}); found "
                                 f"{shift_mm:g} mm anterior of it. Check the level.")
            return body
        raise


def _box_volume(volume: Volume, box_kji, array_kji: np.ndarray) -> Volume:
    """An array on a box (slices k, j, i) of a volume's grid, as a Volume with its geometry."""
    ijk_to_ras = volume.ijk_to_ras.copy()
    ijk_to_ras[:3, 3] = volume.ijk_to_ras_points([s.start for s in box_kji[::-1]])[0]
    return Volume(array_kji, ijk_to_ras)


def _label_on_ct(volume_hu: Volume, labels: Volume, label_value: int, pad: int):
    """One label value on the CT grid (resampled nearest-neighbour if on another grid), as
    (box, mask in the box) with the box padded by ``pad`` voxels; None when absent."""
    found = labels.array_kji == label_value
    if not found.any():
        return None
    same_grid = (labels.array_kji.shape == volume_hu.array_kji.shape
                 and np.allclose(labels.ijk_to_ras, volume_hu.ijk_to_ras, atol=1e-3))
    if same_grid:
        box = bounding_box(found, pad=pad)
        return box, found[box]
    crop_box = bounding_box(found, pad=2)
    moving = volume_to_sitk(_box_volume(labels, crop_box, found[crop_box].astype(np.uint8)))
    corners = np.array([[s.start if a else s.stop - 1 for s, a in zip(crop_box[::-1], bits,
                                                                     strict=True)]
                        for bits in np.ndindex(2, 2, 2)], float)
    ct_ijk = volume_hu.ras_to_ijk_points(labels.ijk_to_ras_points(corners))
    ct_lo = np.clip(np.floor(ct_ijk.min(axis=0)).astype(int) - 1 - pad, 0, None)
    ct_hi = np.minimum(np.ceil(ct_ijk.max(axis=0)).astype(int) + 2 + pad, volume_hu.size_ijk)
    if np.any(ct_hi <= ct_lo):
        return None
    box = tuple(slice(a, b) for a, b in zip(ct_lo[::-1], ct_hi[::-1], strict=True))
    shape_kji = tuple((ct_hi - ct_lo)[::-1])
    reference = volume_to_sitk(_box_volume(volume_hu, box, np.zeros(shape_kji, np.uint8)))
    resampled = sitk.Resample(moving, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    mask = sitk.GetArrayFromImage(resampled) > 0
    return (box, mask) if mask.any() else None


def _reach_on_grid(label, volume: Volume, grid: LocalGrid) -> np.ndarray:
    """Local-grid voxels within ``LABEL_REACH_MM`` of a CT-grid label (nearest neighbour)."""
    box, mask = label
    near_mm = ndimage.distance_transform_edt(~mask, sampling=volume.spacing_mm[::-1])
    near = _box_volume(volume, box, (near_mm <= LABEL_REACH_MM).astype(np.uint8))
    return grid.sample(near, order=0, cval=0) > 0


def _label_in_box(label, box_kji) -> np.ndarray:
    """A CT-grid label, given as (box, mask in the box), within another box of the grid."""
    label_box, mask = label
    out = np.zeros(tuple(s.stop - s.start for s in box_kji), bool)
    lo = [max(a.start, b.start) for a, b in zip(box_kji, label_box, strict=True)]
    hi = [min(a.stop, b.stop) for a, b in zip(box_kji, label_box, strict=True)]
    if all(h > low for low, h in zip(lo, hi, strict=True)):
        out[tuple(slice(low - b.start, h - b.start) for low, h, b in zip(lo, hi, box_kji,
                                                                        strict=True))] = \
            mask[tuple(slice(low - b.start, h - b.start) for low, h, b in zip(lo, hi, label_box,
                                                                             strict=True))]
    return out


def _cut_by_scan_end(volume_hu: Volume, box_kji, mask: np.ndarray) -> bool:
    """Whether a label (a mask within a box of the CT grid) reaches the CT's first or last
    voxel layer along the grid axis closest to the patient's cranio-caudal axis (a vertebra
    cut by the scan's end; a field of view cutting a spinous process sideways is no cut)."""
    axis_kji = 2 - int(np.argmax(np.abs(volume_hu.direction_ras[2, :])))
    n = volume_hu.array_kji.shape[axis_kji]
    ends = []
    if box_kji[axis_kji].start == 0:
        ends.append(0)
    if box_kji[axis_kji].stop == n:
        ends.append(-1)
    return any(np.take(mask, end, axis=axis_kji).any() for end in ends)


def endplate_at_scan_end(volume_hu: Volume, points_ras_mm: dict, disc_mm: float) -> str | None:
    """Why a level's heights cannot be trusted when one of its endplates lies at the scan's
    end: the endplate (of ``points_ras_mm``, ``{height: {"superior", "inferior"}}`` RAS mm)
    nearest the first or last voxel layer along the grid axis closest to the cranio-caudal
    axis, when less than ``disc_mm`` of the scan lies beyond it (the disc an endplate fit
    needs); None when every endplate has that much beyond it."""
    axis_ijk = int(np.argmax(np.abs(volume_hu.direction_ras[2, :])))
    n, spacing_mm = volume_hu.size_ijk[axis_ijk], float(volume_hu.spacing_mm[axis_ijk])
    nearest = None
    for end in ("superior", "inferior"):
        index = volume_hu.ras_to_ijk_points(np.array(
            [pair[end] for pair in points_ras_mm.values()]))[:, axis_ijk]
        for layer, beyond_mm in (("first", index.min() * spacing_mm),
                                 ("last", (n - 1 - index.max()) * spacing_mm)):
            if beyond_mm < disc_mm and (nearest is None or beyond_mm < nearest[2]):
                nearest = (end, layer, float(beyond_mm))
    if nearest is None:
        return None
    end, layer, beyond_mm = nearest
    toward = "cranially" if end == "superior" else "caudally"
    return (f"its {end} endplate lies at the end of the scan, {max(beyond_mm, 0.0):.1f} mm from "
            f"its {layer} slice, where {disc_mm:.1f} mm of disc beyond it are needed to locate "
            f"it; a scan reaching at least 10 mm further {toward} covers it, else read "
            "it on the images")


def _refuse_two_bodies(depth_mm: np.ndarray, label_value: int, level: str) -> None:
    """Raise SpineError when a label's depth map (mm to its edge) has two cores as deep as a
    vertebral body's: one label on two vertebrae, whose deepest point - the seed - could lie
    in either (a duplicated label measured the wrong body with no warning)."""
    deepest_mm = float(depth_mm.max())
    cores, n = ndimage.label(depth_mm >= CORE_DEPTH_FRACTION * deepest_mm,
                             structure=np.ones((3, 3, 3)))
    core_depths_mm = sorted(ndimage.maximum(depth_mm, cores, range(1, n + 1)), reverse=True)
    if n > 1 and core_depths_mm[1] >= SECOND_CORE_FRACTION * deepest_mm:
        raise SpineError(
            f"Label {label_value} ({level}) covers two separate vertebral bodies (cores "
            f"{core_depths_mm[0]:.0f} and {core_depths_mm[1]:.0f} mm deep): the label map gives "
            "two vertebrae one label, and either could be this level. Correct the label map "
            "(one label per vertebra).")


def body_from_label(volume_hu: Volume, labels: Volume, label_value: int,
                    level: str) -> VertebralBody:
    """Delineate a vertebral body from a whole-vertebra label (TotalSegmentator, VerSe).

    The label map may be on another grid (resampled nearest-neighbour onto the CT). The seed
    is the label's deepest point (largest distance to its edge, which lies in the body, the
    vertebra's thickest part); the body is then delineated as from a seed, grown only within
    ``LABEL_REACH_MM`` of the label so the posterior elements and neighbours stay out, and its
    trabecular interior is kept within the label.
    """
    level = normalize_level(level, VFA_LEVEL_NAMES)
    spacing_kji = volume_hu.spacing_mm[::-1]
    pad = int(np.ceil(LABEL_REACH_MM / spacing_kji.min())) + 2
    label = _label_on_ct(volume_hu, labels, int(label_value), pad)
    if label is None:
        raise SpineError(f"Label {label_value} ({level}) is absent from the label map. Check "
                         "the label scheme or segment this level.")
    box, mask = label
    if _cut_by_scan_end(volume_hu, box, mask):
        raise SpineError(f"Level {level} is cut by the end of the scan: its label reaches the "
                         "first or last slice, so the vertebra goes on beyond the CT. Measure "
                         "another level or use a longer scan.")
    depth_mm = ndimage.distance_transform_edt(mask, sampling=spacing_kji)
    _refuse_two_bodies(depth_mm, label_value, level)
    seed_kji = np.array(np.unravel_index(np.argmax(depth_mm), depth_mm.shape))
    seed_kji += [s.start for s in box]
    seed_ras = volume_hu.ijk_to_ras_points(seed_kji[::-1])[0]
    return _delineate(volume_hu, seed_ras, level, label=label)
