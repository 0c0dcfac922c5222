"""Interpretation of spine QCT values: ACR category and the surgical cement flag, each given
only for values whose calibration allows it (``spine_basis``)."""

from __future__ import annotations

from boneqct.calibration.interpretation import InterpretationBasis, interpretation_basis

#: ACR-SPR-SSR practice parameter for QCT (2013, amended 2018); ISCD; Chinese consensus
#: (Cheng 2020, QIMS; its table checked in PMC7495321): trabecular spine BMD > 120 normal,
#: 80-120 low bone mass, < 80 osteoporosis.
ACR_NORMAL_ABOVE_MG_CM3 = 120.0
ACR_OSTEOPOROSIS_BELOW_MG_CM3 = 80.0
#: Materials the ACR thresholds are taken to refer to: K2HPO4-equivalent BMD of Mindways-style
#: QCT. Not verified: the practice parameter's own wording on the material was not read.
ACR_MATERIALS = ("K2HPO4",)
#: Why hydroxyapatite-equivalent BMD gets no ACR category (Goodsitt 1992, Bone Miner 19:145).
HA_NO_CATEGORY_REASON = (
    "; no HA to K2HPO4 conversion is documented for this scan: Goodsitt 1992 measured "
    "BMD_K2HPO4/BMD_HA = 0.86 at 80 kVp and 0.81 at 140 kVp (single energy, one scanner), a "
    "kVp-dependent ratio that BoneQCT does not apply (which material the ACR thresholds assume "
    "is itself not verified)")
#: Screw fixation: cement augmentation suggested below 50 mg/cm3 (the project's seed case,
#: docs/domain.md section 3); configurable.
CEMENT_THRESHOLD_MG_CM3 = 50.0
#: Where the cement threshold comes from, printed with every cement flag.
CEMENT_NOTE = (
    "Cement flag: a research aid, not a surgical indication. Its default threshold (50 mg/cm3 "
    "K2HPO4) comes from the case material this project started from (a QCT report where "
    "36 mg/cm3 led to cement augmentation and 120 mg/cm3 did not), not from a guideline or a "
    "validated study.")

CATEGORY_NORMAL = "normal"
CATEGORY_LOW = "low bone mass"
CATEGORY_OSTEOPOROSIS = "osteoporosis"


def spine_basis(calibration) -> InterpretationBasis:
    """Whether spine values from ``calibration`` (None: HU only) get an ACR category and a
    cement flag (see ``boneqct.calibration.interpretation``)."""
    return interpretation_basis(calibration, ACR_MATERIALS, HA_NO_CATEGORY_REASON)


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
