"""``load_ct``: a CT in HU from whatever form a user has it in."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from boneqct.errors import InputError
from boneqct.io.dicom import DICOMDIR_NAME, load_dicom_series
from boneqct.io.images import (
    TILT_TOLERANCE_DEG,
    is_volume_file,
    read_volume_file,
    resample_sheared,
    tilt_deg_of,
)
from boneqct.volume import LPS_TO_RAS, Volume


def load_ct(source: str | Path | list, series_uid: str | None = None,
            max_memory_gb: float | None = None) -> Volume:
    """Load a CT volume in HU from a DICOM folder, a list of DICOM files or a volume file.

    Args:
        source: folder (searched recursively for DICOM), list of DICOM files, the DICOMDIR of
            a CD/USB export (its folder is searched), or a .nii/.nii.gz/.nrrd/.nhdr/.mha/.mhd
            file.
        series_uid: SeriesInstanceUID to take when a folder holds several series.
        max_memory_gb: limit (GB) on a DICOM series' pixel buffer, checked from its headers
            before the pixels are read; None takes ``boneqct.resources.memory_limit_gb()``.

    Raises:
        InputError: with a message naming the problem and what to do.
        boneqct.resources.ResourceError: the DICOM pixel buffer exceeds the memory limit.
    """
    if isinstance(source, (list, tuple)):
        volumes = [Path(p).name for p in source if is_volume_file(Path(p))]
        if volumes and len(source) > 1:
            raise InputError(
                f"{len(source)} inputs were given, and '{volumes[0]}' is a volume file "
                "(NIfTI/NRRD/MHA), which is read alone: give one volume file (a label map "
                "goes with --labels), or the DICOM files of one series.")
        return load_dicom_series([Path(p) for p in source], series_uid, max_memory_gb)
    path = Path(source)
    if not path.exists():
        raise InputError(f"The input '{path.name}' does not exist. Check the path.")
    if path.is_dir():
        return load_dicom_series(path, series_uid, max_memory_gb)
    if path.name.upper() == DICOMDIR_NAME:
        return load_dicom_series(path.parent, series_uid, max_memory_gb)
    if is_volume_file(path):
        return unsheared(read_volume_file(path))
    return load_dicom_series([path], series_uid, max_memory_gb)


def unsheared(volume: Volume) -> Volume:
    """A CT volume whose slices are not perpendicular to its image plane (a gantry tilt kept
    in an MHA/NRRD file's axes) resampled to an orthogonal grid, as a tilted DICOM series is:
    the outputs written on its grid (label maps through ITK) would otherwise be squared up
    by the writer and land 23-25 mm from what was measured (a 25 degree tilt)."""
    ijk_to_lps = LPS_TO_RAS @ volume.ijk_to_ras
    axes = ijk_to_lps[:3, :3] / volume.spacing_mm
    normal_lps = np.cross(axes[:, 0], axes[:, 1])
    normal_lps *= np.sign(normal_lps @ axes[:, 2]) / np.linalg.norm(normal_lps)
    tilt_deg = tilt_deg_of(axes[:, 2], normal_lps)
    if tilt_deg <= TILT_TOLERANCE_DEG:
        return volume
    array_kji, ijk_to_lps, warning = resample_sheared(volume.array_kji, ijk_to_lps, normal_lps)
    return Volume(array_kji, LPS_TO_RAS @ ijk_to_lps,
                  {**volume.metadata, "gantry_tilt_deg": round(tilt_deg, 3)},
                  [*volume.warnings, warning])
