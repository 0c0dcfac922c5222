"""Volume files (NIfTI, NRRD, MHA/MHD) through SimpleITK, and the one LPS <-> RAS crossing.

SimpleITK and the file formats describe geometry in LPS; the core works in RAS. The conversion
happens here and only here (``volume_from_sitk`` / ``volume_to_sitk``).
"""

from __future__ import annotations

import gzip
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from boneqct.errors import InputError
from boneqct.io.atomic import atomic_path
from boneqct.volume import LPS_TO_RAS, Volume

#: File endings read as single-file volumes.
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
#: File endings written (single-file formats only, so the atomic rename covers the data).
WRITE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")


def is_volume_file(path: Path) -> bool:
    """True when the file name ends like a NIfTI/NRRD/MetaImage volume."""
    name = path.name.lower()
    return any(name.endswith(s) for s in VOLUME_SUFFIXES)


def volume_from_sitk(image: sitk.Image, metadata: dict | None = None) -> Volume:
    """Wrap a SimpleITK image as a Volume (array KJI, IJK->RAS)."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"The image has {image.GetDimension()} dimensions and "
            f"{image.GetNumberOfComponentsPerPixel()} components per voxel; BoneQCT needs a "
            "single-component 3D volume. Export the CT as a 3D scalar volume."
        )
    direction_lps = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = direction_lps * np.array(image.GetSpacing(), dtype=float)
    ijk_to_lps[:3, 3] = image.GetOrigin()
    return Volume(sitk.GetArrayFromImage(image), LPS_TO_RAS @ ijk_to_lps, metadata or {})


def volume_to_sitk(volume: Volume) -> sitk.Image:
    """A SimpleITK image with the volume's voxels and geometry (LPS)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array_kji), isVector=False)
    ijk_to_lps = LPS_TO_RAS @ volume.ijk_to_ras
    spacing_mm = volume.spacing_mm
    image.SetSpacing(spacing_mm.tolist())
    image.SetDirection((ijk_to_lps[:3, :3] / spacing_mm).flatten().tolist())
    image.SetOrigin(ijk_to_lps[:3, 3].tolist())
    return image


def is_regular_file(path: Path) -> bool:
    """True for an existing regular file (links followed); False for a FIFO, socket, device,
    folder, dangling link or missing path, which a reader must not open."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _nifti_payload_problem(path: Path) -> str | None:
    """What is wrong with a NIfTI-1 file's voxel data that SimpleITK would hide (a truncated
    file read as zeros; NaN or infinite floats read as 0), or None. NIfTI-2 is not checked."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error):
        return "it is truncated or its compression is damaged"
    if len(raw) < 348:
        return "it is shorter than a NIfTI header"
    for order in ("<", ">"):
        if struct.unpack(order + "i", raw[:4])[0] == 348:
            break
    else:
        return None  # NIfTI-2 or not NIfTI: left to SimpleITK
    dims = struct.unpack(order + "8h", raw[40:56])
    datatype, bits = struct.unpack(order + "2h", raw[70:74])
    offset = int(struct.unpack(order + "f", raw[108:112])[0])
    n_voxels = int(np.prod([max(d, 1) for d in dims[1:1 + max(dims[0], 0)]], dtype=np.int64))
    n_bytes = n_voxels * max(bits, 8) // 8
    if len(raw) < offset + n_bytes:
        return (f"it holds {len(raw) - offset} of the {n_bytes} bytes of voxel data its header "
                "announces (truncated)")
    float_types = {16: "f4", 64: "f8"}
    if datatype in float_types:
        values = np.frombuffer(raw, order + float_types[datatype], n_voxels, offset)
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            return f"{bad} of its voxels are NaN or infinite"
    return None


def read_volume_file(path: str | Path) -> Volume:
    """Read a NIfTI, NRRD or MetaImage volume; voxel values as stored (scaled by the header).

    Refused (InputError): a path that is not a regular file, a truncated file, and voxels
    that are NaN or infinite (counted in the message).
    """
    path = Path(path)
    if not is_regular_file(path):
        raise InputError(f"'{path.name}' is not a regular file (missing, a dangling link, a "
                         "folder, a pipe or a device). Give the volume file itself.")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        problem = _nifti_payload_problem(path)
        if problem:
            raise InputError(f"Cannot use the volume file '{path.name}': {problem}. Re-export "
                             "it from the source.")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise InputError(
            f"Cannot read the volume file '{path.name}': it is truncated, corrupt or not in a "
            "format BoneQCT reads (NIfTI, NRRD, MHA/MHD). Re-export it from the source."
        ) from None
    if image.GetDimension() == 2 or (image.GetDimension() == 3 and min(image.GetSize()) == 1):
        raise InputError(
            f"'{path.name}' holds a single 2D image; BoneQCT needs a 3D CT volume. "
            "Load the whole series (all slices)."
        )
    volume = volume_from_sitk(image)
    if np.issubdtype(volume.array_kji.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(volume.array_kji)))
        if bad:
            raise InputError(f"{bad} voxels of '{path.name}' are NaN or infinite; BoneQCT needs "
                             "finite values. Re-export the volume from the source.")
    volume.metadata.update({"source_format": path.suffix.lstrip(".").lower()})
    return volume


def write_volume(volume: Volume, path: str | Path) -> Path:
    """Write a volume or label map as NIfTI/NRRD/MHA (by suffix), atomically, geometry exact."""
    path = Path(path)
    if not path.name.lower().endswith(WRITE_SUFFIXES):
        raise InputError(
            f"Cannot write '{path.name}': use a .nii.gz, .nii, .nrrd or .mha file name."
        )
    image = volume_to_sitk(volume)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return path
