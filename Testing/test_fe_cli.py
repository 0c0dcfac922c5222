"""`boneqct fe` and `boneqct fe-compare` on the digital phantom."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from boneqct.io import write_volume
from boneqct.phantoms import make_spine_phantom


def _run(*args):
    return subprocess.run([sys.executable, "-m", "boneqct.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory):
    ph = make_spine_phantom()
    path = tmp_path_factory.mktemp("fe_cli") / "ct.nii.gz"
    write_volume(ph.volume, path)
    return path, ph.truth


def _fe_args(path, truth, level, out, element_mm):
    v = next(v for v in truth["vertebrae"] if v["level"] == level)
    seed = ",".join(f"{x:.2f}" for x in v["body_center_ras_mm"])
    cal = truth["calibration"]
    return ["fe", path, "--level", level, f"--seed={level}={seed}", "--out", out,
            "--slope", cal["slope_hu_per_mg_cm3"], "--intercept", cal["intercept_hu"],
            "--material", "K2HPO4", "--criterion", "linear", "--element-mm", element_mm, "--sex", "F"]


def test_fe_writes_json_vtu_and_report_and_compares(phantom_file, tmp_path):
    path, truth = phantom_file
    for level in ("L1", "L3"):
        done = _run(*_fe_args(path, truth, level, tmp_path / level, 2.0))
        assert done.returncode == 0, done.stderr
        assert "strength" in done.stdout
        assert sorted(p.name for p in (tmp_path / level).iterdir()) == [
            "boneqct_run.json", "fe.json", "fe.vtu", "fe_report.pdf"]
    doc = json.loads((tmp_path / "L1" / "fe.json").read_text())
    for key in ("stiffness_n_mm", "strength_n", "criterion", "law", "element_mm", "n_elements",
                "n_dof", "solver", "fragile"):
        assert key in doc
    assert doc["options"]["element_mm"] == 2.0 and doc["options"]["criterion"] == "linear"
    # The fragile thresholds were derived with the nonlinear criterion: a linear run carries no
    # flag and says why (this asserted a flag for every criterion before issue 13).
    assert doc["solver"]["converged"] and doc["fragile"] is None
    assert "criterion linear" in doc["fragile_reason"]
    # the linear run reports its straight line to the 0.68% point
    line = doc["load_displacement"]
    assert [p["strength_point"] for p in line] == [False, True]
    assert line[1]["force_n"] == pytest.approx(doc["strength_n"])
    assert line[1]["apparent_strain"] == pytest.approx(0.0068)
    assert doc["material"]["chain_steps"] == [] and doc["material"]["law"] == doc["law"]
    compared = _run("fe-compare", tmp_path / "L1" / "fe.json", tmp_path / "L3" / "fe.json",
                    "--json")
    assert compared.returncode == 0, compared.stderr
    change = json.loads(compared.stdout)
    assert change["change_strength_n"] > 0  # L3 (200 mg/cm3) is stronger than L1 (50)


def test_fe_without_calibration_is_a_clean_error(phantom_file, tmp_path):
    path, truth = phantom_file
    args = _fe_args(path, truth, "L2", tmp_path, 2.0)
    slope = args.index("--slope")
    done = _run(*(args[:slope] + args[slope + 6:]))  # no --slope, --intercept, --material
    assert done.returncode == 2
    assert "needs calibrated density" in done.stderr and "Traceback" not in done.stderr
    unstated = _run(*(args[:slope + 4] + args[slope + 6:]))  # a manual line without material
    assert unstated.returncode == 2
    assert "--material" in unstated.stderr and "Traceback" not in unstated.stderr


def test_fe_exports_the_model_for_other_solvers(phantom_file, tmp_path):
    """--export inp,feb writes fe_model.inp and fe_model.feb in the output set; the .inp has the
    model's elements (one C3D8 card each); an unknown format is a usage error (exit 2)."""
    path, truth = phantom_file
    done = _run(*_fe_args(path, truth, "L2", tmp_path / "out", 2.0), "--export", "inp,feb")
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "out" / "fe.json").read_text())
    inp = (tmp_path / "out" / "fe_model.inp").read_text()
    elements = inp.split("*ELEMENT", 1)[1].split("*", 1)[0].strip().splitlines()[1:]
    assert len(elements) == document["n_elements"]
    assert (tmp_path / "out" / "fe_model.feb").read_text().lstrip().startswith("<?xml")
    bad = _run(*_fe_args(path, truth, "L2", tmp_path / "bad", 2.0), "--export", "stl")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "stl" in bad.stderr
