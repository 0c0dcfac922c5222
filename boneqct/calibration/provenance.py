"""Where a calibration comes from, and whether it holds for the scan it is applied to.

A HU -> BMD line holds for the scanner and tube voltage it was measured on: the CT number of
mineral changes with the spectrum (e.g. K2HPO4/HA ratios of 0.86 at 80 kVp and 0.81 at
140 kVp, Goodsitt 1992 Bone Miner 19:145), and scanners differ. A calibration therefore
records the scan it was measured on (``scan_provenance``), and ``check_calibration_applies``
compares that record with the scan it is about to be applied to:

* same series: the calibration was measured on this scan (synchronous): accepted silently;
* another kVp or another scanner (manufacturer, model, station or serial number, when both
  record it): refused, naming both values, unless forced (then stated in the outputs);
* same scanner and kVp, another series: asynchronous calibration, accepted with a warning
  that gives the interval in days (and any kernel or slice-thickness difference);
* no record to compare with: accepted with a warning that it could not be checked.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from boneqct.errors import CalibrationError
from boneqct.io.dicom import anonymized_metadata

#: Metadata keys (``boneqct.io`` exam metadata) naming the scanner.
SCANNER_KEYS = ("manufacturer", "model", "station_name", "device_serial_number")
#: Metadata keys recorded as a calibration's provenance.
SCAN_KEYS = (*SCANNER_KEYS, "kvp", "convolution_kernel", "slice_thickness_mm", "series_uid",
             "study_uid", "study_date")
#: Two kVp values closer than this (kV) are the same setting.
KVP_TOLERANCE_KV = 0.5
#: Relations of a calibration to the scan it is applied to (``Calibration.applied``).
SAME_SERIES = "same-series"
ASYNCHRONOUS = "asynchronous"
FORCED = "forced"
UNCHECKED = "unchecked"
MANUAL = "manual"


def scan_provenance(metadata: dict) -> dict:
    """The provenance record (``SCAN_KEYS``) of a scan from its exam metadata."""
    return {key: metadata.get(key) for key in SCAN_KEYS}


def anonymized_provenance(scan: dict | None) -> dict | None:
    """A provenance record under ``boneqct.io.dicom.ANONYMIZATION_PROFILE``: station, serial
    and date removed, UIDs replaced by hashed UIDs (a series is still recognised as one)."""
    if scan is None:
        return None
    shown = anonymized_metadata(scan)  # the outputs' one anonymisation profile
    shown.pop("anonymization")
    return shown


def measured_on_this_scan(calibration):
    """A copy of ``calibration`` marked as applied to the scan it was measured on."""
    relation = MANUAL if calibration.method == MANUAL else SAME_SERIES
    return replace(calibration, applied=_applied(relation))


def check_calibration_applies(calibration, metadata: dict, force: bool = False):
    """A copy of ``calibration`` with ``applied`` set for the scan described by ``metadata``.

    Args:
        calibration: a ``Calibration`` read from a file (its ``scan`` says where it was
            measured).
        metadata: exam metadata of the scan it is applied to (``Volume.metadata``).
        force: apply it even across kVp or scanners (``--force-calibration``); the outputs
            then say so and give no category.

    Raises:
        CalibrationError: the kVp or the scanner differ and ``force`` is False.
    """
    if calibration.method == MANUAL:
        return measured_on_this_scan(calibration)
    source, target = calibration.scan or {}, scan_provenance(metadata)
    if not any(v is not None for v in source.values()):
        return replace(calibration, applied=_applied(
            UNCHECKED, warning="The calibration file records no scan (written before BoneQCT "
            "kept provenance, or measured on a file without DICOM metadata): its kVp and "
            "scanner could not be checked against this scan."))
    if source.get("series_uid") and source.get("series_uid") == target.get("series_uid"):
        return replace(calibration, applied=_applied(SAME_SERIES))
    differences = _refusing_differences(source, target)
    if differences and not force:
        raise CalibrationError(
            f"The calibration does not hold for this scan: {'; '.join(differences)}. A "
            "calibration holds only for the kVp and scanner it was measured on. Calibrate this "
            "scan (--phantom, or a calibration measured at its kVp on its scanner), or pass "
            "--force-calibration to apply it anyway (the outputs will say so and give no "
            "category).")
    days = _interval_days(source.get("study_date"), target.get("study_date"))
    if differences:
        return replace(calibration, applied=_applied(
            FORCED, days, forced=True, warning="Calibration forced (--force-calibration) although "
            f"{'; '.join(differences)}: BMD may be biased; no category or cement flag is given."))
    notes = _minor_differences(source, target)
    when = ("interval unknown" if days is None
            else f"{abs(days)} day(s) {'before' if days >= 0 else 'after'} this scan")
    return replace(calibration, applied=_applied(
        ASYNCHRONOUS, days, warning=f"Asynchronous calibration: measured on another series "
        f"({source.get('study_date') or 'date unknown'}, {when}) at "
        f"{_kvp(source.get('kvp'))}; scanner drift over the interval is not corrected"
        + (f"; {'; '.join(notes)}" if notes else "") + "."))


def _applied(relation: str, interval_days: int | None = None, forced: bool = False,
             warning: str | None = None) -> dict:
    return {"relation": relation, "interval_days": interval_days, "forced": forced,
            "warning": warning}


def _refusing_differences(source: dict, target: dict) -> list[str]:
    """kVp or scanner differences between the calibration's scan and this one, in words."""
    out = []
    kvp_source, kvp_target = source.get("kvp"), target.get("kvp")
    if (kvp_source is not None and kvp_target is not None
            and abs(float(kvp_source) - float(kvp_target)) > KVP_TOLERANCE_KV):
        out.append(f"the calibration was measured at {_kvp(kvp_source)} and this scan is at "
                   f"{_kvp(kvp_target)}")
    for key in SCANNER_KEYS:
        a, b = source.get(key), target.get(key)
        if a and b and str(a).strip().lower() != str(b).strip().lower():
            out.append(f"scanner {key.replace('_', ' ')} '{a}' (calibration) vs '{b}' (this scan)")
    return out


def _minor_differences(source: dict, target: dict) -> list[str]:
    """Kernel and slice-thickness differences, and a kVp or scanner recorded on one side only:
    these do not refuse but are worth saying."""
    out = []
    if (source.get("kvp") is None) != (target.get("kvp") is None):
        out.append(f"the calibration is at {_kvp(source.get('kvp'))} and this scan at "
                   f"{_kvp(target.get('kvp'))}, so the tube voltages could not be compared")
    if not any(source.get(k) and target.get(k) for k in SCANNER_KEYS):
        out.append("the scanner is not recorded on both sides, so it could not be compared")
    if (source.get("convolution_kernel") and target.get("convolution_kernel")
            and source["convolution_kernel"] != target["convolution_kernel"]):
        out.append(f"kernel {source['convolution_kernel']} (calibration) vs "
                   f"{target['convolution_kernel']} (this scan)")
    a, b = source.get("slice_thickness_mm"), target.get("slice_thickness_mm")
    if a is not None and b is not None and abs(float(a) - float(b)) > 1e-3:
        out.append(f"slice thickness {float(a):g} mm (calibration) vs {float(b):g} mm (this scan)")
    return out


def _interval_days(source_date: str | None, target_date: str | None) -> int | None:
    """Days from the calibration's scan to this one (ISO dates), or None when unknown."""
    try:
        return (date.fromisoformat(str(target_date)) - date.fromisoformat(str(source_date))).days
    except ValueError:
        return None


def _kvp(value) -> str:
    return "an unrecorded kVp" if value is None else f"{float(value):g} kVp"


__all__ = ["SCAN_KEYS", "anonymized_provenance", "check_calibration_applies",
           "measured_on_this_scan", "scan_provenance"]
