"""Strength criteria of the vertebral model with their sources and domains of validity, and the
rule that gives the fragile-strength flag only where the configuration matches the one its
thresholds were derived with."""

from __future__ import annotations

#: Apparent strain of the linear strength rule. Source not found: it is parosol-py's default
#: linear rule (labelled there "Kopperdahl/Crawford" without a citation); a convention,
#: unverified against any primary paper.
LINEAR_RULE_STRAIN = 0.0068
#: Pistoia et al. 2002 Bone 30:842: failure when 2% of the bone volume exceeds 0.7% effective
#: strain.
PISTOIA_VOLUME_FRACTION, PISTOIA_STRAIN = 0.02, 0.007
#: Nonlinear analysis: final apparent strain (Keaveny's biomechanical CT reports the force at
#: 2% apparent strain, Kopperdahl et al. 2014 JBMR 29:570; unverified here) and increments
#: (plus the exact first-yield point). On the phantom L2 at 2 mm, 5 increments gave a strength
#: 0.3% below 10 increments, with 14-16 instead of 20 equilibrium solves.
NONLINEAR_STRAIN, NONLINEAR_STEPS = 0.02, 5

CRITERIA: dict[str, dict] = {
    "linear": {
        "rule": "F = 0.0068 x K x h: linear stiffness times bone height times 0.68% apparent "
                "strain",
        "source": "parosol-py's default linear rule (labelled 'Kopperdahl/Crawford' there, "
                  "no citation); no primary source found - a convention, unverified",
        "validity": "a linear rule: it assumes the whole body yields at one apparent strain; "
                    "not validated against measured vertebral strength here",
        "verified": False,
    },
    "pistoia": {
        "rule": "force at which 2% of the bone volume exceeds 0.7% effective strain "
                "sqrt(2 SED / E), scaled from the linear solution",
        "source": "Pistoia et al. 2002 Bone 30:842",
        "validity": "derived for micro-FE of the distal radius (tissue-level elements, tissue "
                    "modulus); on continuum QCT voxels of the vertebra at about 1 mm it is "
                    "outside its domain and only a relative index",
        "verified": False,
    },
    "nonlinear": {
        "rule": "largest reaction up to 2% apparent strain of the elastic-plastic model "
                "(return mapping, asymmetric yield surface, the law's yield stresses)",
        "source": "Keaveny's biomechanical CT (Crawford et al. 2003 Bone 33:744; Kopperdahl "
                  "et al. 2014 JBMR 29:570)",
        "validity": "QCT voxel models of the vertebral body in axial compression with PMMA "
                    "endplate layers; the strength depends on the yield law (compare like "
                    "with like)",
        "verified": False,
    },
}

#: Fragile bone strength, vertebra (N): Kopperdahl et al. 2014 JBMR 29:570 (VirtuOst; ISCD
#: 2015 position).
FRAGILE_STRENGTH_N = {"F": 4500.0, "M": 6500.0}
#: The configuration the thresholds were derived with, as far as public sources say: Keaveny's
#: nonlinear QCT-FE (VirtuOst) with QCT-density (K2HPO4) laws of the Kopperdahl/Keaveny group,
#: PMMA endplate layers bonded to platens, axial compression; element size of the order of
#: 1-1.5 mm (unverified here). VirtuOst's exact laws are not public.
FRAGILE_DERIVATION = {"criterion": "nonlinear", "law": "kopperdahl2002", "platens": "bonded",
                      "pmma": True, "element_mm": (1.0, 1.5)}
FRAGILE_SOURCE = ("Kopperdahl et al. 2014 JBMR 29:570 (VirtuOst biomechanical CT): fragile "
                  "bone strength <= 4500 N women, <= 6500 N men; derivation configuration "
                  "nonlinear, Kopperdahl/Keaveny QCT-density laws, PMMA layers, about 1-1.5 mm "
                  "elements (element size unverified; VirtuOst's exact laws are not public, so "
                  "even a matching configuration is an approximation)")


def fragile_assessment(strength_n: float, sex: str | None, *, criterion: str, law: str,
                       element_mm: float, platens: str, pmma_mm: float) -> dict:
    """The fragile flag and why: {"fragile": bool | None, "threshold_n": float | None,
    "reason": str}. ``fragile`` is None (absent) when the sex is unknown or the configuration
    differs from ``FRAGILE_DERIVATION``; the reason names what differs."""
    mismatches = []
    if criterion != FRAGILE_DERIVATION["criterion"]:
        mismatches.append(f"criterion {criterion} (thresholds: nonlinear)")
    if law != FRAGILE_DERIVATION["law"]:
        mismatches.append(f"law {law} (thresholds: {FRAGILE_DERIVATION['law']})")
    low, high = FRAGILE_DERIVATION["element_mm"]
    if not low <= element_mm <= high:
        mismatches.append(f"element size {element_mm:g} mm (thresholds: {low:g}-{high:g} mm)")
    if platens != FRAGILE_DERIVATION["platens"]:
        mismatches.append(f"platens {platens} (thresholds: bonded)")
    if pmma_mm <= 0:
        mismatches.append("no PMMA layers (thresholds: PMMA endplate layers)")
    if mismatches:
        return {"fragile": None, "threshold_n": None,
                "reason": "fragile flag not given: the thresholds were derived with another "
                          "configuration - " + "; ".join(mismatches) + "."}
    if sex not in FRAGILE_STRENGTH_N:
        return {"fragile": None, "threshold_n": None,
                "reason": "fragile flag not given: sex unknown (give --sex F or M)."}
    threshold = FRAGILE_STRENGTH_N[sex]
    return {"fragile": bool(strength_n <= threshold), "threshold_n": threshold,
            "reason": f"configuration matches the thresholds' derivation ({FRAGILE_SOURCE})."}
