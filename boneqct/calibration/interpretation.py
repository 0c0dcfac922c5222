"""What a calibrated value may be used for: a diagnostic category, or only an estimate.

Categories and decision thresholds (ACR spine categories, the cement flag, the WHO category
of the hip) were defined on BMD from a calibration phantom. ``interpretation_basis`` says, for
a calibration, whether its values may be categorised and, if not, why:

* no calibration (``--hu``): CT numbers only - no BMD, no category, no cement flag;
* phantom calibration, synchronous (same series) or asynchronous (same scanner and kVp,
  another series) in an accepted material: categories given;
* a calibration forced onto another kVp or scanner: values given, no category;
* internal (phantomless) calibration: an "opportunistic estimate", no category. BoneQCT's
  internal calibration fits slope and offset to the patient's tissues with reference
  (ICRU-44) compositions (an effective-energy fit after Michalski 2020, adapted to the
  Mindways convention); its fit uncertainty is reported, but no published agreement figures
  for this adaptation exist to cite, and patients' tissues differ from the references;
* manual line: allowed and marked manual; categories only when its material is stated;
* hydroxyapatite where the thresholds need K2HPO4: no category, because no conversion is
  documented for the scanner's kVp (Goodsitt 1992, Bone Miner 19:145, measured
  BMD_K2HPO4/BMD_HA = 0.86 at 80 kVp and 0.81 at 140 kVp, single energy, on one scanner and
  one set of standards - a kVp-dependent ratio, not a general conversion).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from boneqct.calibration.fit import MATERIAL_UNSTATED

#: What each kind of result is called in the outputs.
LABEL_HU = "HU only (uncalibrated)"
LABEL_PHANTOM = "phantom calibration"
LABEL_ASYNCHRONOUS = "asynchronous phantom calibration"
LABEL_MANUAL = "manual calibration"
LABEL_OPPORTUNISTIC = "opportunistic estimate"
LABEL_FORCED = "calibration forced across kVp or scanner"


@dataclass(frozen=True)
class InterpretationBasis:
    """Whether values from a calibration may be categorised.

    Attributes:
        label: what the values are, for the outputs (e.g. "opportunistic estimate").
        diagnostic: True when categories and decision flags may be given.
        why_not: the reasons they are not (empty when ``diagnostic``).
        notes: statements the outputs must carry (how the calibration was applied).
    """

    label: str
    diagnostic: bool
    why_not: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The ``interpretation`` entry of spine.json / hip.json."""
        return {"basis": self.label, "diagnostic": self.diagnostic, "why_not": self.why_not}

    def warnings(self) -> list[str]:
        """Notes and reasons, worded for a result's warnings."""
        return self.notes + [f"No category: {why}" for why in self.why_not]


def interpretation_basis(calibration, materials: tuple[str, ...] = ("K2HPO4",),
                         material_reason: str = "") -> InterpretationBasis:
    """The interpretation basis of values from ``calibration`` (None: HU only).

    Args:
        calibration: a ``Calibration`` or None.
        materials: the materials the categories were defined in.
        material_reason: why another material gets no category (appended to the reason).
    """
    if calibration is None:
        return InterpretationBasis(LABEL_HU, False, [
            "no calibration (--hu): CT numbers are not bone mineral density, so there is no "
            "BMD, category or cement flag"])
    applied = calibration.applied or {}
    notes = [applied["warning"]] if applied.get("warning") else []
    if (calibration.method == "manual" and calibration.slope_hu_per_mg_cm3 == 1.0
            and calibration.intercept_hu == 0.0):
        notes.append("A manual calibration of slope 1 and intercept 0 is the identity: the "
                     "'BMD' values are CT numbers. To measure HU only, use --hu.")
    why_not = []
    label = {"phantom": LABEL_ASYNCHRONOUS if applied.get("relation") == "asynchronous"
             else LABEL_PHANTOM, "manual": LABEL_MANUAL,
             "internal": LABEL_OPPORTUNISTIC}.get(calibration.method, calibration.method)
    if calibration.method == "internal":
        why_not.append(
            "the internal (phantomless) calibration estimates slope and offset from the "
            "patient's tissues assuming reference (ICRU-44) compositions; no published "
            "agreement with phantom calibration exists for this method, so its values are an "
            "opportunistic estimate (fit uncertainty in calibration.json, tissue variation "
            "not included)")
    if applied.get("forced"):
        label = LABEL_FORCED
        why_not.append("the calibration was forced onto a scan of another kVp or scanner")
    if calibration.material == MATERIAL_UNSTATED:
        why_not.append("the manual calibration does not state its material (give --material)")
    elif calibration.material not in materials:
        why_not.append(f"the thresholds are for mg/cm3 of {' or '.join(materials)}, not of "
                       f"{calibration.material}{material_reason}")
    return InterpretationBasis(label, not why_not, why_not, notes)


__all__ = ["InterpretationBasis", "interpretation_basis"]
