"""Write a volume as a DICOM CT image series (one CT Image Storage file per slice).

Geometry goes from the volume's IJK->RAS matrix to DICOM LPS: ImagePositionPatient is the LPS
position of voxel (0, 0, k), ImageOrientationPatient the LPS directions of the i (row) and j
(column) axes, PixelSpacing [j spacing, i spacing]. Pixels are stored as signed 16-bit
``HU + 1024`` with RescaleSlope 1 and RescaleIntercept -1024.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from boneqct.io.atomic import atomic_path
from boneqct.volume import LPS_TO_RAS, Volume

#: Accepted ``transfer_syntax`` names and their DICOM UIDs.
TRANSFER_SYNTAXES = {
    "explicit-le": ExplicitVRLittleEndian,
    "jpeg2000-lossless": JPEG2000Lossless,
    "rle": RLELossless,
}
RESCALE_INTERCEPT_HU = -1024.0
#: Used when neither the call nor ``volume.metadata`` (``patient_*`` keys) gives a value.
DEFAULT_PATIENT = {"name": "PHANTOM^DIGITAL", "id": "BQCT-PHANTOM", "sex": "O",
                   "birth_date": "19650101"}
DEFAULT_STUDY_DATE = "20250101"


def _uid(uid_seed: str | None, *parts: object):
    """A fresh UID, or a reproducible one derived from ``uid_seed`` and ``parts``."""
    if uid_seed is None:
        return generate_uid()
    return generate_uid(entropy_srcs=[str(uid_seed), *map(str, parts)])


def _dicom_date(date: str) -> str:
    """A date given as YYYYMMDD or ISO YYYY-MM-DD, as DICOM DA (YYYYMMDD)."""
    return str(date).replace("-", "")


def _patient_from_metadata(metadata: dict) -> dict:
    """Patient fields present in exam metadata (``boneqct.io.dicom.exam_metadata`` keys)."""
    fields = {key: metadata.get(f"patient_{key}") for key in DEFAULT_PATIENT}
    return {key: value for key, value in fields.items() if value is not None}


def slice_geometry_lps(volume: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row and column cosines (LPS) and the LPS positions of voxel (0, 0, k) for every k."""
    ijk_to_lps = LPS_TO_RAS @ volume.ijk_to_ras
    direction_lps = ijk_to_lps[:3, :3] / volume.spacing_mm
    row_lps, column_lps, slice_lps = direction_lps.T
    if abs(abs(np.dot(np.cross(row_lps, column_lps), slice_lps)) - 1.0) > 1e-6:
        raise ValueError("the volume's k axis is not perpendicular to its slices (sheared grid); "
                         "resample it before writing DICOM")
    n_slices = volume.array_kji.shape[0]
    positions_lps = ijk_to_lps[:3, 3] + np.outer(np.arange(n_slices), ijk_to_lps[:3, 2])
    return row_lps, column_lps, positions_lps


def _stored_values(array_kji: np.ndarray) -> np.ndarray:
    """HU rounded to integers, shifted by the rescale intercept, as signed 16-bit."""
    stored = np.rint(np.asarray(array_kji, dtype=float)) - RESCALE_INTERCEPT_HU
    info = np.iinfo(np.int16)
    if stored.size and (stored.min() < info.min or stored.max() > info.max):
        raise ValueError(
            f"HU values must lie in [{info.min + RESCALE_INTERCEPT_HU:.0f}, "
            f"{info.max + RESCALE_INTERCEPT_HU:.0f}] to be stored as 16-bit DICOM")
    return stored.astype(np.int16)


def _series_dataset(volume: Volume, patient: dict, uids: dict, *, series_description: str,
                    study_description: str,
                    kvp, mas, convolution_kernel, slice_thickness_mm: float, study_date: str,
                    series_number: int) -> Dataset:
    """The attributes shared by every slice of the series."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = "BoneQCT"
    ds.ManufacturerModelName = "digital phantom"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description
    ds.PatientName = patient["name"]
    ds.PatientID = patient["id"]
    ds.PatientBirthDate = _dicom_date(patient["birth_date"])
    ds.PatientSex = patient["sex"]
    ds.PatientIdentityRemoved = "YES"
    ds.BodyPartExamined = "LSPINE"
    ds.SliceThickness = f"{slice_thickness_mm:.6g}"
    ds.KVP = "" if kvp is None else f"{float(kvp):.6g}"
    if mas is not None:
        ds.ExposureTime = "1000"  # ms: one second, so the tube current in mA equals the mAs
        ds.XRayTubeCurrent = round(float(mas))
        ds.Exposure = round(float(mas))
    if convolution_kernel is not None:
        ds.ConvolutionKernel = str(convolution_kernel)
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.FrameOfReferenceUID = uids["frame_of_reference"]
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.PositionReferenceIndicator = ""
    ds.SpacingBetweenSlices = f"{volume.spacing_mm[2]:.6g}"
    ds.PixelSpacing = [f"{volume.spacing_mm[1]:.6g}", f"{volume.spacing_mm[0]:.6g}"]
    ds.RescaleIntercept = f"{RESCALE_INTERCEPT_HU:.0f}"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.BurnedInAnnotation = "NO"
    return ds


def write_dicom_series(
    volume: Volume,
    out_dir: str | Path,
    *,
    patient: dict | None = None,
    series_description: str = "BoneQCT digital phantom",
    transfer_syntax: str = "explicit-le",
    study_uid: str | None = None,
    series_uid: str | None = None,
    uid_seed: str | None = None,
    kvp: float | None = None,
    mas: float | None = None,
    convolution_kernel: str | None = None,
    slice_thickness_mm: float | None = None,
    study_date: str | None = None,
    series_number: int = 1,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``volume`` (HU) as a CT Image Storage series, one file per k slice.

    Args:
        volume: HU volume; values are rounded to integers and must fit 16-bit storage.
        out_dir: folder for the files ``CT00001.dcm`` ... (created if missing).
        patient: ``name``, ``id``, ``sex``, ``birth_date`` (YYYYMMDD); missing keys come from
            ``volume.metadata`` (``patient_name``, ``patient_id``, ``patient_sex``,
            ``patient_birth_date``), then ``DEFAULT_PATIENT`` (synthetic, anonymous).
        series_description: SeriesDescription.
        transfer_syntax: "explicit-le" (uncompressed), "jpeg2000-lossless" (pylibjpeg-openjpeg,
            which always uses 6 wavelet resolutions, so slices need at least 32 rows and
            columns) or "rle" (pydicom's encoder; GDCM, hence SimpleITK, cannot decode RLE
            slices with an odd number of pixels, which pydicom reads fine).
        study_uid, series_uid: UIDs to use; generated when None.
        uid_seed: when given, every generated UID is derived from it (reproducible series).
        kvp, mas, convolution_kernel, slice_thickness_mm: acquisition values (kV, mAs, kernel
            name, mm); None takes ``volume.metadata`` keys ``kvp``, ``exposure_mas``,
            ``convolution_kernel``, ``slice_thickness_mm`` (thickness defaults to the spacing).
        study_date: YYYYMMDD or YYYY-MM-DD; default ``volume.metadata["study_date"]``, else
            20250101.
        series_number: SeriesNumber.
        overwrite: delete ``*.dcm`` files already in ``out_dir`` first; otherwise such files
            raise ``FileExistsError`` (two series in one folder confuse readers).

    Returns:
        The written file paths, in k order.
    """
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"transfer_syntax must be one of {sorted(TRANSFER_SYNTAXES)}")
    if transfer_syntax == "jpeg2000-lossless" and min(volume.array_kji.shape[1:]) < 32:
        raise ValueError("JPEG 2000 encoding needs slices of at least 32 x 32 pixels")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(out_dir.glob("*.dcm"))
    if existing and not overwrite:
        raise FileExistsError(f"{out_dir} already holds DICOM files; pass overwrite=True or "
                              "choose an empty folder")
    for path in existing:
        path.unlink()
    metadata = volume.metadata
    patient = {**DEFAULT_PATIENT, **_patient_from_metadata(metadata), **(patient or {})}
    uids = {
        "study": study_uid or _uid(uid_seed, "study"),
        "series": series_uid or _uid(uid_seed, "series"),
        "frame_of_reference": _uid(uid_seed, "frame-of-reference"),
    }
    spacing_mm = volume.spacing_mm
    shared = _series_dataset(
        volume, patient, uids, series_description=series_description,
        study_description=metadata.get("study_description") or "BoneQCT synthetic study",
        kvp=kvp if kvp is not None else metadata.get("kvp"),
        mas=mas if mas is not None else metadata.get("exposure_mas"),
        convolution_kernel=convolution_kernel or metadata.get("convolution_kernel"),
        slice_thickness_mm=float(slice_thickness_mm or metadata.get("slice_thickness_mm")
                                 or spacing_mm[2]),
        study_date=_dicom_date(study_date or metadata.get("study_date") or DEFAULT_STUDY_DATE),
        series_number=series_number,
    )
    row_lps, column_lps, positions_lps = slice_geometry_lps(volume)
    stored = _stored_values(volume.array_kji)
    normal_lps = np.cross(row_lps, column_lps)
    syntax_uid = TRANSFER_SYNTAXES[transfer_syntax]
    paths = []
    for k, position_lps in enumerate(positions_lps):
        ds = Dataset()
        ds.update(shared)
        instance_uid = _uid(uid_seed, "instance", uids["series"], k)
        ds.SOPInstanceUID = instance_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{c:.6f}" for c in position_lps]
        ds.ImageOrientationPatient = [f"{c:.8f}" for c in (*row_lps, *column_lps)]
        ds.SliceLocation = f"{float(np.dot(position_lps, normal_lps)):.6f}"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = instance_uid
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.set_pixel_data(stored[k], "MONOCHROME2", 16, generate_instance_uid=False)
        if syntax_uid != ExplicitVRLittleEndian:
            ds.compress(syntax_uid, stored[k], generate_instance_uid=False)
        path = out_dir / f"CT{k + 1:05d}.dcm"
        with atomic_path(path) as tmp:  # never a half-written slice under its name
            ds.save_as(tmp, enforce_file_format=True)
        paths.append(path)
    return paths
