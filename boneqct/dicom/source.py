"""The CT the DICOM outputs refer to: the headers of the source series, one per slice of the
analysed volume (k order), or headers made from the volume's own geometry when there is no
DICOM series on that grid.

A SEG must lie on the frames of images and an SR refers to them; both inherit the patient
and study from them. For a DICOM input the series is read again (headers only) and each
slice matched to the volume's k index by its position; the outputs then refer to the real
instances. A NIfTI/NRRD/MHA input, or a DICOM series that was resampled on reading (gantry
tilt), has no instances on the analysed grid: headers are made from the volume (new Series
and Frame of Reference UIDs; the study's UID and the patient from the DICOM header when
there was one, else new and empty), and ``DicomSource.note`` says so; the SR carries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, generate_uid

from boneqct.dicom.anonymize import anonymized_headers
from boneqct.volume import LPS_TO_RAS, Volume

#: Largest distance (mm) between a slice's ImagePositionPatient and the volume's voxel
#: (0, 0, k) for the slice to be taken as that k: 1 um, far below any CT voxel.
POSITION_TOLERANCE_MM = 1e-3
#: Attributes copied from a source slice: the geometry and UIDs a SEG and SR need, and the
#: patient and study modules they inherit (``anonymize`` then applies the profile to them).
COPIED_ATTRIBUTES = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "FrameOfReferenceUID", "Modality", "Rows", "Columns", "PixelSpacing",
    "ImageOrientationPatient", "ImagePositionPatient", "SliceThickness",
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "StudyDescription",
)
NOT_DICOM_NOTE = ("The CT was read from a volume file (NIfTI/NRRD/MHA), not a DICOM series: "
                  "the image references of this object are to a series made from the volume's "
                  "geometry (new Series and Frame of Reference UIDs) that is not stored anywhere.")
RESAMPLED_NOTE = ("The DICOM series does not lie slice for slice on the analysed grid (resampled "
                  "when read, e.g. for a gantry tilt): the image references of this object are "
                  "to a series made from the analysed grid (new Series and Frame of Reference "
                  "UIDs) that is not stored anywhere.")


@dataclass
class DicomSource:
    """Headers of the CT slices the outputs lie on (``headers[k]`` for the volume's slice k).

    Attributes:
        headers: one pydicom Dataset per slice (no pixel data).
        note: why the references are not to stored instances, or "" when they are.
        anonymized: whether ``boneqct.dicom.anonymize`` was applied to the headers.
    """

    headers: list[Dataset]
    note: str = ""
    anonymized: bool = False


def dicom_source(volume: Volume, inputs: list[Path] | None = None, series_uid: str | None = None,
                 anonymize: bool = False) -> DicomSource:
    """The source of ``volume`` (read with ``boneqct.io.load_ct(inputs, series_uid)``).

    ``inputs``: the folder or files the volume was read from; None, or a volume that is not
    from DICOM or does not lie on its series' grid, gives headers made from the volume."""
    metadata = volume.metadata
    if metadata.get("source_format") == "dicom" and inputs:
        headers = _series_headers(volume, inputs, series_uid or metadata.get("series_uid"))
        note = "" if headers is not None else RESAMPLED_NOTE
    else:
        headers = None
        note = NOT_DICOM_NOTE
    if headers is None:
        headers = volume_headers(volume)
    if anonymize:
        headers = anonymized_headers(headers)
    return DicomSource(headers, note, anonymize)


def _series_headers(volume: Volume, inputs: list[Path], series_uid: str | None):
    """Copies (``COPIED_ATTRIBUTES``) of the series' slice headers in the volume's k order, or
    None when the series does not lie slice for slice on the volume's grid."""
    from boneqct.io.dicom import find_series

    source = inputs[0] if len(inputs) == 1 else list(inputs)
    if Path(source if not isinstance(source, list) else source[0]).name.upper() == "DICOMDIR":
        source = Path(source).parent
    series = [s for s in find_series(source) if s.series_uid == series_uid]
    if len(series) != 1 or series[0].n_slices != volume.array_kji.shape[0]:
        return None
    positions_lps = _slice_positions_lps(volume)
    by_k = [None] * len(positions_lps)
    for ds in series[0].datasets:
        try:
            position = np.array([float(v) for v in ds.ImagePositionPatient])
        except (AttributeError, TypeError, ValueError):
            return None
        distance = np.linalg.norm(positions_lps - position, axis=1)
        k = int(np.argmin(distance))
        if distance[k] > POSITION_TOLERANCE_MM or by_k[k] is not None:
            return None
        by_k[k] = _copy(ds)
    return by_k


def _copy(ds: Dataset) -> Dataset:
    out = Dataset()
    for keyword in COPIED_ATTRIBUTES:
        if keyword in ds:
            setattr(out, keyword, ds.data_element(keyword).value)
    return out


def _slice_positions_lps(volume: Volume) -> np.ndarray:
    """(K, 3) LPS positions (mm) of the voxels (0, 0, k)."""
    ijk_to_lps = LPS_TO_RAS @ volume.ijk_to_ras
    return ijk_to_lps[:3, 3] + np.outer(np.arange(volume.array_kji.shape[0]), ijk_to_lps[:3, 2])


def volume_headers(volume: Volume) -> list[Dataset]:
    """CT Image headers (no pixel data) for the slices of ``volume``: geometry from its
    IJK->RAS, new Series, Frame of Reference and SOP Instance UIDs, the study's UID and the
    patient from its metadata when present (else a new study and empty patient fields)."""
    from boneqct.io.dicom_writer import slice_geometry_lps

    row_lps, column_lps, positions_lps = slice_geometry_lps(volume)
    metadata = volume.metadata
    shared = Dataset()
    shared.SOPClassUID = CTImageStorage
    shared.StudyInstanceUID = metadata.get("study_uid") or generate_uid()
    shared.SeriesInstanceUID = generate_uid()
    shared.FrameOfReferenceUID = generate_uid()
    shared.Modality = "CT"
    shared.Rows, shared.Columns = volume.array_kji.shape[1:]
    spacing = volume.spacing_mm
    shared.PixelSpacing = [f"{spacing[1]:.10g}", f"{spacing[0]:.10g}"]
    shared.SliceThickness = f"{spacing[2]:.10g}"
    shared.ImageOrientationPatient = [f"{c:.10f}" for c in (*row_lps, *column_lps)]
    shared.PatientName = metadata.get("patient_name") or ""
    shared.PatientID = metadata.get("patient_id") or ""
    shared.PatientBirthDate = (metadata.get("patient_birth_date") or "").replace("-", "")
    shared.PatientSex = metadata.get("patient_sex") or ""
    shared.StudyDate = (metadata.get("study_date") or "").replace("-", "")
    shared.StudyTime = ""
    shared.ReferringPhysicianName = ""
    shared.StudyID = ""
    shared.AccessionNumber = ""
    headers = []
    for position_lps in positions_lps:
        ds = Dataset()
        ds.update(shared)
        ds.SOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [f"{c:.10f}" for c in position_lps]
        headers.append(ds)
    return headers
