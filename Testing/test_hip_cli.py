"""``boneqct hip`` end to end on the digital femur phantom: files written, values as the core's."""

from __future__ import annotations

import csv
import json

import pypdf
import pytest
import SimpleITK as sitk

from boneqct.cli import main
from boneqct.io import write_volume
from boneqct.phantoms.femur import make_femur_phantom


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory):
    phantom = make_femur_phantom()
    path = write_volume(phantom.volume, tmp_path_factory.mktemp("hip") / "ct.nii.gz")
    return phantom, path


def test_hip_command_writes_json_csv_projection_png_and_report(phantom_file, tmp_path, capsys):
    phantom, path = phantom_file
    line = phantom.truth["calibration"]
    code = main(["hip", str(path), "--side", "left", "--out", str(tmp_path), "--slope",
                 str(line["slope_hu_per_mg_cm3"]), "--intercept", str(line["intercept_hu"]),
                 "--sex", "F"])
    assert code == 0
    document = json.loads((tmp_path / "hip.json").read_text())
    neck = document["rois"]["neck"]
    assert neck["abmd_g_cm2"] == pytest.approx(phantom.truth["neck_abmd_g_cm2"], rel=0.02)
    assert set(document["rois"]) == {"neck", "trochanter", "intertrochanter", "total"}
    assert "t_score" in neck and "t_score" in document["rois"]["total"]
    rows = {r["roi"]: r for r in csv.DictReader((tmp_path / "hip.csv").open())}
    assert float(rows["total"]["bmc_g"]) == pytest.approx(document["rois"]["total"]["bmc_g"], rel=1e-5)
    projection = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "hip_projection.nii.gz")))
    pixel_cm2 = (document["projection"]["pixel_mm"] / 10) ** 2
    assert projection.astype(float).sum() * pixel_cm2 == pytest.approx(
        document["qc"]["femur_mineral_g"], rel=1e-4)
    assert (tmp_path / "hip_projection.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "hip_report.pdf").read_bytes()[:4] == b"%PDF"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    # the region conventions carry their sources and what is not verified, in JSON and report
    conventions = document["region_conventions"]
    assert any("Lenchik" in source for source in conventions["sources"])
    assert any("1 mm" in item for item in conventions["not_verified"])
    report = " ".join(page.extract_text() for page in pypdf.PdfReader(tmp_path / "hip_report.pdf").pages)
    assert "Not verified: a Hologic hip pixel taken as 1 mm" in " ".join(report.split())
    assert document["options"]["bone_threshold_mg_cm3"] == 200.0
    assert (tmp_path / "hip_regions.nii.gz").exists() and not (tmp_path / "report.pdf").exists()


def test_hip_options_from_the_command_line(phantom_file, tmp_path, capsys):
    phantom, path = phantom_file
    line = phantom.truth["calibration"]
    code = main(["hip", str(path), "--side", "left", "--out", str(tmp_path), "--slope",
                 str(line["slope_hu_per_mg_cm3"]), "--intercept", str(line["intercept_hu"]),
                 "--pixel-mm", "0.8", "--neck-box-width-mm", "12", "--reference", "none"])
    assert code == 0
    document = json.loads((tmp_path / "hip.json").read_text())
    assert document["options"]["pixel_mm"] == document["projection"]["pixel_mm"] == 0.8
    assert document["placement"]["neck_box_width_mm"] == 12.0
    with pytest.raises(SystemExit) as usage_error:
        main(["hip", str(path), "--side", "left", "--out", str(tmp_path / "x"), "--slope", "1",
              "--intercept", "0", "--neck-box-width-mm", "40"])
    assert usage_error.value.code == 2
    assert "outside 5-30 mm" in capsys.readouterr().err


def test_hip_command_errors_are_messages(phantom_file, tmp_path, capsys):
    _, path = phantom_file
    assert main(["hip", str(path), "--side", "left", "--out", str(tmp_path)]) == 2
    assert "needs calibrated bone mineral density" in capsys.readouterr().err
    assert main(["hip", str(path), "--side", "right", "--out", str(tmp_path), "--slope", "1.25",
                 "--intercept", "-10"]) == 2
    assert "requested side" in capsys.readouterr().err
