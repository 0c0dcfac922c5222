"""Femoral head, subcapital and neck vBMD (issue 16 item 2) on the digital femur phantom,
whose head and neck cores have known trabecular densities."""

from __future__ import annotations

import csv
import json

import numpy as np
import pypdf
import pytest

from boneqct.calibration import manual_calibration
from boneqct.hip.head_neck import REGION_NAMES
from boneqct.hip.outputs import write_hip_outputs
from boneqct.hip.pipeline import HipResult, analyze_hip
from boneqct.io.atomic import write_output_set
from boneqct.phantoms.femur import FemurPhantomParams, make_femur_phantom

#: Distinct core densities (mg/cm3): a weak neck as in the lecture's fracture case.
PARAMS = FemurPhantomParams(head_trabecular_mg_cm3=170.0, neck_trabecular_mg_cm3=60.0)


def _analyze(params):
    phantom = make_femur_phantom(params, seed=1)
    line = phantom.truth["calibration"]
    calibration = manual_calibration(line["slope_hu_per_mg_cm3"], line["intercept_hu"])
    return analyze_hip(phantom.volume, calibration, side="left")


@pytest.fixture(scope="module")
def neutral():
    return _analyze(PARAMS)


@pytest.mark.parametrize("pose", [{}, {"anteversion_deg": 25.0, "adduction_deg": -8.0}])
def test_head_subcapital_and_neck_vbmd_within_two_percent(neutral, pose):
    result = neutral if not pose else _analyze(FemurPhantomParams(**{
        **PARAMS.__dict__, **pose}))
    regions = result.head_neck["regions"]
    assert list(regions) == list(REGION_NAMES)
    truth = {"head": PARAMS.head_trabecular_mg_cm3, "subcapital": PARAMS.neck_trabecular_mg_cm3,
             "neck": PARAMS.neck_trabecular_mg_cm3}
    for name, region in regions.items():
        assert region["vbmd_mg_cm3"] == pytest.approx(truth[name], rel=0.02), name
        assert region["inside_femur_fraction"] == pytest.approx(1.0)
        assert region["volume_cm3"] > 0.5
    head_r = result.frame.head_radius_mm
    assert regions["subcapital"]["from_mm"] == pytest.approx(head_r)
    assert head_r < regions["neck"]["from_mm"] < regions["neck"]["to_mm"] \
        < result.frame.neck_length_mm


def test_head_neck_in_hip_json_and_report(neutral, tmp_path):
    paths = write_output_set(tmp_path / "hip", "hip", lambda folder: write_hip_outputs(
        folder, neutral, {}))
    document = json.loads(paths["json"].read_text())
    assert document["head_neck"]["regions"]["neck"]["vbmd_mg_cm3"] == pytest.approx(
        neutral.head_neck["regions"]["neck"]["vbmd_mg_cm3"])
    assert set(document["head_neck"]["definitions"]) == set(REGION_NAMES)
    assert HipResult.from_dict(document).head_neck == document["head_neck"]
    text = "".join(page.extract_text() for page in pypdf.PdfReader(paths["report"]).pages)
    assert "Femoral head and neck" in text and "subcapital" in text
    assert np.isfinite(document["head_neck"]["regions"]["head"]["vbmd_mg_cm3"])
    # hip.csv: a row per head/neck region after the CTXA regions, vBMD and volume only
    rows = {r["roi"]: r for r in csv.DictReader(paths["csv"].open())}
    for name in REGION_NAMES:
        region = document["head_neck"]["regions"][name]
        assert float(rows[f"{name}_vbmd"]["vbmd_mg_cm3"]) == pytest.approx(
            region["vbmd_mg_cm3"], rel=1e-5)
        assert float(rows[f"{name}_vbmd"]["volume_cm3"]) == pytest.approx(
            region["volume_cm3"], rel=1e-5)
        assert rows[f"{name}_vbmd"]["abmd_g_cm2"] == ""
