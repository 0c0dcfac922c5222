"""Impossible numbers on the command line and in calibration files end in exit 2 with a message
naming the problem, before anything is measured; never a traceback or a confident number."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from boneqct.io import write_volume
from boneqct.phantoms import ScannerParams, make_spine_phantom


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory):
    """A small spine phantom with its Mindways rods, as NIfTI, and an L2 seed."""
    phantom = make_spine_phantom(scanner=ScannerParams(n_slices=40), seed=2)
    path = tmp_path_factory.mktemp("ct") / "ct.nii.gz"
    write_volume(phantom.volume, path)
    l2 = next(v for v in phantom.truth["vertebrae"] if v["level"] == "L2")
    return path, "L2=" + ",".join(f"{x:.2f}" for x in l2["body_center_ras_mm"])


def _run(*args):
    return subprocess.run([sys.executable, "-m", "boneqct.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("args", "message"), [
    (("--margin-mm", "nan"), "--margin-mm: nan is outside 0-10 mm"),
    (("--roi-thickness-mm", "0"), "--roi-thickness-mm: 0 is outside 3-20 mm"),
    (("--cement-threshold", "nan"), "--cement-threshold: nan is outside"),
    (("--cement-threshold", "-5"), "--cement-threshold: -5 is outside"),
    (("--age", "inf"), "--age: inf is outside"),
    (("--slope", "-1", "--intercept", "0"), "--slope: -1 is outside"),
    (("--slope", "0", "--intercept", "0"), "--slope: 0 is outside"),
    (("--slope", "0.1", "--intercept", "0"), "--slope: 0.1 is outside 0.3-10"),
    (("--slope", "1.2", "--intercept", "inf"), "--intercept: inf is outside"),
    (("--slope", "abc", "--intercept", "0"), "--slope: 'abc' is not a number"),
    (("--exclude", "XX"), "--exclude: Unknown vertebral level 'XX'"),
    (("--levels", "L1,L1"), "--levels: 'L1,L1' names a level twice"),
    (("--levels", ","), "No level is given for the diagnostic value"),
])
def test_impossible_spine_arguments(phantom_file, tmp_path, args, message):
    path, seed = phantom_file
    run = _run("spine", path, "--out", tmp_path / "out", "--seed", seed, *args)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("command", "message"), [
    (("fe", "--level", "L2", "--hu", "--element-mm", "0.2"), "--element-mm: 0.2 is outside"),
    (("fe", "--level", "L2", "--hu", "--element-mm", "inf"), "--element-mm: inf is outside"),
    (("repositioning", "--runs", "1000000"), "--runs: 1000000 is outside 2-200"),
    (("repositioning", "--runs", "0"), "--runs: 0 is outside 2-200"),
    (("hip", "--side", "left", "--hu", "--pixel-mm", "0.05"), "--pixel-mm: 0.05 is outside"),
    (("hip", "--side", "left", "--hu", "--pixel-mm", "nan"), "--pixel-mm: nan is outside"),
])
def test_impossible_sizes_are_refused_before_any_work(phantom_file, tmp_path, command, message):
    path, seed = phantom_file
    extra = ("--out", tmp_path / "out") if command[0] in ("fe", "hip") else ()
    seed_args = () if command[0] == "hip" else ("--seed", seed)
    run = _run(command[0], path, *seed_args, *extra, *command[1:])
    assert run.returncode == 2 and message in run.stderr, run.stderr


@pytest.mark.parametrize(("slope", "intercept", "message"), [
    (-1.2, -10.0, "slope of -1.2"), (0.0, -10.0, "slope of 0"), (1e-4, -10.0, "slope of 0.0001"),
    (None, -10.0, "'slope_hu_per_mg_cm3' must be a finite number"),
    ("NaN", -10.0, "NaN is not a JSON number"), (1.2, 1e30, "intercept of 1e+30"),
])
def test_impossible_calibration_files(phantom_file, tmp_path, slope, intercept, message):
    path, seed = phantom_file
    calibration = tmp_path / "calibration.json"
    text = json.dumps({"material": "K2HPO4", "slope_hu_per_mg_cm3": slope,
                       "intercept_hu": intercept, "method": "manual"})
    calibration.write_text(text.replace('"NaN"', "NaN"))
    run = _run("spine", path, "--out", tmp_path / "out", "--seed", seed, "--calibration",
               calibration)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not (tmp_path / "out").exists()


def test_a_report_without_a_usable_level(phantom_file, tmp_path):
    """A plausible but wrong manual slope reads the phantom's L2 (100 mg/cm3) as about 360,
    its ROI then failing the cortical-voxel check: no mean, no category, and the report is
    still written (it drew the reference chart of a mean that was not there: a traceback)."""
    path, seed = phantom_file
    run = _run("spine", path, "--out", tmp_path / "out", "--seed", seed, "--slope", "0.35",
               "--intercept", "-10", "--material", "K2HPO4")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert "L2 is left out (its ROI failed QC) and no other usable level" in run.stderr
    result = json.loads((tmp_path / "out" / "spine.json").read_text())
    assert result["mean_bmd_mg_cm3"] is None and result["category"] is None
    assert (tmp_path / "out" / "spine_report.pdf").stat().st_size > 0


def test_wrong_phantom_definition_is_refused(phantom_file, tmp_path):
    """A Mindways phantom read as a QRM one: no confident negative BMD."""
    path, seed = phantom_file
    run = _run("spine", path, "--out", tmp_path / "out", "--seed", seed, "--phantom",
               "qrm-bdc-3")
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["out", "input"])
def test_too_long_names_are_refused_cleanly(phantom_file, tmp_path, where):
    """A name beyond the file system's limit (255 bytes here) ends in exit 2 naming the
    problem, not an OSError traceback."""
    path, seed = phantom_file
    long_name = "x" * 300
    ct = tmp_path / f"{long_name}.nii.gz" if where == "input" else path
    out = tmp_path / long_name if where == "out" else tmp_path / "out"
    run = _run("spine", ct, "--out", out, "--seed", seed, "--hu")
    assert run.returncode == 2, run.stderr
    assert "File name too long" in run.stderr and "Traceback" not in run.stderr
