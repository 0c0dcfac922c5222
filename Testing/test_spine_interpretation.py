"""Spine interpretation: ACR categories, cement flag, follow-up with LSC, reference scores."""

from __future__ import annotations

import json

import pytest

from boneqct.errors import BoneQCTError
from boneqct.reference import (
    SITE_MEASURES,
    ReferenceMismatchError,
    bundled_reference_names,
    load_reference,
    scores,
)
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
        "name": "test", "site": "lumbar-spine-trabecular", "measure": "bmd_mg_cm3",
        "material": "K2HPO4", "device": "test", "regions": "qct", "population": "test",
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


def test_reference_of_another_site_or_measure_is_refused():
    reference = load_reference("nhanes3-total-hip")
    with pytest.raises(ReferenceMismatchError) as info:
        reference.check_applies("lumbar-spine-trabecular", "bmd_mg_cm3", "K2HPO4")
    message = str(info.value)
    assert "total-hip areal BMD (g/cm2)" in message
    assert "lumbar-spine-trabecular volumetric BMD (mg/cm3)" in message
    reference.check_applies("total-hip", "abmd_g_cm2", "K2HPO4")  # applies: no error
    with pytest.raises(ReferenceMismatchError, match="femoral-neck"):
        reference.check_applies("femoral-neck", "abmd_g_cm2", None)


def test_reference_of_another_material_or_for_hu_is_refused(tmp_path):
    path = tmp_path / "spine-ref.json"
    path.write_text(json.dumps({
        "name": "spine-test", "site": "lumbar-spine-trabecular", "measure": "bmd_mg_cm3",
        "material": "K2HPO4", "device": "test", "regions": "qct", "population": "test",
        "source": "test fixture", "young_adult": {"F": {"mean": 180.0, "sd": 30.0}}}))
    reference = load_reference(path)
    with pytest.raises(ReferenceMismatchError, match="mg/cm3 of HA, not of K2HPO4"):
        reference.check_applies("lumbar-spine-trabecular", "bmd_mg_cm3", "HA")
    with pytest.raises(ReferenceMismatchError, match="HU only"):
        reference.check_applies("lumbar-spine-trabecular", None, None)


def test_reference_file_must_state_what_it_applies_to(tmp_path):
    path = tmp_path / "bare.json"
    path.write_text(json.dumps({"name": "bare", "site": "total-hip", "measure": "bmd_mg_cm3",
                                "material": None, "device": "x", "regions": "hologic",
                                "population": "x", "source": "x"}))
    with pytest.raises(BoneQCTError, match="site must be one of"):
        load_reference(path)  # total hip is areal, not volumetric
    path.write_text(json.dumps({"name": "bare", "site": "total-hip", "measure": "abmd_g_cm2",
                                "source": "x"}))
    with pytest.raises(BoneQCTError, match="material"):
        load_reference(path)


@pytest.mark.parametrize("name", bundled_reference_names())
def test_bundled_references_state_site_measure_device_population(name):
    reference = load_reference(name)
    assert SITE_MEASURES[reference.site] == reference.measure == "abmd_g_cm2"
    assert reference.device and reference.population and reference.source
    assert reference.not_verified  # each says what was not checked against its source
    if name.startswith("chinese-women"):
        assert reference.source.startswith("Zhang HC, Yang DZ") and "Cheng XG" in reference.source
        assert "17604665" in reference.source
        assert reference.regions == "lunar" and "Lunar" in reference.device
    else:
        assert reference.source.startswith("Looker AC") and reference.regions == "hologic"


def test_follow_up_checks_patient_date_order_and_unmeasured_levels():
    """Another patient or the later exam first: refused; identity or date missing: said;
    a level not measured in one exam and a baseline at zero do not break the comparison."""
    def doc(bmds, **exam):
        document = _spine_doc(bmds)
        document["exam"] = {"series_uid": exam.pop("series_uid"), **exam}
        return document

    old = doc({"L1": 80.0, "L2": 0.0}, series_uid="1", patient_id="P1", study_date="2024-01-01")
    with pytest.raises(BoneQCTError, match="different patients"):
        compare_exams(old, doc({"L1": 70.0, "L2": 5.0}, series_uid="2", patient_id="P2",
                               study_date="2025-01-01"))
    with pytest.raises(BoneQCTError, match="give the earlier exam first"):
        compare_exams(old, doc({"L1": 70.0, "L2": 5.0}, series_uid="2", patient_id="P1",
                               study_date="2023-01-01"))
    new = doc({"L1": 70.0, "L2": 5.0}, series_uid="2", patient_id="P1", study_date="2025-01-01")
    new["levels"].append({"level": "L3", "bmd_mg_cm3": None, "measured": False})
    result = compare_exams(old, new)
    assert [row["level"] for row in result["levels"]] == ["L1", "L2"]
    assert result["levels"][1]["change_percent"] is None  # from a zero baseline
    assert result["warnings"] == []
    anonymous = compare_exams(doc({"L1": 80.0, "L2": 90.0}, series_uid="1"),
                              doc({"L1": 70.0, "L2": 85.0}, series_uid="2"))
    text = " ".join(anonymous["warnings"])
    assert "identity" in text and "could not be checked" in text and "study date" in text
