"""T-scores of the hip regions against DXA reference data, and the WHO category.

WHO (domain.md section 5): T >= -1 normal, -2.5 < T < -1 osteopenia, T <= -2.5 osteoporosis,
from the lowest T-score of the femoral neck and the total hip.
"""

from __future__ import annotations

from boneqct.hip.errors import HipError
from boneqct.reference import load_reference, scores

#: Reference populations: region -> bundled reference file (regions without verified data
#: are left out rather than guessed).
REFERENCE_SETS = {
    "nhanes3": {"neck": "nhanes3-femoral-neck", "total": "nhanes3-total-hip"},
    "chinese-women": {"neck": "chinese-women-femoral-neck",
                      "trochanter": "chinese-women-trochanter",
                      "total": "chinese-women-total-hip"},
}
WHO_OSTEOPENIA_BELOW = -1.0
WHO_OSTEOPOROSIS_AT_OR_BELOW = -2.5


def who_category(t_score: float) -> str:
    """WHO category of a DXA (or CTXA) hip T-score."""
    if t_score >= WHO_OSTEOPENIA_BELOW:
        return "normal"
    if t_score > WHO_OSTEOPOROSIS_AT_OR_BELOW:
        return "osteopenia"
    return "osteoporosis"


def hip_scores(rois: dict, population: str | None, sex: str | None,
               age_years: float | None) -> dict:
    """Add ``t_score`` (and ``z_score``) to each region of ``rois`` that has a reference;
    return the interpretation: population, per-region reference/why, lowest T and category."""
    out = {"population": population, "regions": {}, "t_score_min": None, "category": None}
    if population is None:
        out["why"] = "no reference population chosen; T-scores and category are not given"
        return out
    if population not in REFERENCE_SETS:
        raise HipError(f"Unknown hip reference population '{population}'; use one of "
                       f"{', '.join(REFERENCE_SETS)}.")
    for region, name in REFERENCE_SETS[population].items():
        value = rois[region]["abmd_g_cm2"]
        if value is None:
            continue
        s = scores(load_reference(name), value, sex, age_years)
        for key in ("t_score", "z_score"):
            if key in s:
                rois[region][key] = s[key]
        out["regions"][region] = {"reference": s.get("reference"), "why_absent": s["why"]}
    diagnostic = [rois[r]["t_score"] for r in ("neck", "total") if "t_score" in rois[r]]
    if diagnostic:
        out["t_score_min"] = min(diagnostic)
        out["category"] = who_category(out["t_score_min"])
    return out


__all__ = ["REFERENCE_SETS", "hip_scores", "who_category"]
