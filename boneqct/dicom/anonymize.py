"""The de-identification profile of ``--anonymize`` for the DICOM outputs.

Modelled on the DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile with its
Retain Patient Characteristics Option (the profile ``boneqct.io.dicom.ANONYMIZATION_PROFILE``
applies to the JSON and reports), over the attributes the outputs carry (they inherit the
patient and study modules of the source headers; nothing else of the source is copied):

- emptied (action Z): PatientName, PatientID, PatientBirthDate, StudyDate, StudyTime,
  ReferringPhysicianName, StudyID, AccessionNumber;
- removed (action X): StudyDescription (and institution, station, device serial number and
  descriptions of the source, which the outputs never copy);
- replaced (action U): StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID and
  FrameOfReferenceUID of the source, by hashed UIDs (``boneqct.io.dicom.hashed_uid``: the
  same as the JSON's, so one series stays one series; references then point at instances
  that only a copy of the CT anonymised with the same hashing holds);
- kept (Retain Patient Characteristics Option): PatientSex, PatientAge.

Each output is marked PatientIdentityRemoved YES with the profile's name and codes (DCM
113100, 113108) in DeidentificationMethod(CodeSequence). Other options of the standard
(retain dates, retain UIDs, clean pixel data...) are not implemented; the report PDF is the
one written under ``--anonymize``, which shows no identity.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes

from boneqct.io.dicom import hashed_uid

EMPTIED = ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyTime",
           "ReferringPhysicianName", "StudyID", "AccessionNumber")
REMOVED = ("StudyDescription",)
REPLACED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                 "FrameOfReferenceUID")
#: DeidentificationMethod (LO, at most 64 characters) of the outputs.
METHOD = "PS3.15 Basic Profile, Retain Patient Characteristics Option"
METHOD_CODES = (codes.DCM.BasicApplicationConfidentialityProfile,
                codes.DCM.RetainPatientCharacteristicsOption)


def anonymized_headers(headers: list[Dataset]) -> list[Dataset]:
    """Copies of source headers under the profile (see the module's docstring)."""
    out = []
    for ds in headers:
        copy = Dataset()
        copy.update(ds)
        for keyword in EMPTIED:
            setattr(copy, keyword, "")
        for keyword in REMOVED:
            if keyword in copy:
                delattr(copy, keyword)
        for keyword in REPLACED_UIDS:
            if keyword in copy:
                setattr(copy, keyword, hashed_uid(str(getattr(copy, keyword))))
        out.append(copy)
    return out


def mark_deidentified(ds: Dataset) -> None:
    """State on an output dataset that it was de-identified, and by which profile."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    items = []
    for code in METHOD_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = (
            code.value, code.scheme_designator, code.meaning)
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
