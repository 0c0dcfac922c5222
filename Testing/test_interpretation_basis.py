"""Method-aware interpretation: which calibrations allow a category (spine ACR, hip WHO) and
the cement flag, and what the outputs say when they do not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from boneqct.calibration import fit_calibration, load_phantom_definition, manual_calibration
from boneqct.calibration.fit import MATERIAL_UNSTATED
from boneqct.calibration.provenance import measured_on_this_scan
from boneqct.hip.interpret import hip_basis, hip_scores
from boneqct.reference import ReferenceMismatchError
from boneqct.spine.interpret import CEMENT_NOTE, spine_basis

OGO_HU = {"E": 462.9, "D": 345.7, "C": 176.7, "B": -35.4, "A": -69.5}


def _phantom(**changes):
    cal = fit_calibration(load_phantom_definition("mindways-model3"), OGO_HU)
    return replace(measured_on_this_scan(cal), **changes)


def test_phantom_k2hpo4_synchronous_and_asynchronous_are_diagnostic():
    assert spine_basis(_phantom()).diagnostic
    asynchronous = _phantom(applied={"relation": "asynchronous", "interval_days": 30,
                                     "forced": False, "warning": "Asynchronous calibration: x"})
    basis = spine_basis(asynchronous)
    assert basis.diagnostic and basis.label == "asynchronous phantom calibration"
    assert basis.warnings() == ["Asynchronous calibration: x"]


def test_internal_calibration_is_an_opportunistic_estimate_without_category():
    basis = spine_basis(_phantom(method="internal", phantom=None))
    assert not basis.diagnostic and basis.label == "opportunistic estimate"
    assert "no published agreement" in basis.why_not[0]


def test_forced_calibration_has_no_category():
    basis = spine_basis(_phantom(applied={"relation": "forced", "interval_days": None,
                                          "forced": True, "warning": "Calibration forced"}))
    assert not basis.diagnostic and "forced" in basis.why_not[0]
    assert basis.warnings()[0] == "Calibration forced"


def test_ha_gets_no_acr_category_and_says_why():
    basis = spine_basis(_phantom(material="HA"))
    assert not basis.diagnostic
    assert "Goodsitt 1992" in basis.why_not[0] and "0.86 at 80 kVp" in basis.why_not[0]
    assert hip_basis(_phantom(material="HA")).diagnostic  # DXA-equivalent: both materials


def test_manual_line_needs_a_stated_material_and_is_marked_manual():
    stated = spine_basis(measured_on_this_scan(manual_calibration(1.3, -5.0, "K2HPO4")))
    assert stated.diagnostic and stated.label == "manual calibration"
    unstated = spine_basis(measured_on_this_scan(manual_calibration(1.3, -5.0, MATERIAL_UNSTATED)))
    assert not unstated.diagnostic and "--material" in unstated.why_not[0]
    identity = spine_basis(manual_calibration(1.0, 0.0, MATERIAL_UNSTATED))
    assert "identity" in identity.notes[0] and "--hu" in identity.notes[0]


def test_hu_only_has_no_category():
    basis = spine_basis(None)
    assert not basis.diagnostic and basis.label.startswith("HU only")


def test_cement_note_states_source_and_research_aid():
    assert "research aid" in CEMENT_NOTE and "not from a guideline" in CEMENT_NOTE


def _rois(neck=0.55, trochanter=0.5, total=0.7):
    return {"neck": {"abmd_g_cm2": neck}, "trochanter": {"abmd_g_cm2": trochanter},
            "intertrochanter": {"abmd_g_cm2": 0.9}, "total": {"abmd_g_cm2": total}}


def test_hip_category_only_with_a_diagnostic_basis_and_matching_regions():
    rois = _rois()
    out = hip_scores(rois, "nhanes3", "F", 70, hip_basis(_phantom()))
    assert out["category"] == "osteoporosis" and out["warnings"] == []
    assert rois["neck"]["t_score"] == pytest.approx((0.55 - 0.858) / 0.120)
    internal = hip_scores(_rois(), "nhanes3", "F", 70, hip_basis(_phantom(method="internal")))
    assert internal["category"] is None and internal["basis"] == "opportunistic estimate"
    assert internal["why"] == "; ".join(internal["why_not"])
    unknown_sex = hip_scores(_rois(), "nhanes3", None, 70, hip_basis(_phantom()))
    # the report's headline said "see the warnings" where there were none
    assert unknown_sex["category"] is None and unknown_sex["warnings"] == []
    assert unknown_sex["why"] == "patient sex unknown (give --sex F|M)"
    lunar = hip_scores(_rois(), "chinese-women", "F", 70, hip_basis(_phantom()))
    assert lunar["category"] is None and lunar["t_score_min"] is not None
    assert "lunar regions" in lunar["warnings"][0] and "no WHO category" in lunar["warnings"][0]


def test_hip_refuses_a_reference_of_another_site(monkeypatch):
    import boneqct.hip.interpret as interpret

    monkeypatch.setitem(interpret.REFERENCE_SETS, "swapped", {"neck": "nhanes3-total-hip"})
    with pytest.raises(ReferenceMismatchError, match="total-hip"):
        hip_scores(_rois(), "swapped", "F", 70, hip_basis(_phantom()))
