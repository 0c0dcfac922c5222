"""Tissue composition on the digital phantom against its known compartments."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from boneqct.calibration import calibrate_with_phantom
from boneqct.io import write_volume
from boneqct.phantoms import make_spine_phantom
from boneqct.tissue import FAT_DENSITY_G_CM3, MUSCLE_DENSITY_G_CM3, analyze_tissue
from boneqct.tissue.composition import TissueError

LEAN = ("muscle", "soft_tissue", "blood", "spinal_soft_tissue")


@pytest.fixture(scope="module")
def phantom():
    return make_spine_phantom(seed=1)


@pytest.fixture(scope="module")
def result(phantom):
    calibration = calibrate_with_phantom(phantom.volume, "mindways-model3")
    l3 = next(v for v in phantom.truth["vertebrae"] if v["level"] == "L3")["body_center_ras_mm"]
    return analyze_tissue(phantom.volume, calibration, l3_point_ras_mm=l3)


def _volume(phantom, *names):
    return sum(phantom.truth["compartments"][n]["partial_volume_cm3"] for n in names)


def test_fat_and_muscle_masses_match_the_compartments(phantom, result):
    image = result["regions"]["image"]
    fat_g = FAT_DENSITY_G_CM3 * _volume(phantom, "fat")
    lean_g = MUSCLE_DENSITY_G_CM3 * _volume(phantom, *LEAN)
    print("fat error %", 100 * (image["fat"]["mass_g"] / fat_g - 1),
          "muscle error %", 100 * (image["muscle"]["mass_g"] / lean_g - 1),
          "skin error %", 100 * (image["skin"]["volume_cm3"] / _volume(phantom, "skin") - 1))
    assert image["fat"]["mass_g"] == pytest.approx(fat_g, rel=0.02)
    assert image["muscle"]["mass_g"] == pytest.approx(lean_g, rel=0.02)
    n_slices = phantom.volume.array_kji.shape[0]
    assert image["fat"]["area_cm2"] == pytest.approx(
        image["fat"]["volume_cm3"] / (n_slices * 0.2))
    # the phantom has fat only under the skin
    compartments = result["fat_compartments"]
    assert compartments["subcutaneous_fat"]["volume_cm3"] == pytest.approx(_volume(phantom, "fat"),
                                                                          rel=0.02)
    assert compartments["visceral_fat"]["volume_cm3"] < 0.005 * _volume(phantom, "fat")


def test_cancellous_mineral_and_l3_muscle_area(phantom, result):
    truth_g = sum(v["trabecular_bmd_mg_cm3"] / 1000.0
                  * phantom.truth["compartments"][f"trabecular_{v['level']}"]["partial_volume_cm3"]
                  for v in phantom.truth["vertebrae"])
    cancellous = result["regions"]["image"]["cancellous_mineral"]["mass_g"]
    print("cancellous mineral error %", 100 * (cancellous / truth_g - 1))
    assert cancellous == pytest.approx(truth_g, rel=0.03)
    sma = result["skeletal_muscle_l3"]
    truth_cm2 = (phantom.labels.array_kji[sma["k"]] == 3).sum() * 1.25**2 / 100.0
    assert sma["area_cm2"] == pytest.approx(truth_cm2, rel=0.03)
    spine = result["regions"]["spine"]
    assert spine["cortical_mineral"]["mass_g"] == result["regions"]["image"]["cortical_mineral"]["mass_g"]
    assert spine["skin"]["volume_cm3"] == 0.0
    reference = result["reference"]
    assert reference["fat_hu"] < reference["fat_muscle_threshold_hu"] < reference["muscle_hu"]


def test_cli_tissue_one_slice_and_errors(phantom, tmp_path):
    ct = write_volume(phantom.volume, tmp_path / "ct.nii.gz")
    run = subprocess.run([sys.executable, "-m", "boneqct.cli", "tissue", str(ct), "--phantom",
                          "mindways-model3", "--slices", "20", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    document = json.loads((tmp_path / "out" / "tissue.json").read_text())
    assert document["extent"]["n_slices"] == 1
    assert (tmp_path / "out" / "tissue.csv").read_text().startswith("region,tissue,mass_g")
    assert (tmp_path / "out" / "tissue_report.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(TissueError):
        analyze_tissue(phantom.volume, None)
    run = subprocess.run([sys.executable, "-m", "boneqct.cli", "tissue", str(ct), "--slope", "1.2",
                          "--intercept", "0", "--slices", "500", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "slice range" in run.stderr
