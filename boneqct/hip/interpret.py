"""T-scores of the hip regions against DXA reference data, and the WHO category.

WHO (docs/domain.md section 5): T >= -1 normal, -2.5 < T < -1 osteopenia, T <= -2.5 osteoporosis,
from the lowest T-score of the femoral neck and the total hip.

Each region's reference must be for that site and for areal BMD (g/cm2), or it is refused.
CTXA regions follow Hologic conventions (Cann et al. 2014, PLoS One 9:e91904); a reference
measured with another make's regions (the Chinese women's, probably GE Lunar) gives T-scores
marked as such in the warnings, and no WHO category, since no cross-calibration is applied.
"""

from __future__ import annotations

from boneqct.calibration.interpretation import InterpretationBasis, interpretation_basis
from boneqct.errors import HipError
from boneqct.reference import load_reference, scores

#: Reference populations: region -> bundled reference file (regions without verified data
#: are left out rather than guessed).
REFERENCE_SETS = {
    "nhanes3": {"neck": "nhanes3-femoral-neck", "total": "nhanes3-total-hip"},
    "chinese-women": {"neck": "chinese-women-femoral-neck",
                      "trochanter": "chinese-women-trochanter",
                      "total": "chinese-women-total-hip"},
}
#: Region -> reference site (``boneqct.reference.SITE_MEASURES``).
REGION_SITES = {"neck": "femoral-neck", "trochanter": "trochanter", "total": "total-hip"}
#: Region convention of CTXA (Cann 2014: Hologic-style regions).
CTXA_REGIONS = "hologic"
#: DXA-equivalent aBMD is compared with DXA references, not with QCT thresholds: both phantom
#: materials are accepted for the WHO category.
HIP_MATERIALS = ("K2HPO4", "HA")
WHO_OSTEOPENIA_BELOW = -1.0
WHO_OSTEOPOROSIS_AT_OR_BELOW = -2.5


def who_category(t_score: float) -> str:
    """WHO category of a DXA (or CTXA) hip T-score."""
    if t_score >= WHO_OSTEOPENIA_BELOW:
        return "normal"
    if t_score > WHO_OSTEOPOROSIS_AT_OR_BELOW:
        return "osteopenia"
    return "osteoporosis"


def hip_basis(calibration) -> InterpretationBasis:
    """Whether hip values from ``calibration`` get a WHO category (see
    ``boneqct.calibration.interpretation``)."""
    return interpretation_basis(calibration, HIP_MATERIALS)


def hip_scores(rois: dict, population: str | None, sex: str | None,
               age_years: float | None, basis: InterpretationBasis) -> dict:
    """Add ``t_score`` (and ``z_score``) to each region of ``rois`` that has a reference;
    return the interpretation: basis, population, per-region reference/why, lowest T,
    category (only when ``basis.diagnostic`` and every reference uses CTXA's regions) and
    ``warnings``.

    Raises:
        HipError: unknown population; ReferenceMismatchError: a reference of another site or
        measure.
    """
    out = {**basis.to_dict(), "population": population, "regions": {}, "t_score_min": None,
           "category": None, "warnings": []}
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
        reference = load_reference(name)
        reference.check_applies(REGION_SITES[region], "abmd_g_cm2", None)
        if reference.regions != CTXA_REGIONS:
            out["warnings"].append(
                f"{region}: the reference '{name}' was measured with {reference.regions} "
                f"regions ({reference.device}), CTXA with {CTXA_REGIONS}-style regions; no "
                "cross-calibration is applied, so its T-score may be biased and no WHO "
                "category is given.")
        s = scores(reference, value, sex, age_years)
        for key in ("t_score", "z_score"):
            if key in s:
                rois[region][key] = s[key]
        out["regions"][region] = {"reference": s.get("reference"), "why_absent": s["why"]}
    diagnostic = [rois[r]["t_score"] for r in ("neck", "total") if "t_score" in rois[r]]
    if diagnostic:
        out["t_score_min"] = min(diagnostic)
        if basis.diagnostic and not out["warnings"]:
            out["category"] = who_category(out["t_score_min"])
    if out["category"] is None and not out["warnings"]:
        # say why, as the report's headline and the command's summary do
        reasons = set(basis.why_not)
        if not diagnostic:  # no T-score: why the references gave none
            reasons |= {why for r in out["regions"].values() for why in r["why_absent"] or []}
        out["why"] = "; ".join(sorted(reasons)) or None
    return out


__all__ = ["REFERENCE_SETS", "hip_basis", "hip_scores", "who_category"]
