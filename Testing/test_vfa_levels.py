"""Vertebral fracture assessment beyond the spine-QCT levels: ``boneqct vfa`` grades every
level T4-L5 it is given (a thoracic wedge deformity on a digital phantom) and names each on
the sagittal overview; the spine command keeps to its levels."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from boneqct.cli import main
from boneqct.io import write_volume
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom
from boneqct.spine.levels import (
    LABEL_SCHEMES,
    LEVEL_NAMES,
    VFA_LABEL_SCHEMES,
    VFA_LEVEL_NAMES,
    label_schemes,
)
from boneqct.spine.report import grade_label
from boneqct.spine.vfa import VFAResult, overview_figure

LEVELS = ("T4", "T5", "T6", "T7", "T8")
#: Bodies 25 mm high, 9 mm discs, tilted 10 degrees, a wedge (anterior height -32 %) at T6.
PARAMS = SpinePhantomParams(
    levels=LEVELS, trabecular_bmd_mg_cm3=(120.0, 100.0, 80.0, 110.0, 90.0),
    cortical_thickness_mm=1.2, vertebra_spacing_mm=34.0, spine_tilt_deg=10.0,
    phantom_present=False, deformities=(("T6", "wedge"),))
SCANNER = ScannerParams(pixel_mm=0.8, matrix=(110, 140), n_slices=100, slice_spacing_mm=2.0,
                        slice_thickness_mm=2.0, fov_center_ras_mm=(0.0, -45.0),
                        noise_sd_hu=15.0, supersample=2)


@pytest.fixture(scope="module")
def thoracic_phantom():
    return make_spine_phantom(PARAMS, SCANNER, seed=21)


def _seed_args(phantom) -> list[str]:
    return [f"--seed={v['level']}=" + ",".join(f"{x:.2f}" for x in v["body_center_ras_mm"])
            for v in phantom.truth["vertebrae"]]


def test_vfa_levels_extend_the_spine_levels_and_their_label_numbers():
    assert VFA_LEVEL_NAMES[0] == "T4" and VFA_LEVEL_NAMES[-len(LEVEL_NAMES):] == LEVEL_NAMES
    assert len(VFA_LEVEL_NAMES) == 14
    assert label_schemes(LEVEL_NAMES) == LABEL_SCHEMES
    # TotalSegmentator v2 "total": vertebrae_T4 40 ... vertebrae_L5 27; VerSe: T1 = 8, L5 = 24
    assert VFA_LABEL_SCHEMES["totalsegmentator"][40] == "T4"
    assert VFA_LABEL_SCHEMES["totalsegmentator"][34] == "T10"
    assert VFA_LABEL_SCHEMES["verse"][11] == "T4" and VFA_LABEL_SCHEMES["verse"][17] == "T10"
    for scheme in VFA_LABEL_SCHEMES.values():
        assert sorted(scheme.values()) == sorted(VFA_LEVEL_NAMES)


def test_vfa_grades_thoracic_levels_and_names_each_on_the_overview(thoracic_phantom, tmp_path,
                                                                    capsys):
    ct = write_volume(thoracic_phantom.volume, tmp_path / "ct.nii.gz")
    assert main(["vfa", str(ct), *_seed_args(thoracic_phantom), "--out", str(tmp_path / "out")]) == 0
    document = json.loads((tmp_path / "out" / "vfa.json").read_text())
    levels = document["levels"]
    assert [lv["level"] for lv in levels] == list(LEVELS)
    grades = {lv["level"]: (lv["fracture"]["genant_grade"], lv["fracture"]["type"]) for lv in levels}
    assert grades == {"T4": (0, None), "T5": (0, None), "T6": (2, "wedge"), "T7": (0, None),
                      "T8": (0, None)}
    with open(tmp_path / "out" / "vfa.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["level"], row["genant_grade"], row["fracture_type"]) for row in rows] == [
        (level, str(grade), kind or "") for level, (grade, kind) in grades.items()]
    assert float(rows[2]["ratio_anterior_posterior"]) == pytest.approx(
        levels[2]["fracture"]["height_ratios"]["anterior_posterior"], abs=1e-4)
    out = capsys.readouterr().out
    assert all(f"{level}: heights anterior" in out for level in LEVELS)
    # the overview names every level with its grade
    figure = overview_figure(thoracic_phantom.volume, VFAResult.from_dict(document).levels)
    texts = {text.get_text() for text in figure.axes[0].texts}
    assert {f"{lv['level']} {grade_label(lv['fracture'])}" for lv in levels} <= texts


def test_spine_command_keeps_to_its_levels(thoracic_phantom, tmp_path, capsys):
    ct = write_volume(thoracic_phantom.volume, tmp_path / "ct.nii.gz")
    assert main(["spine", str(ct), *_seed_args(thoracic_phantom)[:2],
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "'T4' is not a vertebral level" in err
    assert not (tmp_path / "out").exists()
    assert np.all([lv not in LEVEL_NAMES for lv in LEVELS])
