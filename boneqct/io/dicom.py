"""DICOM CT series input: discovery, validation, slice order, HU, geometry and exam metadata.

Slices are ordered by their position along the slice normal (never by InstanceNumber). The
voxel order of the files is kept: i = column, j = row, k = slice along the normal
(row cosine x column cosine), as SimpleITK and Slicer do. Geometry is built in LPS from
ImageOrientationPatient / ImagePositionPatient / PixelSpacing and handed to the core in RAS.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings as pywarnings
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from boneqct.errors import InputError
from boneqct.io.images import (
    TILT_TOLERANCE_DEG,
    is_regular_file,
    resample_sheared,
    tilt_deg_of,
)
from boneqct.resources import check_dicom_buffer
from boneqct.volume import LPS_TO_RAS, Volume

#: Largest allowed gap between neighbouring slices, as a multiple of the median spacing.
MAX_GAP_FACTOR = 1.5
#: Slice-spacing irregularity (relative) above which a warning is given.
SPACING_WARN_FRACTION = 0.01
#: Tolerances for "the same" orientation cosines and pixel spacing across slices.
ORIENTATION_TOLERANCE = 1e-3
SPACING_TOLERANCE_MM = 1e-3

# Header ranges: a value outside is a damaged header, refused (InputError) before any pixel
# is read, so that no impossible geometry or rescale yields numbers.
#: Pixel spacing (mm): 0.001 mm is the finest lab micro-CT voxel (and the volume-file reader's
#: floor); 20 mm is 7x the coarsest CT pixel (a 700 mm field of view on 256 pixels, 2.7 mm).
PIXEL_SPACING_RANGE_MM = (1e-3, 20.0)
#: Smallest image side (pixels): a one-pixel side is a line, not an image; how large a field
#: the analyses need is theirs to check (the test fixtures use 5-pixel sides, real CT 512).
MIN_IMAGE_SIDE_PIXELS = 2
#: Largest departure of a direction cosine's length from 1 taken as rounding (and normalised
#: away): 10x what cosines rounded to 3 decimals show; beyond, the value is not a cosine.
COSINE_LENGTH_TOLERANCE = 0.01
#: Largest |row cosine . column cosine| (after normalisation), 1e-3 = 0.057 degrees off a right
#: angle, as the volume-file reader allows (so a volume read from DICOM and written out reads
#: back): cosines rounded to 4 or more decimals stay below it, and a CT image plane is never
#: sheared (a gantry tilt tilts the slice direction; rows and columns stay perpendicular).
ORTHOGONALITY_TOLERANCE = 1e-3
#: Largest |ImagePositionPatient| (mm), as the volume-file reader allows: 1 km from the
#: scanner's origin, where table positions are at most a few metres.
MAX_ABS_POSITION_MM = 1e6
#: RescaleSlope (HU per stored unit): below 0.01, 16-bit stored values span under 656 HU,
#: less than air to bone (about 1300 HU); above 100, one stored step is coarser than the
#: trabecular bone range a QCT measures (scanners write 1, rarely 0.5 to 2).
RESCALE_SLOPE_RANGE = (0.01, 100.0)

_CT_IMAGE_STORAGE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
}
_ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
#: The DICOMDIR index of a CD/USB file-set (PS3.10: Media Storage Directory Storage, in a file
#: named DICOMDIR at the file-set's root); it holds no image, the images lie beside it.
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
DICOMDIR_NAME = "DICOMDIR"
_UNCOMPRESSED_SYNTAXES = {
    pydicom.uid.ImplicitVRLittleEndian,
    pydicom.uid.ExplicitVRLittleEndian,
}


@dataclass
class SeriesInfo:
    """One series found in a folder: what a user needs to choose it."""

    series_uid: str
    modality: str
    description: str
    orientation: str
    datasets: list = field(repr=False)

    @property
    def n_slices(self) -> int:
        return len(self.datasets)

    def summary(self) -> dict:
        """JSON-ready description (no patient identity)."""
        return {
            "series_uid": self.series_uid,
            "modality": self.modality,
            "description": self.description,
            "n_slices": self.n_slices,
            "orientation": self.orientation,
        }


def find_series(source: str | Path | list) -> list[SeriesInfo]:
    """Read the DICOM headers under a folder (recursively) or in a list of files, by series.

    Files that are not DICOM are skipped; DICOM files that cannot be parsed raise InputError.
    Pixel data is not read here (deferred). Series are sorted largest first.
    """
    files = _list_files(source)
    by_uid: dict[str, list] = {}
    for path in files:
        ds = _read_header(path)
        if ds is None or "PixelData" not in ds:
            continue
        by_uid.setdefault(str(ds.get("SeriesInstanceUID", "unknown")), []).append(ds)
    if not by_uid:
        raise InputError(
            "No DICOM image files were found in the input. Point BoneQCT at the folder that "
            "holds the CT series (or its files), or at a NIfTI/NRRD/MHA volume."
        )
    series = [
        SeriesInfo(uid, str(dsets[0].get("Modality", "")),
                   str(dsets[0].get("SeriesDescription", "")), _orientation_name(dsets[0]), dsets)
        for uid, dsets in by_uid.items()
    ]
    return sorted(series, key=lambda s: -s.n_slices)


def load_dicom_series(source: str | Path | list, series_uid: str | None = None,
                      max_memory_gb: float | None = None) -> Volume:
    """Load one CT series as a Volume in HU.

    Args:
        source: a folder (searched recursively; a DICOMDIR index in it is skipped, the images
            are found by the search) or a list of files of one series.
        series_uid: the SeriesInstanceUID to take when the folder holds several series;
            by default the largest axial CT series is taken, and a warning says which.
        max_memory_gb: limit (GB) on the pixel buffer, checked from the headers before any
            pixel is read; None takes ``boneqct.resources.memory_limit_gb()``.
    """
    from_file_list = isinstance(source, (list, tuple))
    series = find_series(source)
    warnings: list[str] = []
    if from_file_list and len(series) > 1:
        raise InputError(
            f"The files given belong to {len(series)} different series (mixed series). Give "
            "the files of one series only, or give the folder and choose a series with --series."
        )
    chosen = _choose_series(series, series_uid, warnings)
    if chosen.modality != "CT":
        raise InputError(
            f"The series is of modality '{chosen.modality or 'unknown'}', not CT. BoneQCT "
            "measures bone density from CT Hounsfield units only; choose a CT series."
        )
    if any(str(ds.get("SOPClassUID", "")) == _ENHANCED_CT for ds in chosen.datasets):
        raise InputError(
            "The series is an Enhanced (multi-frame) CT object, which BoneQCT does not read yet. "
            "Export the series from the scanner or PACS as classic CT Image Storage, one file "
            "per slice, or convert it to NIfTI."
        )
    datasets = chosen.datasets
    if len(datasets) < 2:
        raise InputError(
            "The series holds a single 2D image; BoneQCT needs a 3D volume. "
            "Load the whole series (all slices)."
        )
    geometry = _slice_geometry(datasets)
    order = np.argsort(geometry.positions_along_normal_mm)
    datasets = [datasets[i] for i in order]
    positions_lps_mm = geometry.positions_lps_mm[order]
    along_mm = geometry.positions_along_normal_mm[order]
    step_mm = _check_slice_spacing(along_mm, warnings)
    slice_step_lps = (positions_lps_mm[-1] - positions_lps_mm[0]) / (len(datasets) - 1)
    tilt_deg = tilt_deg_of(slice_step_lps, geometry.normal_lps)
    check_dicom_buffer(int(datasets[0].Rows), int(datasets[0].Columns), len(datasets),
                       tilt_deg > TILT_TOLERANCE_DEG, max_memory_gb)
    _check_pixel_module(datasets)

    array_kji = _stack_hu(datasets, warnings)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, 0] = geometry.row_cosine_lps * geometry.column_spacing_mm
    ijk_to_lps[:3, 1] = geometry.column_cosine_lps * geometry.row_spacing_mm
    ijk_to_lps[:3, 3] = positions_lps_mm[0]
    metadata = exam_metadata(datasets[0])
    metadata["gantry_tilt_deg"] = round(tilt_deg, 3)
    if tilt_deg > TILT_TOLERANCE_DEG:
        ijk_to_lps[:3, 2] = slice_step_lps
        array_kji, ijk_to_lps, warning = resample_sheared(array_kji, ijk_to_lps,
                                                          geometry.normal_lps)
        warnings.append(warning)
    else:
        ijk_to_lps[:3, 2] = geometry.normal_lps * step_mm
    metadata["source_format"] = "dicom"
    return Volume(array_kji, LPS_TO_RAS @ ijk_to_lps, metadata, warnings)


def exam_metadata(ds) -> dict:
    """Exam metadata a report needs, from one slice's header (identity included: reports only)."""
    def text(keyword: str) -> str | None:
        value = ds.get(keyword)
        if value in (None, ""):
            return None
        if isinstance(value, pydicom.multival.MultiValue):
            return "\\".join(str(v) for v in value)
        return str(value)

    def number(keyword: str) -> float | None:  # None unless a finite number (JSON has no NaN)
        try:
            value = float(ds.get(keyword))
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) else None

    birth = _iso_date(text("PatientBirthDate"))
    study = _iso_date(text("StudyDate"))
    exposure_mas = number("Exposure")
    if exposure_mas is None and number("XRayTubeCurrent") and number("ExposureTime"):
        exposure_mas = number("XRayTubeCurrent") * number("ExposureTime") / 1000.0
    try:
        spacing = [float(v) for v in ds.get("PixelSpacing")]
    except (TypeError, ValueError):
        spacing = None
    if spacing is not None and not all(math.isfinite(v) for v in spacing):
        spacing = None
    return {
        "patient_name": text("PatientName"),
        "patient_id": text("PatientID"),
        "patient_sex": text("PatientSex"),
        "patient_birth_date": birth,
        "patient_age_years": _age_years(text("PatientAge"), birth, study),
        "study_date": study,
        "study_description": text("StudyDescription"),
        "series_description": text("SeriesDescription"),
        "manufacturer": text("Manufacturer"),
        "model": text("ManufacturerModelName"),
        "station_name": text("StationName"),
        "device_serial_number": text("DeviceSerialNumber"),
        "institution": text("InstitutionName"),
        "modality": text("Modality"),
        "kvp": number("KVP"),
        "exposure_mas": exposure_mas,
        "tube_current_ma": number("XRayTubeCurrent"),
        "slice_thickness_mm": number("SliceThickness"),
        "pixel_spacing_mm": spacing,
        "convolution_kernel": text("ConvolutionKernel"),
        "series_uid": text("SeriesInstanceUID"),
        "study_uid": text("StudyInstanceUID"),
    }


#: Metadata keys that identify the patient; dropped by anonymised output.
#: The anonymisation profile of ``--anonymize``, modelled on the DICOM PS3.15 Annex E Basic
#: Application Level Confidentiality Profile with its Retain Patient Characteristics Option
#: (sex and age kept); the attribute list follows the profile's actions as recalled (remove
#: names, IDs, birth date, institution, station, device serial, descriptions and dates;
#: replace UIDs), not checked line by line against the standard's table.
ANONYMIZATION_PROFILE = ("BoneQCT basic: after DICOM PS3.15 Basic Application Level "
                         "Confidentiality Profile, Retain Patient Characteristics Option")
#: Exam metadata removed by the profile.
IDENTITY_KEYS = ("patient_name", "patient_id", "patient_birth_date", "institution",
                 "study_description", "series_description", "station_name",
                 "device_serial_number", "study_date")
#: Exam metadata replaced by the profile: UIDs, by hashed UIDs (2.25 root, ITU-T X.667),
#: consistent across BoneQCT outputs so that one series is still recognised as one.
REPLACED_UID_KEYS = ("study_uid", "series_uid")


def hashed_uid(uid: str) -> str:
    """A replacement UID: 2.25 followed by 128 bits of the SHA-256 of the original."""
    return "2.25." + str(int(hashlib.sha256(uid.encode("utf-8")).hexdigest()[:32], 16))


def anonymized_metadata(metadata: dict) -> dict:
    """A copy of exam metadata under ``ANONYMIZATION_PROFILE``: identifying fields removed,
    UIDs replaced by hashed UIDs; sex, age, scanner make and model and the acquisition kept;
    the profile and what it did are recorded under ``anonymization``."""
    out = {k: v for k, v in metadata.items() if k not in IDENTITY_KEYS}
    for key in REPLACED_UID_KEYS:
        if out.get(key):
            out[key] = hashed_uid(str(out[key]))
    out["anonymization"] = {"profile": ANONYMIZATION_PROFILE, "removed": list(IDENTITY_KEYS),
                            "replaced": list(REPLACED_UID_KEYS)}
    return out


def scrub_identity(text: str, metadata: dict) -> str:
    """``text`` with every identifying value of ``metadata`` (the removed fields and the UIDs)
    replaced by "[removed]", for messages printed under ``--anonymize``."""
    for key in IDENTITY_KEYS + REPLACED_UID_KEYS:
        value = metadata.get(key)
        if value is not None and len(str(value)) >= 3:
            text = text.replace(str(value), "[removed]")
    return text


# ---------------------------------------------------------------------------------------------
# internals


@dataclass
class _Geometry:
    row_cosine_lps: np.ndarray
    column_cosine_lps: np.ndarray
    normal_lps: np.ndarray
    row_spacing_mm: float
    column_spacing_mm: float
    positions_lps_mm: np.ndarray
    positions_along_normal_mm: np.ndarray


def _is_dicomdir(path: Path) -> bool:
    """True for a file-set's DICOMDIR index, by its standard name: it is skipped unread, so a
    damaged index never blocks the images beside it."""
    return path.name.upper() == DICOMDIR_NAME


def _list_files(source) -> list[Path]:
    if isinstance(source, (list, tuple)):
        files = [Path(p) for p in source if not _is_dicomdir(Path(p))]
        missing = [p.name for p in files if not is_regular_file(p)]
        if missing:
            raise InputError(
                f"{len(missing)} of the files given do not exist or are not regular files "
                f"(first: '{missing[0]}'). Check the file list."
            )
        return files
    folder = Path(source)
    if not folder.is_dir():
        raise InputError(f"'{folder.name}' is neither a folder nor a volume file BoneQCT reads.")
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        # regular files only: a FIFO, socket or device would block or mislead the reader,
        # and a dangling link holds nothing; a DICOMDIR indexes images the walk finds anyway
        files.extend(Path(root) / n for n in sorted(names)
                     if not n.startswith(".") and not _is_dicomdir(Path(n))
                     and is_regular_file(Path(root) / n))
    return files


def _read_header(path: Path):
    """Parse a file's header with pixel data deferred; None when the file is not DICOM.

    A file that has the DICOM preamble but ends early or holds no SOP class is damaged.
    """
    try:
        with pywarnings.catch_warnings(record=True) as caught:
            pywarnings.simplefilter("always")
            ds = pydicom.dcmread(path, defer_size="256 KB")
        if str(ds.file_meta.get("MediaStorageSOPClassUID", "")) == _MEDIA_STORAGE_DIRECTORY:
            return None  # a DICOMDIR index under another name: no image
        ended_early = any("End of file reached" in str(w.message) for w in caught)
        if ended_early or "SOPClassUID" not in ds:
            raise _corrupt(path)
        return ds
    except InvalidDicomError:
        if _has_dicom_preamble(path):
            raise _corrupt(path) from None
        return None
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - any parser failure means a damaged file
        raise _corrupt(path) from None


def _has_dicom_preamble(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(128)
        return f.read(4) == b"DICM"


def _corrupt(path: Path) -> InputError:
    return InputError(
        f"The DICOM file '{path.name}' is truncated or corrupt and cannot be read. Re-export "
        "the series from the scanner or PACS, or remove that file if it is not part of the scan."
    )


def _orientation_name(ds) -> str:
    try:
        iop = np.array([float(v) for v in ds.get("ImageOrientationPatient")], float)
    except (TypeError, ValueError):
        return "unknown"
    if iop.size != 6 or not np.all(np.isfinite(iop)):
        return "unknown"
    normal = np.abs(np.cross(iop[:3], iop[3:]))
    axis = int(np.argmax(normal))
    if normal[axis] < 0.9:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _choose_series(series: list[SeriesInfo], series_uid: str | None, warnings: list[str]):
    if series_uid is not None:
        for s in series:
            if s.series_uid == series_uid:
                return s
        listing = "; ".join(
            f"{s.series_uid} ({s.modality}, {s.n_slices} slices, '{s.description}')" for s in series
        )
        raise InputError(
            f"Series {series_uid} is not in the input. The series found are: {listing}."
        )
    if len(series) == 1:
        return series[0]
    ct_axial = [s for s in series if s.modality == "CT" and s.orientation == "axial"]
    chosen = (ct_axial or [s for s in series if s.modality == "CT"] or series)[0]
    others = ", ".join(f"{s.series_uid} ({s.modality}, {s.n_slices} slices)"
                       for s in series if s is not chosen)
    warnings.append(
        f"The input holds {len(series)} series; using {chosen.series_uid} ('{chosen.description}', "
        f"{chosen.modality}, {chosen.n_slices} slices, the largest axial CT series). Others: "
        f"{others}. Choose another with --series UID."
    )
    return chosen


def _shown(value) -> str:
    """A header value as text for a message (multi-values joined by backslashes, shortened)."""
    if isinstance(value, (pydicom.multival.MultiValue, list, tuple)):
        value = "\\".join(str(v) for v in value)
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _damaged(keyword: str, value, n_bad: int, n_files: int, why: str) -> InputError:
    """The refusal of a damaged header value: the tag, its value, why, what to do."""
    where = "every file" if n_bad == n_files else f"{n_bad} of {n_files} files"
    return InputError(
        f"The series' {keyword} is '{_shown(value)}' (in {where}): {why}, so the DICOM header is "
        "damaged. Re-export the series from the scanner or PACS.")


def _missing_geometry() -> InputError:
    return InputError(
        "Some slices lack ImageOrientationPatient, ImagePositionPatient, PixelSpacing or "
        "image size, so the volume's geometry is unknown. Re-export the series with its "
        "geometry, or convert it to NIfTI with a tool that knows it."
    )


def _header_numbers(datasets, keyword: str, count: int, what: str) -> np.ndarray:
    """Every slice's ``keyword`` as an (n slices, count) array of finite numbers.

    InputError when a slice lacks the tag (geometry unknown) or its value is not ``count``
    finite numbers (the message names the tag and the value).
    """
    rows, bad = [], []
    for ds in datasets:
        try:
            value = ds.get(keyword)
        except Exception:  # noqa: BLE001 - a value pydicom cannot convert
            value = "(unreadable)"
        if value is None or (isinstance(value, str) and value == ""):
            raise _missing_geometry()
        items = list(value) if isinstance(value, (pydicom.multival.MultiValue, list, tuple)) \
            else [value]
        try:
            numbers = [float(v) for v in items]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
            bad.append(value)
            numbers = [0.0] * count
        rows.append(numbers)
    if bad:
        raise _damaged(keyword, bad[0], len(bad), len(datasets),
                       f"it must be {count} finite numbers ({what})")
    return np.array(rows, float)


def _slice_geometry(datasets) -> _Geometry:
    iop = _header_numbers(datasets, "ImageOrientationPatient", 6,
                          "the row and the column direction cosines")
    ipp = _header_numbers(datasets, "ImagePositionPatient", 3, "x, y, z in mm")
    spacing = _header_numbers(datasets, "PixelSpacing", 2, "row and column spacing in mm")
    try:
        shapes = {(int(ds.Rows), int(ds.Columns)) for ds in datasets}
    except (AttributeError, TypeError, ValueError):
        raise _missing_geometry() from None
    n = len(datasets)
    low, high = PIXEL_SPACING_RANGE_MM
    out_of_range = [k for k in range(n) if not np.all((spacing[k] >= low) & (spacing[k] <= high))]
    if out_of_range:
        raise _damaged("PixelSpacing", datasets[out_of_range[0]].PixelSpacing, len(out_of_range),
                       n, f"a CT pixel spacing lies between {low:g} and {high:g} mm (a negative "
                       "spacing would mirror the image)")
    far = [k for k in range(n) if np.abs(ipp[k]).max() > MAX_ABS_POSITION_MM]
    if far:
        raise _damaged("ImagePositionPatient", datasets[far[0]].ImagePositionPatient, len(far), n,
                       f"a slice position must lie within {MAX_ABS_POSITION_MM:g} mm of the "
                       "scanner's origin")
    norms = np.linalg.norm(iop.reshape(n, 2, 3), axis=2)
    not_unit = [k for k in range(n) if np.abs(norms[k] - 1.0).max() > COSINE_LENGTH_TOLERANCE]
    if not_unit:
        k = not_unit[0]
        raise _damaged("ImageOrientationPatient", datasets[k].ImageOrientationPatient,
                       len(not_unit), n,
                       f"its row and column direction cosines have lengths "
                       f"{norms[k, 0]:.3g} and {norms[k, 1]:.3g}, not 1")
    cosines = iop.reshape(n, 2, 3) / norms[:, :, None]
    dots = np.abs(np.einsum("ni,ni->n", cosines[:, 0], cosines[:, 1]))
    sheared = np.flatnonzero(dots > ORTHOGONALITY_TOLERANCE)
    if sheared.size:
        k = int(sheared[0])
        angle = float(np.degrees(np.arccos(np.clip(cosines[k, 0] @ cosines[k, 1], -1, 1))))
        raise _damaged("ImageOrientationPatient", datasets[k].ImageOrientationPatient,
                       sheared.size, n,
                       f"its row and column directions are {angle:.1f} degrees apart, not 90; "
                       "the rows and columns of a CT image are perpendicular (a gantry tilt "
                       "tilts the slice direction, not the image plane)")
    if np.abs(iop - iop[0]).max() > ORIENTATION_TOLERANCE:
        raise InputError(
            "The slices of the series have different orientations (ImageOrientationPatient), so "
            "they do not form one volume (a localizer or a reformat mixed in?). Choose a series "
            "of parallel axial slices."
        )
    if np.abs(spacing - spacing[0]).max() > SPACING_TOLERANCE_MM or len(shapes) != 1:
        raise InputError(
            "The slices of the series have different pixel spacings or image sizes, so they do "
            "not form one volume. Choose a series reconstructed with one field of view."
        )
    row_cosine, column_cosine = cosines[0]
    normal = np.cross(row_cosine, column_cosine)
    normal /= np.linalg.norm(normal)
    return _Geometry(row_cosine, column_cosine, normal, float(spacing[0, 0]),
                     float(spacing[0, 1]), ipp, ipp @ normal)


def _check_slice_spacing(along_mm: np.ndarray, warnings: list[str]) -> float:
    """Median slice step (mm); errors for duplicate slices and gaps, warns if irregular."""
    steps_mm = np.diff(along_mm)
    if steps_mm.min() < SPACING_TOLERANCE_MM:
        raise InputError(
            "Two or more slices of the series lie at the same position (duplicate slices or two "
            "acquisitions in one series). Choose a series with one slice per position."
        )
    median_mm = float(np.median(steps_mm))
    gaps = np.flatnonzero(steps_mm > MAX_GAP_FACTOR * median_mm)
    if gaps.size:
        k = int(gaps[0])
        raise InputError(
            f"The series has missing slices: {gaps.size} gap(s), the first between slices {k} "
            f"and {k + 1} ({steps_mm[k]:.2f} mm against a median spacing of {median_mm:.2f} mm). "
            "Re-export the complete series."
        )
    irregular = float(np.abs(steps_mm - median_mm).max() / median_mm)
    if irregular > SPACING_WARN_FRACTION:
        warnings.append(
            f"Slice spacing varies by up to {100 * irregular:.1f}% around {median_mm:.3f} mm; "
            "the volume uses the mean spacing."
        )
    return float((along_mm[-1] - along_mm[0]) / (len(along_mm) - 1))


#: Largest |RescaleIntercept| (HU) taken as a CT rescale: CT numbers span about -1024 to
#: +3071 (12-bit) or a few times that for extended scales; far beyond is a corrupt value.
MAX_ABS_RESCALE_INTERCEPT_HU = 100000.0


def _rescale(datasets, warnings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice RescaleSlope and RescaleIntercept, checked: numbers, slope in RESCALE_SLOPE_RANGE,
    |intercept| <= MAX_ABS_RESCALE_INTERCEPT_HU. Without them the stored values are taken as
    HU with a warning; InputError when the stored values cannot be HU (all >= 0: raw
    detector-style values whose -1024 offset is missing)."""
    values = {}
    for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        numbers, bad = [], []
        for ds in datasets:
            try:
                numbers.append(float(ds.get(keyword, default)))
            except (TypeError, ValueError):
                bad.append(ds.get(keyword))
        if bad:
            raise _damaged(keyword, bad[0], len(bad), len(datasets),
                           "it is not a number, so the CT numbers cannot be recovered")
        values[keyword] = np.array(numbers, float)
    slopes, intercepts = values["RescaleSlope"], values["RescaleIntercept"]
    low, high = RESCALE_SLOPE_RANGE
    bad_slope = np.flatnonzero(~((slopes >= low) & (slopes <= high)))  # NaN included
    if bad_slope.size:
        raise _damaged("RescaleSlope", datasets[int(bad_slope[0])].get("RescaleSlope"),
                       bad_slope.size, len(datasets),
                       f"that is not a CT rescale (a CT's slope lies between {low:g} and "
                       f"{high:g} HU per stored unit)")
    bad_intercept = np.flatnonzero(~(np.abs(intercepts) <= MAX_ABS_RESCALE_INTERCEPT_HU))
    if bad_intercept.size:
        raise _damaged("RescaleIntercept",
                       datasets[int(bad_intercept[0])].get("RescaleIntercept"),
                       bad_intercept.size, len(datasets),
                       "that is not a CT rescale (a CT's intercept lies within "
                       f"+-{MAX_ABS_RESCALE_INTERCEPT_HU:g} HU)")
    if not any("RescaleSlope" in ds or "RescaleIntercept" in ds for ds in datasets):
        if int(datasets[0].get("PixelRepresentation", 0)) == 0:
            raise InputError("The series has no RescaleSlope/RescaleIntercept and unsigned "
                             "stored values, which cannot be HU (air would not be negative). "
                             "Re-export the series with its rescale.")
        warnings.append("The series has no RescaleSlope/RescaleIntercept: its stored values are "
                        "taken as HU (slope 1, intercept 0). Check air reads about -1000 HU.")
    return slopes, intercepts


def _int_tag(ds, keyword: str, default: int | None = None) -> int | None:
    """An integer tag's value; None when it is absent (and no default) or not an integer."""
    try:
        value = ds.get(keyword, default)
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _check_pixel_module(datasets) -> None:
    """Refuse image pixel descriptions that cannot be read as the header says, before any pixel
    is read: a side below MIN_IMAGE_SIDE_PIXELS, PixelRepresentation other than 0 or 1,
    BitsStored outside 1..BitsAllocated, and (uncompressed files) pixel data whose length is
    not Rows x Columns x BitsAllocated / 8 (a damaged Rows or Columns, or a truncated file)."""
    n = len(datasets)
    rows, columns = int(datasets[0].Rows), int(datasets[0].Columns)
    if min(rows, columns) < MIN_IMAGE_SIDE_PIXELS:
        keyword = "Rows" if rows < MIN_IMAGE_SIDE_PIXELS else "Columns"
        raise _damaged(keyword, min(rows, columns), n, n,
                       f"a CT image has at least {MIN_IMAGE_SIDE_PIXELS} pixels a side")
    checks = [
        ("PixelRepresentation", lambda ds: _int_tag(ds, "PixelRepresentation", 0) in (0, 1),
         "it must be 0 (unsigned) or 1 (signed)"),
        ("BitsAllocated", lambda ds: (_int_tag(ds, "BitsAllocated") or 0) in (8, 16, 32),
         "a CT image allocates 16 bits a pixel (8 or 32 are read too)"),
        ("BitsStored", lambda ds: 1 <= (_int_tag(ds, "BitsStored", 16) or 0)
         <= _int_tag(ds, "BitsAllocated"),
         f"it must lie between 1 and BitsAllocated ({_shown(datasets[0].get('BitsAllocated'))})"),
        ("SamplesPerPixel", lambda ds: _int_tag(ds, "SamplesPerPixel", 1) == 1,
         "a CT image is grey-scale, one sample a pixel (colour or damaged?)"),
    ]
    for keyword, valid, why in checks:
        bad = [ds for ds in datasets if not valid(ds)]
        if bad:
            raise _damaged(keyword, bad[0].get(keyword, "(missing)"), len(bad), n, why)
    for ds in datasets:
        syntax = pydicom.uid.UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
        if not syntax.is_transfer_syntax or syntax.is_compressed or "PixelData" not in ds:
            continue  # compressed: the decoder's image size is checked when it is read
        element = ds.get_item("PixelData")
        length = element.length if hasattr(element, "length") else len(element.value or b"")
        if length == 0xFFFFFFFF:  # undefined length: encapsulated, checked when decoded
            continue
        frames = _int_tag(ds, "NumberOfFrames", 1) or 1
        expected = (rows * columns * (_int_tag(ds, "SamplesPerPixel", 1) or 1) * frames
                    * int(ds.BitsAllocated) + 7) // 8
        if length not in (expected, expected + expected % 2):  # one pad byte to an even length
            raise InputError(
                f"The DICOM file '{Path(str(ds.filename)).name}' is truncated or corrupt: its "
                f"pixel data holds {length} bytes, but its header (Rows {rows}, Columns "
                f"{columns}, BitsAllocated {int(ds.BitsAllocated)}) describes {expected}. "
                "Re-export the series from the scanner or PACS, or remove that file if it is "
                "not part of the scan.")


def _stack_hu(datasets, warnings: list[str]) -> np.ndarray:
    """Stack the slices' pixels (in the given order) and apply RescaleSlope/Intercept -> HU
    (checked by ``_rescale``).

    Integer HU (slope 1, integer intercepts) that fit int16 stay int16, checked slice by slice
    while the slice is in cache; anything else is float32.
    """
    slopes, intercepts = _rescale(datasets, warnings)
    rows, columns = int(datasets[0].Rows), int(datasets[0].Columns)
    if np.all(slopes == 1.0) and np.all(intercepts == np.round(intercepts)):
        out = np.empty((len(datasets), rows, columns), np.int16)
        limits = np.iinfo(np.int16)
        for k, ds in enumerate(datasets):
            hu = np.add(_stored_pixels(ds, rows, columns), int(intercepts[k]), dtype=np.int32)
            if hu.min() < limits.min or hu.max() > limits.max:
                break
            out[k] = hu
        else:
            return out
    out = np.empty((len(datasets), rows, columns), np.float32)
    for k, ds in enumerate(datasets):
        out[k] = _stored_pixels(ds, rows, columns) * slopes[k] + intercepts[k]
    return out


def _stored_pixels(ds, rows: int, columns: int) -> np.ndarray:
    """The slice's stored values (before rescale) as a (rows, columns) array."""
    try:
        if (ds.file_meta.TransferSyntaxUID in _UNCOMPRESSED_SYNTAXES
                and int(ds.BitsAllocated) == 16 and int(ds.get("SamplesPerPixel", 1)) == 1):
            dtype = np.int16 if int(ds.PixelRepresentation) == 1 else np.uint16
            raw = ds.PixelData
            if len(raw) < rows * columns * 2:
                raise ValueError("short pixel data")
            stored = np.frombuffer(raw, dtype=dtype, count=rows * columns).reshape(rows, columns)
            bits_stored = int(ds.get("BitsStored", 16))
            if bits_stored < 16:  # drop bits above BitsStored; sign-extend signed values
                shift = 16 - bits_stored
                stored = (stored << shift) >> shift
            return stored
        stored = ds.pixel_array
    except Exception:  # noqa: BLE001 - any decoder failure means a damaged or unreadable file
        raise _corrupt(Path(str(ds.filename))) from None
    if stored.shape != (rows, columns):
        raise InputError(
            f"The DICOM file '{Path(str(ds.filename)).name}' does not hold one grey-scale image "
            f"of {rows} x {columns} pixels (colour or multi-frame?). Choose a CT series."
        )
    return stored


def _iso_date(value: str | None) -> str | None:
    if not value or len(value) < 8 or not value[:8].isdigit():
        return None
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}"


def _age_years(age_tag: str | None, birth_iso: str | None, study_iso: str | None):
    """Age in years from PatientAge ('065Y'), else from birth and study dates."""
    if age_tag and age_tag[:-1].isdigit():
        factor = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}.get(age_tag[-1].upper())
        if factor:
            return round(int(age_tag[:-1]) * factor, 2)
    if birth_iso and study_iso:
        born, seen = date.fromisoformat(birth_iso), date.fromisoformat(study_iso)
        return seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))
    return None
