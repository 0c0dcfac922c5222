"""Interpretation of spine QCT values: ACR category and the surgical cement flag."""

from __future__ import annotations

#: ACR-SPR-SSR practice parameter for QCT (2013, amended 2018); ISCD; Chinese consensus
#: (Cheng 2020, QIMS): trabecular spine BMD > 120 normal, 80-120 low bone mass, < 80 osteoporosis.
ACR_NORMAL_ABOVE_MG_CM3 = 120.0
ACR_OSTEOPOROSIS_BELOW_MG_CM3 = 80.0
#: Screw fixation: cement augmentation suggested below 50 mg/cm3 (the project's seed case,
#: domain.md section 3); configurable.
CEMENT_THRESHOLD_MG_CM3 = 50.0

CATEGORY_NORMAL = "normal"
CATEGORY_LOW = "low bone mass"
CATEGORY_OSTEOPOROSIS = "osteoporosis"


def acr_category(mean_bmd_mg_cm3: float) -> str:
    """ACR category of a mean trabecular spine BMD (mg/cm3).

    QCT T-scores are not equivalent to DXA T-scores: the WHO -2.5 rule is not applied.
    """
    if mean_bmd_mg_cm3 > ACR_NORMAL_ABOVE_MG_CM3:
        return CATEGORY_NORMAL
    if mean_bmd_mg_cm3 >= ACR_OSTEOPOROSIS_BELOW_MG_CM3:
        return CATEGORY_LOW
    return CATEGORY_OSTEOPOROSIS


def cement_augmentation(bmd_mg_cm3: float, threshold_mg_cm3: float = CEMENT_THRESHOLD_MG_CM3) -> bool:
    """True when screw fixation at this level should be augmented with bone cement."""
    return bmd_mg_cm3 < threshold_mg_cm3
