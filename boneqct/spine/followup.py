"""Follow-up: change in spine BMD between two exams against the least significant change."""

from __future__ import annotations

from boneqct.calibration.provenance import KVP_TOLERANCE_KV, SCANNER_KEYS
from boneqct.errors import BoneQCTError
from boneqct.io.user_json import UserFileError, finite_number, typed_field
from boneqct.spine.levels import LEVEL_NAMES

#: ISCD: LSC at 95% confidence = 2.77 x the precision error (RMS-SD) (docs/domain.md section 4).
LSC_FACTOR = 2.77


def least_significant_change(precision_mg_cm3: float) -> float:
    """LSC (mg/cm3) at 95% confidence from a precision error (RMS-SD, mg/cm3)."""
    return LSC_FACTOR * precision_mg_cm3


def compare_exams(old: dict, new: dict, lsc_mg_cm3: float | None = None,
                  precision_mg_cm3: float | None = None) -> dict:
    """Per-level and mean change from ``old`` to ``new`` (two ``spine.json`` documents).

    Args:
        lsc_mg_cm3: least significant change to test against; or
        precision_mg_cm3: a precision error (RMS-SD) from which LSC = 2.77 x precision.

    Returns:
        dict with ``levels`` (level, old/new BMD, change in mg/cm3 and %, ``significant``
        when an LSC is known), ``mean`` (same fields for the diagnostic mean), ``lsc_mg_cm3``,
        ``warnings`` (different calibration method, kVp or scanner).

    Raises:
        BoneQCTError: an exam is uncalibrated, both documents measure the same series, the
            materials differ, the patients differ, or the later exam is given first.
    """
    for name, doc in (("old", old), ("new", new)):
        _check_document(doc, name)
        if not doc.get("calibrated"):
            raise BoneQCTError(f"The {name} exam is uncalibrated (HU only); follow-up compares "
                               "calibrated BMD. Re-run it with a calibration.")
    if old.get("material") != new.get("material"):
        raise BoneQCTError(
            f"The exams are calibrated in different materials ({old.get('material')} vs "
            f"{new.get('material')}); their BMD values cannot be compared directly."
        )
    warnings = _exam_differences(old, new)
    if lsc_mg_cm3 is None and precision_mg_cm3 is not None:
        lsc_mg_cm3 = least_significant_change(precision_mg_cm3)
    old_levels = {lv["level"]: lv for lv in old["levels"] if _comparable(lv)}
    rows = [_change(lv["level"], old_levels[lv["level"]]["bmd_mg_cm3"], lv["bmd_mg_cm3"], lsc_mg_cm3)
            for lv in new["levels"] if lv["level"] in old_levels and _comparable(lv)]
    failed = sorted({lv["level"] for doc in (old, new) for lv in doc["levels"]
                     if lv.get("bmd_mg_cm3") is not None and not _comparable(lv)})
    if failed:
        warnings.append(f"{', '.join(failed)}: ROI quality check failed in one exam; not "
                        "compared.")
    if not rows:
        raise BoneQCTError("The two exams have no measured level in common; nothing to compare.")
    out = {"levels": rows, "lsc_mg_cm3": lsc_mg_cm3, "material": new.get("material"),
           "warnings": warnings}
    if old.get("mean_bmd_mg_cm3") is not None and new.get("mean_bmd_mg_cm3") is not None:
        out["mean"] = _change("mean", old["mean_bmd_mg_cm3"], new["mean_bmd_mg_cm3"], lsc_mg_cm3)
        out["mean"]["levels_used_old"] = old.get("levels_used")
        out["mean"]["levels_used_new"] = new.get("levels_used")
    if lsc_mg_cm3 is None:
        out["note"] = ("No least significant change given (--lsc or --precision): changes are "
                       "not tested for significance.")
    return out


def _comparable(level: dict) -> bool:
    """A measured level whose ROI passed its quality checks."""
    return level.get("bmd_mg_cm3") is not None and (level.get("qc") or {}).get("passed", True)


def _check_document(doc: dict, name: str) -> None:
    """Refuse a document that is not a spine.json (UserFileError naming the field)."""
    what = f"The {name} spine.json"
    typed_field(doc, "calibrated", bool, what)
    typed_field(doc, "material", str, what, required=False)
    for key in ("exam", "calibration"):
        typed_field(doc, key, dict, what, required=False)
    if doc.get("mean_bmd_mg_cm3") is not None:
        finite_number(doc["mean_bmd_mg_cm3"], "mean_bmd_mg_cm3", what)
    for n, level in enumerate(typed_field(doc, "levels", list, what)):
        if not isinstance(level, dict) or level.get("level") not in LEVEL_NAMES:
            raise UserFileError(f"{what}: levels[{n}] is not a level of a spine.json "
                                "(no vertebra name); give spine.json files written by "
                                "`boneqct spine`.")
        if level.get("bmd_mg_cm3") is not None:
            finite_number(level["bmd_mg_cm3"], f"levels[{n}].bmd_mg_cm3", what)
        typed_field(level, "qc", dict, what, required=False)


def _exam_differences(old: dict, new: dict) -> list[str]:
    """Refuse two analyses of one series; warn when the method, kVp or scanner differ (the
    change then holds a calibration difference, and an LSC measured on one scanner and
    protocol does not apply)."""
    old_exam, new_exam = old.get("exam") or {}, new.get("exam") or {}
    warnings = _identity_and_order(old_exam, new_exam)
    if old_exam.get("series_uid") and old_exam.get("series_uid") == new_exam.get("series_uid"):
        raise BoneQCTError(
            "Both spine.json files measure the same CT series: their difference comes from the "
            "analysis (calibration, ROIs), not from the bone. Compare two exams.")
    methods = [(doc.get("calibration") or {}).get("method") for doc in (old, new)]
    if methods[0] != methods[1]:
        warnings.append(f"The exams were calibrated by different methods ({methods[0]} vs "
                        f"{methods[1]}): the change includes the difference between methods.")
    kvps = [exam.get("kvp") for exam in (old_exam, new_exam)]
    if None not in kvps and abs(float(kvps[0]) - float(kvps[1])) > KVP_TOLERANCE_KV:
        warnings.append(f"The exams were scanned at different tube voltages ({kvps[0]:g} vs "
                        f"{kvps[1]:g} kVp): mineral-equivalent BMD depends on the spectrum, and "
                        "the least significant change holds for one protocol.")
    differing = [f"{key.replace('_', ' ')} '{old_exam[key]}' vs '{new_exam[key]}'"
                 for key in SCANNER_KEYS
                 if old_exam.get(key) and new_exam.get(key) and old_exam[key] != new_exam[key]]
    if differing:
        warnings.append("The exams come from different scanners (" + ", ".join(differing) +
                        "): without a cross-calibration the change includes the scanner "
                        "difference, and the least significant change does not apply.")
    return warnings


def _identity_and_order(old_exam: dict, new_exam: dict) -> list[str]:
    """Refuse exams of two patients, or given latest first; warn when identity or dates are
    not recorded (anonymised outputs), so they could not be checked."""
    warnings = []
    for key, what in (("patient_id", "patient IDs"), ("patient_birth_date", "birth dates")):
        if old_exam.get(key) and new_exam.get(key) and old_exam[key] != new_exam[key]:
            raise BoneQCTError(f"The exams belong to different patients (their {what} differ); "
                               "follow-up compares two exams of one patient.")
    if not (old_exam.get("patient_id") and new_exam.get("patient_id")):
        warnings.append("The patient's identity is not recorded in both files (anonymised?): it "
                        "could not be checked that both exams are of one patient.")
    dates = [exam.get("study_date") for exam in (old_exam, new_exam)]
    if None not in dates and dates[0] > dates[1]:
        raise BoneQCTError(f"The first file is the later exam ({dates[0]} after {dates[1]}); "
                           "give the earlier exam first.")
    if None in dates:
        warnings.append("A study date is not recorded: the order of the exams could not be "
                        "checked.")
    return warnings


def _change(level: str, old_bmd: float, new_bmd: float, lsc_mg_cm3: float | None) -> dict:
    """The change of one level; no percentage from a baseline at or below zero."""
    change = new_bmd - old_bmd
    row = {"level": level, "old_bmd_mg_cm3": old_bmd, "new_bmd_mg_cm3": new_bmd,
           "change_mg_cm3": change,
           "change_percent": 100.0 * change / old_bmd if old_bmd > 0 else None}
    if lsc_mg_cm3 is not None:
        row["significant"] = abs(change) > lsc_mg_cm3
    return row
