"""The report PDF as an Encapsulated PDF Storage instance (PS3.3 A.45.1), built with pydicom
(highdicom has no encapsulated-document class): the patient and study of the source, an
Encapsulated Document series (modality DOC), the PDF's bytes unchanged."""

from __future__ import annotations

import datetime

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

import boneqct
from boneqct.dicom.source import DicomSource

#: Series number of the Encapsulated PDF.
PDF_SERIES_NUMBER = 903
#: Patient and study attributes an output takes from its source (type 2: present, maybe empty).
PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                 "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName",
                 "StudyID", "AccessionNumber")


def encapsulated_pdf(pdf_bytes: bytes, title: str, source: DicomSource,
                     shows_identity: bool) -> Dataset:
    """An Encapsulated PDF dataset holding ``pdf_bytes`` in the study of ``source``;
    ``shows_identity``: the PDF shows the patient's identity (BurnedInAnnotation YES)."""
    now = datetime.datetime.now()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    header = source.headers[0]
    for keyword in PATIENT_STUDY:
        setattr(ds, keyword, header.get(keyword, ""))
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = PDF_SERIES_NUMBER
    ds.SeriesDescription = title[:64]
    ds.Manufacturer = "BoneQCT"
    ds.SoftwareVersions = boneqct.__version__
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES" if shows_identity else "NO"
    ds.DocumentTitle = title[:64]
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf_bytes
    ds.EncapsulatedDocumentLength = len(pdf_bytes)
    return ds


def pdf_bytes_of(ds: Dataset) -> bytes:
    """The document an Encapsulated PDF holds, without the padding to an even length."""
    return bytes(ds.EncapsulatedDocument)[:int(ds.EncapsulatedDocumentLength)]
