"""Find and name the vertebral bodies of a CT without seeds: classical image analysis.

On a copy of the CT averaged to about ``WORK_SPACING_MM`` (axis-aligned, LPS index order):

1. the spinal canal: in each axial slice, the holes of the bone mask (soft tissue enclosed by
   bone) of a canal's size and density; holes linked from slice to slice into the longest
   cranio-caudal chain are the canal;
2. the bodies: in each slice, the filled bone region met first going anterior from the canal;
   its area along the canal is high in a body and drops at each disc, so the peaks of the
   area profile are bodies and the troughs between them discs;
3. the names, from anatomy: the sacrum is the first body (from the top) fused to bone on both
   sides at the body's own antero-posterior level (the alae reaching the iliac wings); the
   lowest rib-bearing vertebra is T12 (bone out beside the transverse processes, in a run of
   such vertebrae from the top of the scan). With both anchors, the count between them is
   checked (five lumbar vertebrae); another count is reported as transitional anatomy.

A scan with no spinal canal (a head, a phantom-only scan), a scan that is not a CT in HU (an
MR) or a spine with no anchor in view raises DetectionError: no level is guessed.
All thresholds below are project choices tuned on the digital phantom and one real chest CT
(docs/domain.md, "Automatic detection"), not literature values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, signal
from scipy.spatial import ConvexHull

from boneqct.errors import DetectionError
from boneqct.io import volume_to_sitk
from boneqct.spine.levels import LEVEL_NAMES
from boneqct.volume import Volume, lps_to_ras

#: Voxel edge (mm) of the working copy.
WORK_SPACING_MM = 2.5
#: HU above which a voxel counts as (cortical or dense) bone, and the lower HU above which
#: it counts as the bone enclosing the canal (thin laminae of low density, partial volume).
BONE_HU = 180.0
CANAL_RING_HU = 120.0
#: A CT in HU holds fat and air below this HU; an MR holds no negative values.
LOW_HU = -50.0
MIN_LOW_FRACTION = 0.005
#: Canal cross-section: area (mm2) and mean HU of a hole in the bone mask that can be canal.
CANAL_AREA_MM2 = (40.0, 450.0)
CANAL_MEAN_HU = (-200.0, 75.0)
#: A hole with another one more than BEHIND_MM behind it (posterior) and within
#: BEHIND_LATERAL_MM to the side is a body's interior, not the canal.
BEHIND_MM = 10.0
BEHIND_LATERAL_MM = 15.0
#: Linking canal holes: most slices skipped (mm) and in-plane step (mm) between linked holes.
CANAL_LINK_GAP_MM = 20.0
CANAL_LINK_STEP_MM = 8.0
#: The canal's path is carried on this far (mm) beyond its last enclosed holes, so the end
#: bodies (whose arch is shorter than the body) are seen whole.
CANAL_END_EXTENSION_MM = 12.0
#: Smoothing (Gaussian SD, slices) of the canal's path before taking its direction.
CANAL_SMOOTH_SLICES = 8.0
#: Least cranio-caudal length (mm) of a canal: about two vertebrae.
MIN_CANAL_LENGTH_MM = 50.0
#: How far (mm) in front of the canal's centre the body's posterior wall is sought, and the
#: half-width (mm) of the band about the canal's midline a body may occupy.
BODY_SEARCH_MM = 20.0
BODY_HALF_WIDTH_MM = 32.0
#: Half-width (mm) of the band of rays sent forward from the canal to meet the body.
RAY_BAND_MM = 8.0
#: Deepest body (mm, antero-posterior) searched in front of its posterior wall.
BODY_DEPTH_MAX_MM = 60.0
#: Least distance (mm) between body centres, and least prominence of a body's peak in the
#: area profile as a fraction of the median peak.
MIN_BODY_STEP_MM = 15.0
MIN_PEAK_PROMINENCE = 0.3
#: Sacral alae: bone fraction beside the body (from its side out to ALA_REACH_MM beyond) at
#: the body's antero-posterior level, on both sides, above which a body is fused to the wings.
ALA_REACH_MM = 35.0
MIN_ALA_FRACTION = 0.3
#: Ribs: 3D components of bone beside the spine (from RIB_INNER_MM off the canal's midline,
#: behind a plane RIB_FRONT_MM in front of the canal, which cuts them from the sternum, and in
#: front of one RIB_BACK_MM behind it, which cuts them from a table or calibration phantom) that
#: start within RIB_HEAD_MM of the midline and reach out beyond RIB_REACH_MM; each rib belongs
#: to the body nearest its medial end (the rib head articulates with its own vertebra).
RIB_INNER_MM = 30.0
RIB_HEAD_MM = 45.0
RIB_REACH_MM = 80.0
RIB_FRONT_MM = 25.0
RIB_BACK_MM = 45.0
#: Ribs are not sought on the two bodies above the sacrum (the iliac crests lie beside them).
RIB_CLEAR_OF_SACRUM = 2
#: Said with every detection: the method is checked on digital phantoms; on the one real CT
#: tested (an old, kyphotic thoracic spine at 2.5 mm slices) it put bodies half a level off
#: and named them one level off (docs/domain.md section 11).
REVIEW_NOTE = ("Automatic detection is a proposal: check every level's name and centre on the "
               "detection page (or in Slicer) before reporting by level; on real CT it can be "
               "off by a level (osteoporotic or strongly curved spines, thick slices). Edit "
               "detected_levels.mrk.json and rerun with --seeds to correct it.")
#: Vertebral column names from T1 to the sacrum, for naming by counting from an anchor.
COLUMN_NAMES: tuple[str, ...] = tuple(f"T{n}" for n in range(1, 13)) + tuple(
    f"L{n}" for n in range(1, 7))
#: Normal count of lumbar vertebrae between T12 and the sacrum.
LUMBAR_COUNT = 5


@dataclass
class DetectedLevel:
    """One detected vertebral body: its name, centroid (RAS mm), confidence (0-1) and how it
    was named (the anchor it was counted from)."""

    level: str
    centroid_ras_mm: list[float]
    confidence: float
    named_by: str
    height_mm: float
    ribs: int
    ala_fraction: float


@dataclass
class DetectionResult:
    """The detected levels (cranial first), the anchors used and the warnings."""

    method: str
    anchors: list[dict]
    levels: list[DetectedLevel]
    warnings: list[str] = field(default_factory=list)
    transitional: str | None = None
    work_spacing_mm: float = WORK_SPACING_MM
    canal_length_mm: float | None = None

    def seeds(self) -> dict[str, np.ndarray]:
        """{level: centroid RAS mm} of the detected levels spine QCT measures
        (``LEVEL_NAMES``): the seeds of ``analyze_spine``."""
        return {lv.level: np.asarray(lv.centroid_ras_mm) for lv in self.levels
                if lv.level in LEVEL_NAMES}

    def to_dict(self) -> dict:
        out = asdict(self)
        out["levels"] = [asdict(lv) for lv in self.levels]
        return out

    @classmethod
    def from_dict(cls, document: dict) -> DetectionResult:
        data = dict(document)
        data["levels"] = [DetectedLevel(**lv) for lv in document["levels"]]
        return cls(**data)


@dataclass
class _Grid:
    """The working copy: HU array (z, y, x) in LPS index order and its origin (LPS mm)."""

    hu: np.ndarray
    origin_lps_mm: np.ndarray
    spacing_mm: float

    def ras_mm(self, zyx) -> np.ndarray:
        z, y, x = zyx
        return lps_to_ras(self.origin_lps_mm + self.spacing_mm * np.array([x, y, z], float))


def detect_vertebrae(volume_hu: Volume) -> DetectionResult:
    """Find the vertebral bodies of a CT in HU and name them by anatomy.

    Raises:
        DetectionError: not a CT in HU, no spinal canal, no vertebral bodies, or no anchor
            (neither ribs nor sacrum) to name them by.
    """
    grid = working_grid(volume_hu)
    _check_ct(grid.hu)
    smooth = ndimage.gaussian_filter(grid.hu, 0.7)
    bone = smooth > BONE_HU
    canal = _canal_path(grid, smooth > CANAL_RING_HU)
    bodies = _bodies(grid, smooth, canal)
    for body in bodies:
        body.update(_anchor_scores(grid, bone, canal, body))
    _count_ribs(grid, bone, canal, bodies)
    levels, anchors, warnings, transitional = _name(bodies)
    warnings.append(REVIEW_NOTE)
    result_levels = [DetectedLevel(
        level=name, centroid_ras_mm=[float(v) for v in grid.ras_mm(body["zyx"])],
        confidence=round(confidence, 2), named_by=named_by,
        height_mm=float(body["height_mm"]), ribs=int(body["ribs"]),
        ala_fraction=float(body["ala"]))
        for body, (name, confidence, named_by) in zip(bodies, levels, strict=True)]
    return DetectionResult(method="canal-body-profile", anchors=anchors, levels=result_levels,
                           warnings=warnings, transitional=transitional,
                           work_spacing_mm=grid.spacing_mm,
                           canal_length_mm=float(canal["length_mm"]))


def working_grid(volume_hu: Volume) -> _Grid:
    """The CT block-averaged to about WORK_SPACING_MM, then resampled onto an axis-aligned
    LPS grid of that spacing (linear), -1000 HU outside."""
    image = sitk.Cast(volume_to_sitk(volume_hu), sitk.sitkFloat32)
    factors = [max(1, int(WORK_SPACING_MM / s)) for s in image.GetSpacing()]
    image = sitk.BinShrink(image, factors)
    size = np.array(image.GetSize())
    corners = np.array([image.TransformContinuousIndexToPhysicalPoint(
        [float(c) * (n - 1) for c, n in zip(corner, size, strict=True)])
        for corner in np.ndindex(2, 2, 2)])
    low, high = corners.min(axis=0), corners.max(axis=0)
    shape = np.floor((high - low) / WORK_SPACING_MM).astype(int) + 1
    reference = sitk.Image([int(n) for n in shape], sitk.sitkFloat32)
    reference.SetSpacing([WORK_SPACING_MM] * 3)
    reference.SetOrigin([float(v) for v in low])
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, -1000.0)
    return _Grid(sitk.GetArrayFromImage(resampled), low, WORK_SPACING_MM)


def _check_ct(hu: np.ndarray) -> None:
    """Refuse what is not a CT in HU (an MR: no fat or air at negative HU; no bone)."""
    inside = hu[hu > -1000.0 + 1.0]
    if inside.size == 0 or np.mean(hu < LOW_HU) < MIN_LOW_FRACTION or np.mean(hu > BONE_HU) == 0:
        raise DetectionError(
            "The image holds no fat or air at negative values, or no bone: it is not a CT in "
            "Hounsfield units (an MR, or a rescaled image). Vertebrae are detected on CT only; "
            "give seed points (--seeds/--seed) or a label map (--labels).")


def _canal_holes(grid: _Grid, bone: np.ndarray) -> np.ndarray:
    """Rows (z, y, x, area mm2) of the canal-like holes of the bone mask in every slice."""
    pixel_mm2 = grid.spacing_mm ** 2
    rows = []
    for z in range(bone.shape[0]):
        holes = ndimage.binary_fill_holes(bone[z]) & ~bone[z]
        labels, n = ndimage.label(holes)
        if n == 0:
            continue
        index = np.arange(1, n + 1)
        area = ndimage.sum_labels(holes, labels, index) * pixel_mm2
        mean_hu = ndimage.mean(grid.hu[z], labels, index)
        centres = ndimage.center_of_mass(holes, labels, index)
        found = [(z, y, x, a) for a, m, (y, x) in zip(area, mean_hu, centres, strict=True)
                 if CANAL_AREA_MM2[0] <= a <= CANAL_AREA_MM2[1]
                 and CANAL_MEAN_HU[0] <= m <= CANAL_MEAN_HU[1]]
        # a hole with another behind it (the canal behind a body's low-density interior)
        # is not the canal
        lateral, behind = BEHIND_LATERAL_MM / pixel_mm2 ** 0.5, BEHIND_MM / pixel_mm2 ** 0.5
        rows += [h for h in found if not any(abs(o[2] - h[2]) < lateral and o[1] - h[1] > behind
                                             for o in found)]
    return np.array(rows).reshape(-1, 4)


def _canal_path(grid: _Grid, bone: np.ndarray) -> dict:
    """The spinal canal: its centre (y, x index) in every slice of its extent (interpolated
    across the slices where its ring of bone is open, carried on beyond its ends) and its
    length (mm)."""
    holes = _canal_holes(grid, bone)
    no_canal = ("No spinal canal found (no tube of soft tissue enclosed by bone running "
                "cranio-caudally over {:.0f} mm): the scan holds no spine, or too little of it. "
                "Give seed points (--seeds/--seed) or a label map (--labels) instead.")
    if len(holes) < 2:
        raise DetectionError(no_canal.format(MIN_CANAL_LENGTH_MM))
    gap = CANAL_LINK_GAP_MM / grid.spacing_mm
    step = CANAL_LINK_STEP_MM / grid.spacing_mm
    parent = np.arange(len(holes))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = np.argsort(holes[:, 0], kind="stable")
    for a_pos, a in enumerate(order):
        for b in order[a_pos + 1:]:
            dz = holes[b, 0] - holes[a, 0]
            if dz > gap:
                break
            if dz > 0 and np.hypot(*(holes[b, 1:3] - holes[a, 1:3])) <= step * max(dz, 1.0) ** 0.5:
                parent[root(b)] = root(a)
    roots = np.array([root(i) for i in range(len(holes))])
    best, best_length = None, -1.0
    for r in np.unique(roots):
        z = holes[roots == r, 0]
        length = (z.max() - z.min()) * grid.spacing_mm
        if length > best_length:
            best, best_length = r, length
    if best_length < MIN_CANAL_LENGTH_MM:
        raise DetectionError(no_canal.format(MIN_CANAL_LENGTH_MM))
    chain = holes[roots == best]
    extend = int(round(CANAL_END_EXTENSION_MM / grid.spacing_mm))
    z_all = np.arange(max(int(chain[:, 0].min()) - extend, 0),
                      min(int(chain[:, 0].max()) + extend, bone.shape[0] - 1) + 1)
    z_chain = np.unique(chain[:, 0])
    y_med = np.array([np.median(chain[chain[:, 0] == z, 1]) for z in z_chain])
    x_med = np.array([np.median(chain[chain[:, 0] == z, 2]) for z in z_chain])
    return {"z": z_all, "y": np.interp(z_all, z_chain, y_med),
            "x": np.interp(z_all, z_chain, x_med), "length_mm": best_length}


def _canal_frames(canal: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per canal slice: the canal's smoothed centre (z, y, x index), and unit vectors across the canal
    (index units): anterior (towards -y, LPS) and lateral (towards +x), both perpendicular to
    the canal's smoothed direction."""
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


def _body_slices(grid: _Grid, smooth_hu: np.ndarray, canal: dict) -> tuple[np.ndarray, list,
                                                                          list]:
    """Per canal slice, in the plane across the canal there (a tilted spine is cut across
    its bodies, not obliquely): the area (mm2) of the outline (convex hull) of the bone region
    first met going anterior from the canal's centre, the outline's centroid (z, y, x index)
    and its extent (depth, width, index units); None where no bone is met."""
    s = grid.spacing_mm
    centres, anterior, lateral = _canal_frames(canal)
    u = np.arange(0.0, BODY_DEPTH_MAX_MM + BODY_SEARCH_MM, s) / s       # anterior, index units
    v = np.arange(-BODY_HALF_WIDTH_MM, BODY_HALF_WIDTH_MM + s / 2, s) / s
    centre_v = int(np.argmin(np.abs(v)))
    reach, ray_band = int(BODY_SEARCH_MM / s), int(RAY_BAND_MM / s)
    areas, outline_centres, spans = np.zeros(len(centres)), [], []
    for n, (point, a, lat) in enumerate(zip(centres, anterior, lateral, strict=True)):
        coords = (point[:, None, None] + a[:, None, None] * u[None, :, None]
                  + lat[:, None, None] * v[None, None, :])
        plane = ndimage.map_coordinates(smooth_hu, coords, order=1, cval=-1000.0) > BONE_HU
        # rays forward from the canal beside the midline too: the midline one passes through
        # the basivertebral foramen at mid-height of a body
        band = plane[:reach + 1, centre_v - ray_band:centre_v + ray_band + 1]
        rows, cols = np.nonzero(band)
        if rows.size == 0:
            outline_centres.append(None)
            spans.append(None)
            continue
        wall = int(rows.min())
        labels, _ = ndimage.label(plane[wall:], structure=np.ones((3, 3)))
        first = labels[0, centre_v - ray_band:centre_v + ray_band + 1]
        points = np.argwhere(np.isin(labels, first[first > 0])).astype(float)
        points = points[points[:, 0] >= 1]  # not the wall's row: it joins the arch round the canal
        if len(points) < 3 or np.linalg.matrix_rank(points - points.mean(axis=0)) < 2:
            outline_centres.append(None)
            spans.append(None)
            continue
        # the hull: the body's cross-section, whether or not its thin cortex is closed
        hull = ConvexHull(points)
        areas[n] = hull.volume * s * s
        cu, cv = _polygon_centroid(points[hull.vertices])
        outline_centres.append(point + a * u[wall] + a * cu + lat * v[0] + lat * cv)
        spans.append(np.ptp(points, axis=0) + 1)
    return areas, outline_centres, spans


def _polygon_centroid(vertices: np.ndarray) -> np.ndarray:
    """Centroid of a polygon's area (vertices in order, any unit)."""
    a, b = vertices, np.roll(vertices, -1, axis=0)
    cross = a[:, 0] * b[:, 1] - b[:, 0] * a[:, 1]
    return ((a + b) * cross[:, None]).sum(axis=0) / (3.0 * cross.sum())


def _bodies(grid: _Grid, smooth_hu: np.ndarray, canal: dict) -> list[dict]:
    """The vertebral bodies along the canal, cranial first: centroid (z, y, x index), height
    (mm), width and depth (index), from the peaks of the body-area profile."""
    areas, outline_centres, spans = _body_slices(grid, smooth_hu, canal)
    # zero at both ends, so a body at the end of the canal still makes a peak
    smooth = np.pad(ndimage.gaussian_filter1d(areas, 0.7), 1)[1:-1]
    smooth[[0, -1]] = 0.0
    distance = max(1, int(MIN_BODY_STEP_MM / grid.spacing_mm))
    peaks, _ = signal.find_peaks(smooth, distance=distance)
    if peaks.size:
        reference = np.median(smooth[peaks])
        peaks, _ = signal.find_peaks(smooth, distance=distance,
                                     prominence=MIN_PEAK_PROMINENCE * reference)
    if peaks.size < 2:
        raise DetectionError("The spinal canal was found but not two vertebral bodies in "
                             "front of it with discs between. Give seed points "
                             "(--seeds/--seed) or a label map (--labels) instead.")
    bounds = [0] + [p + int(np.argmin(smooth[p:q])) for p, q in zip(peaks, peaks[1:],
                                                                    strict=False)] + [len(areas) - 1]
    bodies = []
    for n, peak in enumerate(peaks):
        lo, hi = bounds[n], bounds[n + 1]
        rows = [i for i in range(lo, hi + 1) if outline_centres[i] is not None
                and areas[i] >= 0.5 * smooth[peak]]
        weights = np.array([areas[i] for i in rows])
        centres = np.array([outline_centres[i] for i in rows])
        centroid = weights @ centres / weights.sum()
        depth, width = np.median([spans[i] for i in rows], axis=0)
        bodies.append({"zyx": centroid, "height_mm": len(rows) * grid.spacing_mm,
                       "width": width, "depth": depth,
                       "canal_yx": (canal["y"][peak], canal["x"][peak]), "peak_area_mm2":
                       float(smooth[peak])})
    return bodies[::-1]  # the canal's slices run caudal to cranial


def _anchor_scores(grid: _Grid, bone: np.ndarray, canal: dict, body: dict) -> dict:
    """How much the body looks fused to sacral alae: the bone fraction beside it at its own
    antero-posterior level, the smaller side."""
    s = grid.spacing_mm
    z, y, x = body["zyx"]
    yc, xc = body["canal_yx"]
    nz = bone.shape[0]
    core = slice(max(int(round(z - 0.3 * body["height_mm"] / s)), 0),
                 min(int(round(z + 0.3 * body["height_mm"] / s)) + 1, nz))
    y_front, y_back = int(round(y - body["depth"] / 2)), int(round(y + body["depth"] / 4))
    inner, outer = body["width"] / 2 + 5.0 / s, body["width"] / 2 + ALA_REACH_MM / s
    ala = []
    for side in (-1, 1):
        xs = sorted((int(round(x + side * inner)), int(round(x + side * outer))))
        box = bone[core, max(y_front, 0):max(y_back, 0) + 1, max(xs[0], 0):max(xs[1], 0) + 1]
        ala.append(float(box.mean()) if box.size else 0.0)
    return {"ala": min(ala)}


def _count_ribs(grid: _Grid, bone: np.ndarray, canal: dict, bodies: list[dict]) -> None:
    """Set each body's ``ribs``: how many rib components have their medial end nearest it."""
    s = grid.spacing_mm
    z0, z1 = int(canal["z"][0]), int(canal["z"][-1])
    sub = bone[z0:z1 + 1]
    x_index = np.arange(sub.shape[2])[None, None, :]
    y_index = np.arange(sub.shape[1])[None, :, None]
    lateral_mm = np.abs(x_index - canal["x"][:, None, None]) * s
    behind = ((y_index >= canal["y"][:, None, None] - RIB_FRONT_MM / s)
              & (y_index <= canal["y"][:, None, None] + RIB_BACK_MM / s))
    labels, n = ndimage.label(sub & behind & (lateral_mm >= RIB_INNER_MM))
    for body in bodies:
        body["ribs"] = 0
    if n == 0:
        return
    index = np.arange(1, n + 1)
    lateral = np.broadcast_to(lateral_mm, sub.shape)
    inner = ndimage.minimum(lateral, labels, index)
    outer = ndimage.maximum(lateral, labels, index)
    body_z = np.array([b["zyx"][0] for b in bodies])
    for value in index[(np.asarray(inner) <= RIB_HEAD_MM) & (np.asarray(outer) >= RIB_REACH_MM)]:
        zs, _, _ = np.nonzero((labels == value) & (lateral <= inner[value - 1] + 5.0))
        head_z = z0 + zs.mean()
        bodies[int(np.argmin(np.abs(body_z - head_z)))]["ribs"] += 1


def _name(bodies: list[dict]) -> tuple[list[tuple[str, float, str]], list[dict], list[str],
                                        str | None]:
    """Names of the bodies (cranial first) with confidence and how named; the anchors; the
    warnings; the transitional anatomy found (None when the count is normal or unchecked)."""
    n = len(bodies)
    sacrum = next((i for i, b in enumerate(bodies) if b["ala"] >= MIN_ALA_FRACTION and i > 0),
                  None)
    rib_limit = n if sacrum is None else max(sacrum - RIB_CLEAR_OF_SACRUM, 0)
    ribbed = [b["ribs"] > 0 for b in bodies[:rib_limit]]
    # T12: the lowest rib-bearing body, in a run of them from the top of the scan or of two
    t12 = next((i for i in range(len(ribbed) - 1, -1, -1) if ribbed[i]
                and (i > 0 and ribbed[i - 1] or all(ribbed[:i + 1]))), None)
    anchors, warnings, transitional = [], [], None
    if sacrum is not None:
        anchors.append({"anchor": "sacrum", "level": "S1", "body_index": sacrum,
                        "ala_fraction": round(bodies[sacrum]["ala"], 2)})
    if t12 is not None:
        anchors.append({"anchor": "ribs", "level": "T12", "body_index": t12,
                        "ribs": bodies[t12]["ribs"]})
    if sacrum is None and t12 is None:
        raise DetectionError(
            f"{n} vertebral bodies were found but neither anchor to name them: no sacrum "
            "(first body fused to the iliac wings) and no lowest rib-bearing vertebra (T12) "
            "in the scan. Levels are not guessed; give seed points (--seeds/--seed) or a "
            "label map (--labels).")
    base = 0.8
    if sacrum is not None and t12 is not None:
        lumbar = sacrum - t12 - 1
        if lumbar == LUMBAR_COUNT:
            base = 0.95
        else:
            base = 0.6
            transitional = (f"{lumbar} lumbar-type vertebrae between the lowest rib-bearing "
                            "vertebra and the sacrum (normal: 5)")
            kind = ("six lumbar vertebrae or a lumbarised S1" if lumbar > LUMBAR_COUNT
                    else "a sacralised L5, or no ribs on T12")
            warnings.append(f"Transitional anatomy: {transitional}: {kind}. Levels are counted "
                            "down from the lowest rib-bearing vertebra (T12); check the names "
                            "against the whole spine before reporting by level.")
    names = []
    for i, body in enumerate(bodies):
        if t12 is not None:
            index, named_by = COLUMN_NAMES.index("T12") + i - t12, "counted from T12 (ribs)"
        else:
            index, named_by = COLUMN_NAMES.index("L5") + i - (sacrum - 1), \
                "counted from S1 (sacrum)"
        if sacrum is not None and i >= sacrum:
            name, named_by = f"S{i - sacrum + 1}", "sacrum (fused to the iliac wings)"
        elif index < 0:
            name = "cervical?"
        elif index >= len(COLUMN_NAMES):
            name = f"L{index - COLUMN_NAMES.index('L1') + 1}"
        else:
            name = COLUMN_NAMES[index]
        anchor_i = t12 if t12 is not None else sacrum
        clarity = min(1.0, body["peak_area_mm2"] / max(np.median(
            [b["peak_area_mm2"] for b in bodies]), 1e-6))
        confidence = base * 0.97 ** abs(i - anchor_i) * (0.7 + 0.3 * clarity)
        names.append((name, float(confidence), named_by))
    if sacrum is None:
        warnings.append("No sacrum in the scan: the names rest on the ribs alone (the lowest "
                        "rib-bearing vertebra taken as T12), not cross-checked.")
    elif t12 is None:
        warnings.append("No rib-bearing vertebra in the scan: the names rest on the sacrum "
                        "alone (the body above it taken as L5), not cross-checked.")
    unmeasured = [nm for nm, _, _ in names if nm not in LEVEL_NAMES and not nm.startswith("S")
                  and not nm.startswith("T")]
    if unmeasured:
        warnings.append(f"{', '.join(unmeasured)}: not a level spine QCT measures; left out of "
                        "the seeds.")
    return names, anchors, warnings, transitional
