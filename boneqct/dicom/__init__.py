"""DICOM outputs of the analyses (highdicom): a Comprehensive 3D SR (TID 1500 measurement
report), a SEG of the regions measured on the source CT's grid, and the report as
Encapsulated PDF; ``--anonymize`` applies ``boneqct.dicom.anonymize``'s profile."""

from boneqct.dicom.outputs import DICOM_FOLDER, write_dicom_outputs
from boneqct.dicom.source import DicomSource, dicom_source

__all__ = ["DICOM_FOLDER", "DicomSource", "dicom_source", "write_dicom_outputs"]
