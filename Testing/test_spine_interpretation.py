"""Spine interpretation: ACR categories, cement flag, follow-up with LSC, reference scores."""

from __future__ import annotations

import json

import pytest

from boneqct.errors import BoneQCTError
from boneqct.reference import load_reference, scores
from boneqct.spine.followup import compare_exams, least_significant_change
from boneqct.spine.interpret import acr_category, cement_augmentation


@pytest.mark.parametrize("bmd, category", [
    (185.4, "normal"), (120.01, "normal"), (120.0, "low bone mass"), (80.0, "low bone mass"),
    (79.99, "osteoporosis"), (14.95, "osteoporosis"),
])
def test_acr_category_boundaries(bmd, category):
    assert acr_category(bmd) == category


def test_cement_flag_follows_the_seed_cases():
    assert cement_augmentation(36.0)  # seed: DXA "normal" but QCT 36 mg/cm3 -> cement
    assert not cement_augmentation(120.0)
    assert not cement_augmentation(50.0)
    assert cement_augmentation(55.0, threshold_mg_cm3=60.0)


def _spine_doc(bmds: dict, material="K2HPO4", used=("L1", "L2")):
    levels = [{"level": k, "bmd_mg_cm3": v} for k, v in bmds.items()]
    mean = sum(bmds[k] for k in used) / len(used)
    return {"calibrated": True, "material": material, "levels": levels,
            "levels_used": list(used), "mean_bmd_mg_cm3": mean}


def test_follow_up_reproduces_the_seed_teriparatide_case():
    old = _spine_doc({"L1": 34.0, "L2": 40.0})
    new = _spine_doc({"L1": 50.0, "L2": 41.0})
    result = compare_exams(old, new, precision_mg_cm3=2.0)
    l1, l2 = result["levels"]
    assert l1["change_mg_cm3"] == pytest.approx(16.0)
    assert l1["change_percent"] == pytest.approx(47.06, abs=0.01)  # seed: +47%
    assert result["lsc_mg_cm3"] == pytest.approx(5.54)
    assert l1["significant"] and not l2["significant"]
    assert result["mean"]["change_mg_cm3"] == pytest.approx(8.5)
    assert least_significant_change(1.0) == pytest.approx(2.77)


def test_follow_up_without_lsc_says_so_and_refuses_mixed_materials():
    old, new = _spine_doc({"L1": 100.0, "L2": 100.0}), _spine_doc({"L1": 90.0, "L2": 95.0})
    result = compare_exams(old, new)
    assert "significant" not in result["levels"][0]
    assert "not tested for significance" in result["note"]
    with pytest.raises(BoneQCTError, match="different materials"):
        compare_exams(old, _spine_doc({"L1": 90.0, "L2": 95.0}, material="HA"))
    with pytest.raises(BoneQCTError, match="uncalibrated"):
        compare_exams({**old, "calibrated": False}, new)


def test_scores_from_a_reference_file(tmp_path):
    # A made-up reference, written by this test to exercise the arithmetic (not shipped).
    path = tmp_path / "test-reference.json"
    path.write_text(json.dumps({
        "name": "test", "site": "spine-qct", "measure": "bmd_mg_cm3", "material": "K2HPO4",
        "source": "test fixture",
        "young_adult": {"F": {"mean": 180.0, "sd": 30.0, "age_band": "30-34"}},
        "age_bands": [{"sex": "F", "age_min": 60, "age_max": 69, "mean": 100.0, "sd": 25.0}],
    }))
    reference = load_reference(path)
    s = scores(reference, 90.0, "F", 65)
    assert s["t_score"] == pytest.approx(-3.0)
    assert s["z_score"] == pytest.approx(-0.4)
    assert s["why"] == []
    s = scores(reference, 90.0, "M", 65)
    assert "t_score" not in s and "z_score" not in s and s["why"]
    assert reference.curve("F") == {"age_years": [64.5], "mean": [100.0], "sd": [25.0]}


def test_scores_absent_without_reference_say_why():
    s = scores(None, 90.0, "F", 65)
    assert "t_score" not in s and "no reference data" in s["why"][0]


def test_bundled_nhanes_femoral_neck_reference():
    reference = load_reference("nhanes3-femoral-neck")
    assert "Looker" in reference.source
    assert scores(reference, 0.738, "F", 70)["t_score"] == pytest.approx(-1.0)
