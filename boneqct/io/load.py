"""``load_ct``: a CT in HU from whatever form a user has it in."""

from __future__ import annotations

from pathlib import Path

from boneqct.errors import InputError
from boneqct.io.dicom import DICOMDIR_NAME, load_dicom_series
from boneqct.io.images import is_volume_file, read_volume_file
from boneqct.volume import Volume


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
        return read_volume_file(path)
    return load_dicom_series([path], series_uid, max_memory_gb)
