"""Screw trajectories against known truth: a uniform cube, the digital spine phantom's
vertebral bodies, an analytic pedicle with a cortical ring, orientation against the grid,
refusals, the markups line files and the command line."""

from __future__ import annotations

import json

import numpy as np
import pypdf
import pytest

from boneqct.calibration import manual_calibration
from boneqct.cli import main
from boneqct.errors import ScrewError, UserFileError
from boneqct.io import write_volume
from boneqct.io.atomic import write_output_set
from boneqct.phantoms import ScannerParams, make_spine_phantom
from boneqct.phantoms.anatomy import TRABECULAR_FIRST
from boneqct.screw.lines import parse_line_args, read_markups_lines, write_markups_lines
from boneqct.screw.options import ScrewOptions
from boneqct.screw.outputs import write_screw_outputs
from boneqct.screw.pipeline import ScrewResult, analyze_screws
from boneqct.screw.trajectory import sample_screw, screw_line
from boneqct.spine.levels import LABEL_SCHEMES
from boneqct.volume import Volume, ijk_to_ras_matrix, ras_to_lps

SLOPE, INTERCEPT = 1.25, -10.0
CALIBRATION = manual_calibration(SLOPE, INTERCEPT, "K2HPO4")


def _hu(bmd_mg_cm3):
    return SLOPE * np.asarray(bmd_mg_cm3, float) + INTERCEPT


def _cube(bmd_mg_cm3=150.0, spacing=(0.8, 0.9, 1.5), shape_kji=(50, 70, 70)) -> Volume:
    """A uniform block of known density, centred on RAS (0, 0, 0)."""
    extent = np.array(shape_kji[::-1]) * np.array(spacing)
    return Volume(np.full(shape_kji, _hu(bmd_mg_cm3), np.float32),
                  ijk_to_ras_matrix(-extent / 2 + np.array(spacing) / 2, spacing))


# ---- geometry and uniform density ------------------------------------------------------

@pytest.mark.parametrize("entry, tip", [
    ((0, 0, -15), (0, 0, 15)),            # along k, axis on voxel centres
    ((0.4, 0.45, -15), (0.4, 0.45, 15)),  # along k, axis on voxel corners
    ((-12, -10, -8), (10, 12, 9)),        # oblique
    ((-20, 0.3, 0.2), (20, 0.3, 0.2)),    # along i
])
def test_partial_volume_weights_give_the_analytic_volumes(entry, tip):
    volume = _cube()
    line = screw_line("s", entry, tip)
    sampling = sample_screw(volume, line, 6.5, 1.5, 10.0)
    cylinder_mm3 = sampling.cylinder_weight.sum() * sampling.voxel_volume_mm3
    shell_mm3 = sampling.shell_weight.sum() * sampling.voxel_volume_mm3
    assert cylinder_mm3 == pytest.approx(np.pi * 3.25**2 * line.length_mm, rel=0.005)
    assert shell_mm3 == pytest.approx(np.pi * (4.75**2 - 3.25**2) * line.length_mm, rel=0.01)
    assert sampling.segment_weight.sum() == pytest.approx(sampling.cylinder_weight.sum())


def test_uniform_cube_reads_its_density_within_one_percent():
    rng = np.random.default_rng(3)
    volume = _cube(150.0)
    volume.array_kji += rng.normal(0.0, 10.0, volume.array_kji.shape).astype(np.float32)
    lines = [screw_line("axial", (-20, -15, 0), (15, 12, 3)),
             screw_line("steep", (-5, -5, -20), (5, 6, 20))]
    result = analyze_screws(volume, CALIBRATION, lines=lines)
    for s in result.screws:
        assert s.measured, s.reason
        for value in (s.bmd_mg_cm3, s.shell_bmd_mg_cm3, s.min_segment_bmd_mg_cm3):
            assert value == pytest.approx(150.0, rel=0.01)
        assert s.cortical_contact_fraction == 0.0
        assert s.cement_suggested is False
        assert s.level is None
    low = analyze_screws(_cube(36.0), CALIBRATION, lines=lines[:1]).screws[0]
    assert low.bmd_mg_cm3 == pytest.approx(36.0, rel=0.01)
    assert low.cement_suggested is True  # the seed case: 36 mg/cm3 -> cement


def test_a_per_slice_calibration_is_applied_slice_by_slice():
    """CT numbers drifting along k under a per-slice calibration: the screw still reads the
    uniform density (the global line would not), and its shell no cortical contact."""
    from boneqct.calibration import Calibration

    volume = _cube(150.0)
    slopes = np.linspace(1.0, 1.5, volume.array_kji.shape[0])
    volume.array_kji[:] = (slopes * 150.0 + INTERCEPT)[:, None, None]
    drifting = Calibration("K2HPO4", 1.25, INTERCEPT, method="manual", per_slice={
        "k": [0, len(slopes) - 1], "slope_hu_per_mg_cm3": [1.0, 1.5],
        "intercept_hu": [INTERCEPT, INTERCEPT]})
    line = screw_line("steep", (-3, -4, -25), (4, 5, 25))
    s = analyze_screws(volume, drifting, lines=[line]).screws[0]
    assert s.bmd_mg_cm3 == pytest.approx(150.0, rel=0.002)
    assert [g["bmd_mg_cm3"] for g in s.segments] == pytest.approx([150.0] * 5, rel=0.002)
    assert s.cortical_contact_fraction == 0.0
    assert analyze_screws(volume, CALIBRATION, lines=[line]).screws[0].min_segment_bmd_mg_cm3 \
        < 140.0


def test_segments_find_the_weak_part_of_the_path():
    """Two halves of known density along the screw: the segments and their minimum."""
    volume = _cube(160.0)
    z_kji = volume.ijk_to_ras_points(np.c_[np.zeros(50), np.zeros(50), np.arange(50)])[:, 2]
    volume.array_kji[z_kji < 0] = _hu(40.0)  # inferior half weaker
    line = screw_line("s", (0, 0, -20), (0, 0, 20))
    s = analyze_screws(volume, CALIBRATION, ScrewOptions(segment_mm=10.0),
                       lines=[line]).screws[0]
    assert [g["start_mm"] for g in s.segments] == [0, 10, 20, 30]
    np.testing.assert_allclose([g["bmd_mg_cm3"] for g in s.segments], [40, 40, 160, 160],
                               rtol=0.01)
    assert s.min_segment_bmd_mg_cm3 == pytest.approx(40.0, rel=0.01)
    assert s.min_segment_index in (0, 1)
    assert s.bmd_mg_cm3 == pytest.approx(100.0, rel=0.01)


# ---- analytic pedicle with a cortical ring -------------------------------------------

PEDICLE_INNER_MM = 4.25
TRABECULAR, CORTICAL = 150.0, 1000.0


def _pedicle(spacing_mm=0.75, n=48, supersample=5) -> Volume:
    """A tube along A (RAS y): trabecular bone inside radius PEDICLE_INNER_MM, cortical bone
    outside, each voxel the mean of its sub-samples (partial volume)."""
    offsets = ((np.arange(supersample) + 0.5) / supersample - 0.5) * spacing_mm
    centres = (np.arange(n) - (n - 1) / 2) * spacing_mm
    x = (centres[:, None] + offsets[None]).ravel()
    inside = np.hypot(x[:, None], x[None, :]) <= PEDICLE_INNER_MM  # (z fine, x fine)
    fraction = inside.reshape(n, supersample, n, supersample).mean(axis=(1, 3))  # (k, i)
    bmd_ki = CORTICAL + (TRABECULAR - CORTICAL) * fraction
    bmd = np.repeat(bmd_ki[:, None, :], n, axis=1)  # constant along j (A)
    origin = -(n - 1) / 2 * spacing_mm * np.ones(3)
    return Volume(_hu(bmd).astype(np.float32), ijk_to_ras_matrix(origin, [spacing_mm] * 3))


def _true_cortical_fraction(offset_mm: float, radius_mm=3.25, shell_mm=1.5) -> float:
    """Share of the shell annulus outside the pedicle's inner radius, for a screw parallel to
    the tube at ``offset_mm`` from its axis (fine 2D grid in continuous space)."""
    x = np.linspace(-8, 8, 3201)
    xx, zz = np.meshgrid(x, x)
    r = np.hypot(xx - offset_mm, zz)
    annulus = (r > radius_mm) & (r <= radius_mm + shell_mm)
    return float(np.mean(np.hypot(xx, zz)[annulus] > PEDICLE_INNER_MM))


@pytest.mark.parametrize("offset_mm", [0.0, 0.8, 1.5])
def test_pedicle_cortical_contact_within_five_points(offset_mm):
    volume = _pedicle()
    options = ScrewOptions(cortical_threshold_mg_cm3=(TRABECULAR + CORTICAL) / 2)
    line = screw_line("ped", (offset_mm, -12, 0), (offset_mm, 12, 0))
    s = analyze_screws(volume, CALIBRATION, options, lines=[line]).screws[0]
    truth = _true_cortical_fraction(offset_mm)
    assert 0.1 < truth < 0.9
    assert s.cortical_contact_fraction == pytest.approx(truth, abs=0.05)
    assert s.shell_bmd_mg_cm3 > s.bmd_mg_cm3


# ---- the digital spine phantom -------------------------------------------------------

@pytest.fixture(scope="module")
def phantom():
    return make_spine_phantom(scanner=ScannerParams(n_slices=48, noise_sd_hu=10.0), seed=7)


@pytest.fixture(scope="module")
def phantom_calibration(phantom):
    truth = phantom.truth["calibration"]
    return manual_calibration(truth["slope_hu_per_mg_cm3"], truth["intercept_hu"], "K2HPO4")


def _vertebra(phantom, level):
    return next(v for v in phantom.truth["vertebrae"] if v["level"] == level)


def _in_body_lines(centre):
    """Screws of 20 mm in the body's trabecular interior at several orientations."""
    out = []
    for n, (azimuth, tilt) in enumerate([(0, 0), (20, 0), (35, 10), (90, 0), (60, -12)]):
        a, t = np.radians(azimuth), np.radians(tilt)
        direction = np.array([np.sin(a) * np.cos(t), np.cos(a) * np.cos(t), np.sin(t)])
        out.append(screw_line(f"o{n}", centre - 10 * direction, centre + 10 * direction))
    return out


@pytest.mark.parametrize("level", ["L2", "L3"])
def test_screw_in_a_vertebral_body_reads_its_trabecular_bmd(phantom, phantom_calibration, level):
    vertebra = _vertebra(phantom, level)
    lines = _in_body_lines(np.array(vertebra["body_center_ras_mm"]))
    result = analyze_screws(phantom.volume, phantom_calibration, lines=lines)
    values = [s.bmd_mg_cm3 for s in result.screws]
    # wholly in trabecular bone of known density: within 3%
    np.testing.assert_allclose(values, vertebra["trabecular_bmd_mg_cm3"], rtol=0.03)
    # independent of the orientation against the voxel grid within 2%
    assert (max(values) - min(values)) / np.mean(values) < 0.02
    assert all(s.cortical_contact_fraction < 0.01 for s in result.screws)


def _pedicle_path(phantom, level):
    """A screw from behind the body through its posterior wall to near the anterior wall."""
    centre = np.array(_vertebra(phantom, level)["body_center_ras_mm"])
    return screw_line(f"{level}_right", centre + [8, -40, 0], centre + [2, 10, 0])


def test_level_and_pedicle_body_split_from_seeds(phantom, phantom_calibration):
    seeds = {v["level"]: np.array(v["body_center_ras_mm"]) for v in phantom.truth["vertebrae"]}
    result = analyze_screws(phantom.volume, phantom_calibration, lines=[
        _pedicle_path(phantom, "L2"), _pedicle_path(phantom, "L1")], seeds=seeds)
    for s, level in zip(result.screws, ("L2", "L1"), strict=True):
        assert s.level == level
        parts = [g["part"] for g in s.segments]
        assert parts[0] == "pedicle" and parts[-1] == "body", parts
        assert parts == sorted(parts, key=["pedicle", "body"].index)
        # the path crosses the posterior cortex (1-1.5 mm, blurred): the shell touches it,
        # where screws wholly inside the body read no contact
        assert s.cortical_contact_fraction > 0.01


def test_level_from_a_vertebra_label_map(phantom, phantom_calibration):
    from scipy import ndimage

    compartments = phantom.labels.array_kji
    vertebrae = np.zeros(compartments.shape, np.uint8)
    by_level = {level: value for value, level in LABEL_SCHEMES["totalsegmentator"].items()}
    for n, v in enumerate(phantom.truth["vertebrae"]):
        body = ndimage.binary_dilation(compartments == TRABECULAR_FIRST + n, iterations=2)
        vertebrae[body] = by_level[v["level"]]
    labels = phantom.labels.with_array(vertebrae)
    result = analyze_screws(phantom.volume, phantom_calibration, labels=labels,
                            lines=[_pedicle_path(phantom, "L3")])
    assert result.screws[0].level == "L3"


def test_a_screw_through_the_lateral_cortex_reports_the_contact(phantom, phantom_calibration):
    vertebra = _vertebra(phantom, "L2")
    centre = np.array(vertebra["body_center_ras_mm"])
    semi_lr = vertebra["body_semi_axes_mm"][0]
    inside = screw_line("inside", centre + [0, -10, 0], centre + [0, 10, 0])
    # axis along A on the lateral wall: half the shell in cortex or outside the body
    wall = screw_line("wall", centre + [semi_lr - 2.0, -8, 0], centre + [semi_lr - 2.0, 8, 0])
    result = analyze_screws(phantom.volume, phantom_calibration, lines=[inside, wall])
    inside, wall = result.screws
    assert inside.cortical_contact_fraction < 0.01
    assert wall.cortical_contact_fraction > 0.1


# ---- refusals ------------------------------------------------------------------------

def test_zero_length_and_bad_points_are_refused():
    with pytest.raises(ScrewError, match="apart"):
        screw_line("s", (1, 2, 3), (1, 2, 3))
    with pytest.raises(ScrewError, match="finite"):
        screw_line("s", (1, 2, np.nan), (1, 2, 3))
    with pytest.raises(ScrewError, match="NAME=R,A,S:R,A,S"):
        parse_line_args(["s=1,2,3"])


def test_screw_leaving_the_image_metal_and_air_get_no_number():
    volume = _cube(150.0, shape_kji=(50, 70, 90))  # R from -36 to 36 mm
    k, j, _ = (np.array(volume.array_kji.shape) // 2)
    volume.array_kji[k - 1:k + 2, j - 1:j + 2, 10:12] = 3000.0  # a metal bead on one path
    volume.array_kji[:, :, 70:] = -1000.0                       # air from R = 20 mm on
    extent = volume.ijk_to_ras_points([volume.size_ijk])[0]
    metal_x = float(volume.ijk_to_ras_points([[10.5, j, k]])[0][0])
    lines = [screw_line("good", (0, -10, 0), (0, 10, 0)),
             screw_line("out", (0, 0, 0), (0, 0, abs(extent[2]) + 5)),
             screw_line("metal", (metal_x, -10, 0), (metal_x, 10, 0)),
             screw_line("air", (28, -10, 0), (28, 10, 0))]
    result = analyze_screws(volume, CALIBRATION, lines=lines)
    good, out, metal, air = result.screws
    assert good.measured and good.bmd_mg_cm3 == pytest.approx(150.0, rel=0.01)
    for s, words in ((out, "outside the image"), (metal, "metal"), (air, "air")):
        assert not s.measured and s.bmd_mg_cm3 is None and s.cement_suggested is None
        assert words in s.reason
    with pytest.raises(ScrewError, match="No screw could be measured"):
        analyze_screws(volume, CALIBRATION, lines=lines[1:2])


def test_uncalibrated_gives_hu_and_no_cement():
    s = analyze_screws(_cube(150.0), None, lines=[screw_line("s", (0, -9, 0), (0, 9, 0))]).screws[0]
    assert s.bmd_mg_cm3 is None and s.cement_suggested is None
    assert s.mean_hu == pytest.approx(_hu(150.0), rel=0.001)


# ---- files ---------------------------------------------------------------------------

def test_markups_lines_round_trip_in_lps_and_ras(tmp_path):
    lines = parse_line_args(["L4_left=-22.5,-60,10:-5,-25,12", "b=1,2,3:4,5,6"])
    write_markups_lines(lines, tmp_path / "lines.mrk.json")
    document = json.loads((tmp_path / "lines.mrk.json").read_text())
    assert document["markups"][0]["coordinateSystem"] == "LPS"
    np.testing.assert_allclose(document["markups"][0]["controlPoints"][0]["position"],
                               ras_to_lps(np.array([-22.5, -60, 10])))
    back = read_markups_lines(tmp_path / "lines.mrk.json")
    assert [b.name for b in back] == ["L4_left", "b"]
    np.testing.assert_allclose(back[0].entry_ras_mm, [-22.5, -60, 10])
    np.testing.assert_allclose(back[0].tip_ras_mm, [-5, -25, 12])
    for markup in document["markups"]:  # the same positions given in RAS
        markup["coordinateSystem"] = "RAS"
        for point in markup["controlPoints"]:
            point["position"] = list(ras_to_lps(np.array(point["position"])))
    (tmp_path / "ras.mrk.json").write_text(json.dumps(document))
    np.testing.assert_allclose(read_markups_lines(tmp_path / "ras.mrk.json")[0].entry_ras_mm,
                               [-22.5, -60, 10])
    shorter = read_markups_lines(tmp_path / "ras.mrk.json", length_mm=10.0)[0]
    assert shorter.length_mm == pytest.approx(10.0)


def test_markups_that_are_not_screw_lines_are_refused(tmp_path):
    path = tmp_path / "x.mrk.json"
    write_markups_lines(parse_line_args(["a=0,0,0:0,0,10"]), path)
    document = json.loads(path.read_text())
    document["markups"][0]["type"] = "Fiducial"
    path.write_text(json.dumps(document))
    with pytest.raises(ScrewError, match="not 'Line'"):
        read_markups_lines(path)
    document["markups"][0]["type"] = "Line"
    document["markups"][0]["controlPoints"].append(document["markups"][0]["controlPoints"][0])
    path.write_text(json.dumps(document))
    with pytest.raises(ScrewError, match="3 control points"):
        read_markups_lines(path)
    path.write_text('{"markups": [{"type": "Line", "controlPoints": NaN}]}')
    with pytest.raises(UserFileError):
        read_markups_lines(path)


def test_outputs_are_one_set_and_read_back(tmp_path):
    volume = _cube(150.0)
    result = analyze_screws(volume, CALIBRATION, lines=[screw_line("s", (0, -9, 0), (0, 9, 0)),
                                                        screw_line("t", (0, 0, 0), (0, 0, 90))])
    paths = write_output_set(tmp_path / "out", "screw",
                             lambda folder: write_screw_outputs(folder, result, volume))
    document = json.loads(paths["json"].read_text())
    screw = document["screws"][0]
    for key in ("name", "entry_ras_mm", "tip_ras_mm", "diameter_mm", "level", "bmd_mg_cm3",
                "shell_bmd_mg_cm3", "min_segment_bmd_mg_cm3", "segments",
                "cortical_contact_fraction", "cement_suggested"):
        assert key in screw
    assert document["cement_note"] and "research aid" in document["cement_note"]
    assert ScrewResult.from_dict(document).to_dict() == result.to_dict()
    rows = paths["csv"].read_text().splitlines()
    assert rows[0].startswith("name,measured,level,length_mm") and len(rows) == 3
    assert rows[2].split(",")[1] == "False"
    text = "".join(page.extract_text() for page in pypdf.PdfReader(paths["report"]).pages)
    assert "Screw trajectories" in text and "not measured" in text
    assert (tmp_path / "out" / "boneqct_run.json").is_file()


# ---- command line --------------------------------------------------------------------

def test_cli_measures_lines_with_negative_coordinates(tmp_path, capsys):
    write_volume(_cube(150.0), tmp_path / "ct.nii.gz")
    code = main(["screw", str(tmp_path / "ct.nii.gz"), "--slope", str(SLOPE), "--intercept",
                 str(INTERCEPT), "--material", "K2HPO4", "--line", "a=-10.5,-12,-3:-2,9,4",
                 "--diameter-mm", "5", "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    screw = json.loads((tmp_path / "out" / "screw.json").read_text())["screws"][0]
    assert screw["entry_ras_mm"] == [-10.5, -12.0, -3.0]
    assert screw["diameter_mm"] == 5.0
    assert screw["bmd_mg_cm3"] == pytest.approx(150.0, rel=0.01)
    code = main(["screw", str(tmp_path / "ct.nii.gz"), "--hu", "--lines",
                 str(tmp_path / "out" / "screw_lines.mrk.json"), "--length-mm", "12",
                 "--out", str(tmp_path / "out2"), "--quiet"])
    assert code == 0
    again = json.loads((tmp_path / "out2" / "screw.json").read_text())["screws"][0]
    assert again["length_mm"] == pytest.approx(12.0)
    assert again["mean_hu"] == pytest.approx(_hu(150.0), rel=0.001)


@pytest.mark.parametrize("line, message", [
    ("a=0,0,0:0,0,500", "outside the image"),
    ("a=-3,2,1:-3,2,1", "apart"),
    ("a=1,2:3,4,5", "Cannot read the screw"),
    (None, "No screw was given"),
])
def test_cli_refuses_screws_it_cannot_measure(tmp_path, capsys, line, message):
    write_volume(_cube(150.0), tmp_path / "ct.nii.gz")
    code = main(["screw", str(tmp_path / "ct.nii.gz"), "--hu", *(["--line", line] if line else []),
                 "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
