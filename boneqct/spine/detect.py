"""Find and name the vertebral bodies of a CT without seeds: classical image analysis.

On a copy of the CT averaged to about ``WORK_SPACING_MM`` (axis-aligned, LPS index order):

1. the spinal canal: in each axial slice, the holes of the bone mask (soft tissue enclosed by
   bone) of a canal's size and density; holes linked from slice to slice into the longest
   cranio-caudal chain are the canal;
2. the bodies (``detect_bodies``): the CT straightened along the canal; the mean HU of a band
   in front of the canal, along it, has bright disc zones (endplates) in every spine while
   the sign of disc minus body interior varies (an osteoporotic interior is darker than the
   disc); closed over a disc's length, its valleys are the bodies, each the interval between
   two disc zones, its centre across the canal that of its cross-section;
3. the names, from anatomy: the sacrum is the first body (from the top) fused to bone on both
   sides at the body's own antero-posterior level (the alae reaching the iliac wings); the
   lowest rib-bearing vertebra is T12 (a thin bone reaching out past the transverse
   processes, its medial end within the vertebra's span, in a run of such vertebrae from the
   top of the scan). With both anchors, the count between them is
   checked (five lumbar vertebrae); another count is reported as transitional anatomy.

A scan with no spinal canal (a head, a phantom-only scan), a scan that is not a CT in HU (an
MR) or a spine with no anchor in view raises DetectionError: no level is guessed.
All thresholds below are project choices tuned on the digital phantom and one real chest CT
(docs/domain.md, "Automatic detection"; Testing/test_detect_real.py), not literature values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from boneqct.errors import DetectionError
from boneqct.io import volume_to_sitk
from boneqct.resources import check_detection_grid
from boneqct.spine.detect_bodies import (
    PITCH_RANGE_MM,
    body_intervals,
    body_profile,
    cross_section,
    pitch_is_plausible,
    straightened,
)
from boneqct.spine.levels import LEVEL_NAMES
from boneqct.volume import Volume, lps_to_ras

#: Voxel edge (mm) of the working copy.
WORK_SPACING_MM = 2.5
#: Least extent (mm) of a scan along each axis to search: a vertebral body is 25-50 mm wide.
MIN_SCAN_EXTENT_MM = 20.0
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
#: Least cranio-caudal length (mm) of a canal: about two vertebrae.
MIN_CANAL_LENGTH_MM = 50.0
#: Sacral alae: bone fraction beside the body (from its side out to ALA_REACH_MM beyond) at
#: the body's antero-posterior level, on both sides, above which a body is fused to the wings.
ALA_REACH_MM = 35.0
MIN_ALA_FRACTION = 0.3
#: Ribs: 3D components of bone (above RIB_HU: a twelfth rib is thin and of low density,
#: partial-volumed on a 2.5 mm grid; fragments one voxel apart linked) beside the spine (from RIB_INNER_MM off the canal's
#: midline, behind a plane RIB_FRONT_MM in front of the canal, which cuts them from the sternum,
#: and in front of one RIB_BACK_MM behind it, which cuts them from a table or calibration
#: phantom) that start within RIB_HEAD_MM of the midline, reach out beyond RIB_REACH_MM (past a
#: lumbar transverse process, about 50 mm at most) and are thin (mean section under
#: RIB_MAX_SECTION_MM2 per mm of lateral reach: not a kidney or the spleen enhanced by contrast);
#: each rib belongs to the body whose span (disc zone to disc zone) holds its medial end.
RIB_HU = 120.0
RIB_INNER_MM = 30.0
RIB_HEAD_MM = 45.0
RIB_REACH_MM = 60.0
RIB_FRONT_MM = 25.0
RIB_BACK_MM = 45.0
RIB_MAX_SECTION_MM2 = 150.0
#: A body's ribs can be seen only where the scan reaches RIB_VIEW_MARGIN_MM beyond
#: RIB_REACH_MM from the canal's midline on both sides.
RIB_VIEW_MARGIN_MM = 20.0
#: Ribs are not sought on the two bodies above the sacrum (the iliac crests lie beside them).
RIB_CLEAR_OF_SACRUM = 2
#: Said with every detection: the method is checked on digital phantoms and one real CT (an
#: old, kyphotic spine at 2.5 mm slices: T8-L2 named right, centres within 5 mm,
#: Testing/test_detect_real.py); one scan is no evidence of how often it fails on others.
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
    pitch_mm: float
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

    def seeds(self, levels=LEVEL_NAMES) -> dict[str, np.ndarray]:
        """{level: centroid RAS mm} of the detected levels among ``levels`` (default: those
        spine QCT measures, the seeds of ``analyze_spine``; ``VFA_LEVEL_NAMES`` for
        ``analyze_vfa``)."""
        return {lv.level: np.asarray(lv.centroid_ras_mm) for lv in self.levels
                if lv.level in levels}

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
    _count_ribs(grid, smooth > RIB_HU, canal, bodies)
    levels, anchors, warnings, transitional = _name(bodies)
    odd = [name for (name, _, _), body in zip(levels, bodies, strict=True)
           if not pitch_is_plausible(body["pitch_mm"])]
    if odd:
        warnings.append(f"{', '.join(odd)}: spacing to the next discs out of a vertebra's range "
                        f"({PITCH_RANGE_MM[0]:.0f}-{PITCH_RANGE_MM[1]:.0f} mm): two bodies "
                        "taken as one, or one split (fracture, Schmorl node); the count across "
                        "it, and so the names beyond it, may be off.")
    warnings.append(REVIEW_NOTE)
    result_levels = [DetectedLevel(
        level=name, centroid_ras_mm=[float(v) for v in grid.ras_mm(body["zyx"])],
        confidence=round(confidence, 2), named_by=named_by,
        pitch_mm=round(float(body["pitch_mm"]), 1), ribs=int(body["ribs"]),
        ala_fraction=float(body["ala"]))
        for body, (name, confidence, named_by) in zip(bodies, levels, strict=True)]
    return DetectionResult(method="canal-body-profile", anchors=anchors, levels=result_levels,
                           warnings=warnings, transitional=transitional,
                           work_spacing_mm=grid.spacing_mm,
                           canal_length_mm=float(canal["length_mm"]))


def working_grid(volume_hu: Volume) -> _Grid:
    """The CT block-averaged to about WORK_SPACING_MM, then resampled onto an axis-aligned
    LPS grid of that spacing (linear), -1000 HU outside."""
    extent_mm = volume_hu.spacing_mm * np.array(volume_hu.size_ijk)
    if np.any(extent_mm < MIN_SCAN_EXTENT_MM):
        raise DetectionError(
            f"The scan spans only {' x '.join(f'{v:.3g}' for v in extent_mm)} mm: too small "
            "to hold a vertebra. Check the voxel size the file's header states.")
    image = sitk.Cast(volume_to_sitk(volume_hu), sitk.sitkFloat32)
    factors = [max(1, min(int(WORK_SPACING_MM / s), n))
               for s, n in zip(image.GetSpacing(), image.GetSize(), strict=True)]
    image = sitk.BinShrink(image, factors)
    size = np.array(image.GetSize())
    corners = np.array([image.TransformContinuousIndexToPhysicalPoint(
        [float(c) * (n - 1) for c, n in zip(corner, size, strict=True)])
        for corner in np.ndindex(2, 2, 2)])
    low, high = corners.min(axis=0), corners.max(axis=0)
    shape = np.floor((high - low) / WORK_SPACING_MM).astype(int) + 1
    check_detection_grid(shape[::-1], WORK_SPACING_MM)
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


def _bodies(grid: _Grid, smooth_hu: np.ndarray, canal: dict) -> list[dict]:
    """The vertebral bodies along the canal, cranial first: centroid (z, y, x index), pitch
    (mm, from disc zone to disc zone), width and depth (index), the canal slices they span
    (z index) and the depth of their valley in the body profile (HU)."""
    s = grid.spacing_mm
    straight = straightened(smooth_hu, s, canal)
    intervals = body_intervals(body_profile(straight), straight["arc_mm"])
    slices = np.arange(len(straight["centres"]))
    step_mm = float(np.median(np.diff(straight["arc_mm"])))
    bodies = []
    for body in intervals:
        c = body["centre"]
        half = max(1, int(round(0.2 * body["pitch_mm"] / step_mm)))
        lo, hi = max(int(round(c)) - half, 0), min(int(round(c)) + half, len(slices) - 1)
        section = cross_section(straight, lo, hi)
        if section is None:
            continue
        (cu, cv), (depth, width) = section
        point, anterior, lateral = (np.array([np.interp(c, slices, a[:, k]) for k in range(3)])
                                    for a in (straight["centres"], straight["anterior"],
                                              straight["lateral"]))
        below, above = body["discs"]
        bodies.append({
            "zyx": point + anterior * cu / s + lateral * cv / s,
            "pitch_mm": body["pitch_mm"], "depth": depth / s, "width": width / s,
            "z_range": (np.interp(below, slices, canal["z"]) if below is not None else -np.inf,
                        np.interp(above, slices, canal["z"]) if above is not None else np.inf),
            "canal_yx": (np.interp(c, slices, canal["y"]), np.interp(c, slices, canal["x"])),
            "valley_hu": body["valley_hu"]})
    if len(bodies) < 2:
        raise DetectionError("The spinal canal was found but not two vertebral bodies in "
                             "front of it with discs between. Give seed points "
                             "(--seeds/--seed) or a label map (--labels) instead.")
    return bodies[::-1]  # the canal's slices run caudal to cranial


def _anchor_scores(grid: _Grid, bone: np.ndarray, canal: dict, body: dict) -> dict:
    """How much the body looks fused to sacral alae: the bone fraction beside it at its own
    antero-posterior level, the smaller side."""
    s = grid.spacing_mm
    z, y, x = body["zyx"]
    yc, xc = body["canal_yx"]
    nz = bone.shape[0]
    core = slice(max(int(round(z - 0.15 * body["pitch_mm"] / s)), 0),
                 min(int(round(z + 0.15 * body["pitch_mm"] / s)) + 1, nz))
    y_front, y_back = int(round(y - body["depth"] / 2)), int(round(y + body["depth"] / 4))
    inner, outer = body["width"] / 2 + 5.0 / s, body["width"] / 2 + ALA_REACH_MM / s
    ala = []
    for side in (-1, 1):
        xs = sorted((int(round(x + side * inner)), int(round(x + side * outer))))
        box = bone[core, max(y_front, 0):max(y_back, 0) + 1, max(xs[0], 0):max(xs[1], 0) + 1]
        ala.append(float(box.mean()) if box.size else 0.0)
    return {"ala": min(ala)}


def _count_ribs(grid: _Grid, bone: np.ndarray, canal: dict, bodies: list[dict]) -> None:
    """Set each body's ``ribs`` (how many rib components have their medial end in its span)
    and ``rib_view`` (whether the scan is wide enough there to show them)."""
    s = grid.spacing_mm
    z0, z1 = int(canal["z"][0]), int(canal["z"][-1])
    sub = bone[z0:z1 + 1]
    x_index = np.arange(sub.shape[2])[None, None, :]
    y_index = np.arange(sub.shape[1])[None, :, None]
    lateral_mm = np.abs(x_index - canal["x"][:, None, None]) * s
    behind = ((y_index >= canal["y"][:, None, None] - RIB_FRONT_MM / s)
              & (y_index <= canal["y"][:, None, None] + RIB_BACK_MM / s))
    candidate = sub & behind & (lateral_mm >= RIB_INNER_MM)
    # fragments of a thin rib, split by partial volume, linked across one voxel
    labels, n = ndimage.label(ndimage.binary_dilation(candidate))
    labels[~candidate] = 0
    for body in bodies:
        body["ribs"] = 0
        # whether the scan reaches far enough out on both sides to show a rib of this body
        x = body["canal_yx"][1]
        body["rib_view"] = bool(min(x, bone.shape[2] - 1 - x) * s
                                >= RIB_REACH_MM + RIB_VIEW_MARGIN_MM)
    if n == 0:
        return
    index = np.arange(1, n + 1)
    lateral = np.broadcast_to(lateral_mm, sub.shape)
    inside = labels > 0
    values, value_lateral = labels[inside], lateral[inside]
    inner = np.asarray(ndimage.minimum(value_lateral, values, index))
    outer = np.asarray(ndimage.maximum(value_lateral, values, index))
    section_mm2 = (np.bincount(values, minlength=n + 1)[1:] * s ** 3
                   / np.maximum(outer - inner, s))
    body_z = np.array([b["zyx"][0] for b in bodies])
    for value in index[(inner <= RIB_HEAD_MM) & (outer >= RIB_REACH_MM)
                       & (section_mm2 <= RIB_MAX_SECTION_MM2)]:
        zs, _, _ = np.nonzero((labels == value) & (lateral <= inner[value - 1] + 5.0))
        head_z = z0 + zs.mean()
        holding = [i for i, b in enumerate(bodies) if b["z_range"][0] <= head_z
                   < b["z_range"][1]]
        bodies[holding[0] if holding else int(np.argmin(np.abs(body_z - head_z)))]["ribs"] += 1


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
    if t12 is not None and not all(b["rib_view"] for b in bodies[t12 + 1:rib_limit]):
        # a rib-free body is no evidence where the scan is too narrow to show its ribs
        warnings.append(
            f"Ribs were seen down to body {t12 + 1} from the top, but the scan is too narrow "
            f"below it (under {RIB_REACH_MM + RIB_VIEW_MARGIN_MM:.0f} mm beside the canal) to "
            "see whether lower bodies bear ribs: the ribs are not used to name the levels.")
        t12 = None
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
            "in the scan" + (" (the scan is too narrow beside the spine to show the ribs)"
                             if warnings else "") + ". Levels are not guessed; give seed "
            "points (--seeds/--seed) or a label map (--labels).")
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
        # counted from the nearer anchor (both agree when base is high); a clear body has a
        # valley at least half as deep as the median body's
        steps = min(abs(i - a) for a in (t12, sacrum) if a is not None)
        clarity = min(1.0, body["valley_hu"] / max(0.5 * np.median(
            [b["valley_hu"] for b in bodies]), 1e-6))
        confidence = base * 0.97 ** steps * (0.7 + 0.3 * clarity)
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
