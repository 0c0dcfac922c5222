"""Comprehensive 3D SR (TID 1500 Measurement Report, highdicom) of an analysis, built from the
JSON document the analysis wrote (so the numbers are those of the JSON), one measurement group
per level, region or screw; a group whose region is a segment of the SEG refers to it (TID
1411), the others are TID 1501 groups.

What each analysis reports (units UCUM; codes in ``boneqct.dicom.codes``):

- spine: per measured level, BMD (mean, SD; mg/cm3) or mean CT number (HU) when uncalibrated,
  ROI volume (mm3), cement flag; a group "mean <levels>" with the mean BMD, the category and
  T/Z-scores when given;
- hip: per DXA-equivalent region, aBMD (g/cm2), vBMD (mg/cm3), BMC (g), area (cm2), volume
  (cm3), T/Z-scores, the category on the total region; per head/neck region, vBMD (mean, SD)
  and volume (cm3);
- fe: stiffness (N/mm), strength (N), the fragile flag;
- screw: per measured screw, BMD in the cylinder (or HU), shell BMD, lowest segment BMD,
  cortical contact fraction (1), cylinder volume (mm3), cement flag.
"""

from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from boneqct.dicom import codes
from boneqct.dicom.source import DicomSource

#: Series number of the SR.
SR_SERIES_NUMBER = 901
#: A stable UID naming BoneQCT as the device observer of every report.
DEVICE_UID = generate_uid(entropy_srcs=["BoneQCT device observer"])


def _measurement(name, value, unit, derivation=None) -> list[hd.sr.Measurement]:
    """A one-item list with the measurement, or an empty list when ``value`` is None."""
    if value is None:
        return []
    return [hd.sr.Measurement(name=name, value=float(value), unit=unit, derivation=derivation)]


def _flag(name, value) -> list[hd.sr.QualitativeEvaluation]:
    return [] if value is None else [hd.sr.QualitativeEvaluation(name, codes.yes_no(value))]


def _category(text: str | None) -> list[hd.sr.QualitativeEvaluation]:
    """The category (ACR or WHO, as the JSON says it) as a private coded value."""
    if not text:
        return []
    value = "".join(c for c in text.upper() if c.isalnum())[:16]
    return [hd.sr.QualitativeEvaluation(codes.CATEGORY, codes.private(value, text[:64]))]


def _bmd_or_hu(calibrated: bool, bmd, sd, hu) -> list[hd.sr.Measurement]:
    """Mean (and SD) density, mg/cm3, when calibrated; else the mean CT number (HU)."""
    if calibrated:
        return (_measurement(codes.DENSITY, bmd, codes.MG_CM3, codes.MEAN)
                + _measurement(codes.DENSITY, sd, codes.MG_CM3, codes.STANDARD_DEVIATION))
    return _measurement(codes.ATTENUATION, hu, codes.HU, codes.MEAN)


class _Groups:
    """Collects measurement groups; a group naming a segment of ``seg`` refers to it."""

    def __init__(self, seg: Dataset | None, segment_numbers: dict[str, int]):
        self.seg, self.segment_numbers, self.groups = seg, segment_numbers, []

    def add(self, name: str, site, measurements, evaluations=(), finding_type=codes.BONE):
        if not measurements and not evaluations:
            return
        common = dict(tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(),
                                                                   identifier=name[:64]),
                      finding_type=finding_type,
                      finding_sites=[hd.sr.FindingSite(anatomic_location=site)],
                      measurements=list(measurements) or None,
                      qualitative_evaluations=list(evaluations) or None)
        number = self.segment_numbers.get(name)
        if self.seg is not None and number is not None:
            # built here, not with ReferencedSegment.from_segmentation, which fails on a SEG of
            # one segment (highdicom 0.28.2 looks for its identification per frame, where the
            # SEG holds it in the shared functional groups)
            self.groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                referenced_segment=hd.sr.ReferencedSegment(
                    sop_class_uid=self.seg.SOPClassUID,
                    sop_instance_uid=self.seg.SOPInstanceUID, segment_number=number,
                    source_series=hd.sr.SourceSeriesForSegmentation(
                        self.seg.ReferencedSeriesSequence[0].SeriesInstanceUID)),
                **common))
        else:
            self.groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(**common))


def spine_groups(document: dict, groups: _Groups) -> None:
    calibrated = document["calibrated"]
    for lv in document["levels"]:
        if lv["measured"]:
            groups.add(lv["level"], codes.vertebra(lv["level"]),
                       _bmd_or_hu(calibrated, lv["bmd_mg_cm3"], lv["sd_mg_cm3"], lv["mean_hu"])
                       + _measurement(codes.VOLUME, lv["roi_volume_mm3"], codes.MM3),
                       _flag(codes.CEMENT, lv["cement_augmentation"]))
    used = document["levels_used"]
    groups.add(f"mean {'-'.join(used)}", codes.SPINE,
               _measurement(codes.DENSITY, document["mean_bmd_mg_cm3"], codes.MG_CM3, codes.MEAN)
               + _measurement(codes.T_SCORE, document.get("t_score"), codes.ONE)
               + _measurement(codes.Z_SCORE, document.get("z_score"), codes.ONE),
               _category(document["category"]))


def hip_groups(document: dict, groups: _Groups) -> None:
    side = document["side"]
    category = (document.get("interpretation") or {}).get("category")
    for name, roi in document["rois"].items():
        groups.add(f"{side} {name}", codes.PROXIMAL_FEMUR,
                   _measurement(codes.AREAL_BMD, roi.get("abmd_g_cm2"), codes.G_CM2)
                   + _measurement(codes.DENSITY, roi.get("vbmd_mg_cm3"), codes.MG_CM3, codes.MEAN)
                   + _measurement(codes.BMC, roi.get("bmc_g"), codes.G)
                   + _measurement(codes.AREA, roi.get("area_cm2"), codes.CM2)
                   + _measurement(codes.VOLUME, roi.get("volume_cm3"), codes.CM3)
                   + _measurement(codes.T_SCORE, roi.get("t_score"), codes.ONE)
                   + _measurement(codes.Z_SCORE, roi.get("z_score"), codes.ONE),
                   _category(category) if name == "total" else ())
    for name, region in ((document.get("head_neck") or {}).get("regions") or {}).items():
        groups.add(f"{side} femoral {name}",
                   codes.HEAD_OF_FEMUR if name == "head" else codes.PROXIMAL_FEMUR,
                   _bmd_or_hu(True, region["vbmd_mg_cm3"], region["sd_mg_cm3"], None)
                   + _measurement(codes.VOLUME, region["volume_cm3"], codes.CM3))


def fe_groups(document: dict, groups: _Groups) -> None:
    groups.add(f"{document['level']} finite elements", codes.vertebra(document["level"]),
               _measurement(codes.STIFFNESS, document["stiffness_n_mm"], codes.N_MM)
               + _measurement(codes.STRENGTH, document["strength_n"], codes.N),
               _flag(codes.FRAGILE, document["fragile"]))


def screw_groups(document: dict, groups: _Groups) -> None:
    calibrated = document["calibrated"]
    for s in document["screws"]:
        if not s["measured"]:
            continue
        groups.add(s["name"], codes.vertebra(s["level"]),
                   _bmd_or_hu(calibrated, s["bmd_mg_cm3"], s["sd_mg_cm3"], s["mean_hu"])
                   + (_measurement(codes.SHELL_BMD, s["shell_bmd_mg_cm3"], codes.MG_CM3)
                      + _measurement(codes.MIN_SEGMENT_BMD, s["min_segment_bmd_mg_cm3"],
                                     codes.MG_CM3) if calibrated else
                      _measurement(codes.SHELL_HU, s["shell_mean_hu"], codes.HU)
                      + _measurement(codes.MIN_SEGMENT_HU, s["min_segment_hu"], codes.HU))
                   + _measurement(codes.CORTICAL_CONTACT, s["cortical_contact_fraction"],
                                  codes.ONE)
                   + _measurement(codes.VOLUME, s["cylinder_volume_mm3"], codes.MM3),
                   _flag(codes.CEMENT, s["cement_suggested"]), finding_type=codes.BONE_SCREW)


GROUPS = {"spine": spine_groups, "hip": hip_groups, "fe": fe_groups, "screw": screw_groups}


def measurement_report(kind: str, document: dict, source: DicomSource,
                       seg: Dataset | None = None,
                       segment_numbers: dict[str, int] | None = None) -> hd.sr.Comprehensive3DSR:
    """The SR of a ``kind`` ("spine", "hip", "fe", "screw") analysis from its JSON document;
    groups named in ``segment_numbers`` refer to those segments of ``seg``. The source's note
    (references to a series not stored) is added as a text item of the first group."""
    groups = _Groups(seg, segment_numbers or {})
    GROUPS[kind](document, groups)
    if source.note and groups.groups:
        groups.groups[0][0].ContentSequence.append(hd.sr.TextContentItem(
            name=codes.SOURCE_NOTE, value=source.note,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DEVICE,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_UID, name="BoneQCT", manufacturer_name="BoneQCT", model_name="boneqct"))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=[codes.PROCEDURE, codes.CT],
        imaging_measurements=groups.groups or None)
    evidence = list(source.headers) + ([seg] if seg is not None else [])
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report[0], series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="BoneQCT", is_complete=True, series_description=f"BoneQCT {kind}")
    sr.CodingSchemeIdentificationSequence = [codes.coding_scheme_identification()]
    return sr
