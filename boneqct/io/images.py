"""Volume files (NIfTI, NRRD, MHA/MHD) through SimpleITK, and the one LPS <-> RAS crossing.

SimpleITK and the file formats describe geometry in LPS; the core works in RAS. The conversion
happens here and only here (``volume_from_sitk`` / ``volume_to_sitk``).
"""

from __future__ import annotations

import gzip
import math
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


#: NIfTI-1 data type codes -> bits per voxel (the scalar types; RGB and complex are refused).
_NIFTI_SCALAR_BITS = {2: 8, 4: 16, 8: 32, 16: 32, 64: 64, 256: 8, 512: 16, 768: 32,
                      1024: 64, 1280: 64}
#: Plausible voxel edge (mm) of a CT or label map, and position (mm) of its first voxel.
MIN_SPACING_MM, MAX_SPACING_MM = 1e-3, 100.0
MAX_ABS_ORIGIN_MM = 1e6
#: Largest header scaling that can still give CT numbers from stored integers.
MAX_ABS_SCL_SLOPE, MAX_ABS_SCL_INTER = 1e4, 1e5


def _nifti_header_problem(raw: bytes, order: str) -> str | None:
    """What makes a NIfTI-1 header unable to describe a volume (SimpleITK would read it with
    made-up geometry or crash), or None."""
    magic = raw[344:348]
    if magic not in (b"n+1\0", b"ni1\0"):
        return "its header lacks the NIfTI-1 magic code (an Analyze or damaged file)"
    dims = struct.unpack(order + "8h", raw[40:56])
    if not 2 <= dims[0] <= 7 or any(d < 1 for d in dims[1:1 + dims[0]]):
        return f"its header gives {dims[0]} dimensions of sizes {list(dims[1:1 + max(dims[0], 0)])}"
    datatype, bits = struct.unpack(order + "2h", raw[70:74])
    if datatype not in _NIFTI_SCALAR_BITS:
        return f"its voxel data type code {datatype} is not a scalar type"
    if bits != _NIFTI_SCALAR_BITS[datatype]:
        return (f"its header says {bits} bits per voxel for a data type of "
                f"{_NIFTI_SCALAR_BITS[datatype]}")
    pixdim = struct.unpack(order + "8f", raw[76:108])
    offset, slope, inter = struct.unpack(order + "3f", raw[108:120])
    qform_code, sform_code = struct.unpack(order + "2h", raw[252:256])
    if not math.isfinite(offset) or offset < 348:
        return f"its voxel data offset {offset:g} lies inside or before the header"
    if math.isfinite(slope) and slope != 0:  # NaN or 0: no scaling (NIfTI standard)
        if abs(slope) > MAX_ABS_SCL_SLOPE or not math.isfinite(inter) \
                or abs(inter) > MAX_ABS_SCL_INTER:
            return (f"its value scaling (slope {slope:g}, intercept {inter:g}) cannot give "
                    "CT numbers")
    elif math.isinf(slope):
        return f"its value scaling slope is {slope:g}"
    spacing = pixdim[1:4]
    if sform_code <= 0 and not all(math.isfinite(s) and MIN_SPACING_MM <= abs(s)
                                   <= MAX_SPACING_MM for s in spacing):
        return f"its voxel size {[round(s, 6) for s in spacing]} mm is not a voxel size"
    if qform_code > 0 and sform_code <= 0:
        quatern = struct.unpack(order + "6f", raw[256:280])
        if not all(math.isfinite(q) for q in quatern):
            return "its orientation (quaternion) or origin holds NaN or infinite values"
    if sform_code > 0:
        srow = np.array(struct.unpack(order + "12f", raw[280:328]), float).reshape(3, 4)
        if not np.all(np.isfinite(srow)):
            return "its orientation matrix (sform) holds NaN or infinite values"
    return None


#: Gantry tilt (degrees) below which the stack is treated as orthogonal.
TILT_TOLERANCE_DEG = 0.05
#: Value (HU) given to voxels that a gantry-tilt resampling takes from outside the scan: air.
OUTSIDE_HU = -1024.0


def tilt_deg_of(slice_step_lps: np.ndarray, normal_lps: np.ndarray) -> float:
    """Angle (degrees) of the slice step from the normal of the image plane (a gantry tilt)."""
    along = float(slice_step_lps @ normal_lps)
    across = float(np.linalg.norm(slice_step_lps - along * normal_lps))
    return float(np.degrees(np.arctan2(across, abs(along))))


def resample_sheared(array_kji, ijk_to_lps, normal_lps):
    """Resample a sheared (gantry-tilted) stack onto the orthogonal grid along the normal of
    its image plane (``normal_lps``), linearly, voxels from outside the scan at OUTSIDE_HU;
    returns the array, its IJK-to-LPS matrix and the warning that says so."""
    image = sitk.GetImageFromArray(array_kji.astype(np.float32))
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((ijk_to_lps[:3, :3] / spacing).flatten().tolist())
    image.SetOrigin(ijk_to_lps[:3, 3].tolist())
    step_mm = float(ijk_to_lps[:3, 2] @ normal_lps)
    out = np.array(ijk_to_lps)
    out[:3, 2] = normal_lps * step_mm
    reference = sitk.Image(image.GetSize(), sitk.sitkFloat32)
    out_spacing = np.linalg.norm(out[:3, :3], axis=0)
    reference.SetSpacing(out_spacing.tolist())
    reference.SetDirection((out[:3, :3] / out_spacing).flatten().tolist())
    reference.SetOrigin(out[:3, 3].tolist())
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, OUTSIDE_HU)
    tilt_deg = tilt_deg_of(ijk_to_lps[:3, 2], normal_lps)
    warning = (f"The scan was acquired with a gantry tilt of {tilt_deg:.2f} degrees; it was "
               "resampled (linear interpolation) to an orthogonal grid with slices along the "
               f"normal, spacing {step_mm:.3f} mm; voxels shifted in from outside the scan "
               f"were set to {OUTSIDE_HU:.0f} HU.")
    return sitk.GetArrayFromImage(resampled), out, warning


def _geometry_problem(spacing, direction, origin) -> str | None:
    """What makes a volume's geometry impossible for a CT, or None."""
    spacing, direction, origin = (np.asarray(v, float) for v in (spacing, direction, origin))
    if not (np.all(np.isfinite(spacing)) and np.all(np.isfinite(direction))
            and np.all(np.isfinite(origin))):
        return "its voxel size, axes or origin hold NaN or infinite values"
    if np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
        return (f"its voxel size {[round(float(s), 6) for s in spacing]} mm lies outside "
                f"{MIN_SPACING_MM:g}-{MAX_SPACING_MM:g} mm")
    if np.any(np.abs(origin) > MAX_ABS_ORIGIN_MM):
        return f"its origin {origin.tolist()} mm lies beyond {MAX_ABS_ORIGIN_MM:g} mm"
    norms = np.linalg.norm(direction, axis=0)
    if np.any(np.abs(norms - 1) > 1e-3) or abs(np.linalg.det(direction)) < 0.5:
        return "its axes are degenerate (zero, collinear or not unit length)"
    if abs(float(direction[:, 0] @ direction[:, 1])) > 1e-3:
        return "its row and column axes are not perpendicular"
    return None


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
        if 540 in (struct.unpack("<i", raw[:4])[0], struct.unpack(">i", raw[:4])[0]):
            return None  # NIfTI-2: left to SimpleITK
        return "its header does not start like a NIfTI header (damaged or not NIfTI)"
    problem = _nifti_header_problem(raw, order)
    if problem:
        return problem
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
    problem = _geometry_problem(image.GetSpacing(), np.reshape(image.GetDirection(), (3, 3)),
                                image.GetOrigin()) if image.GetDimension() == 3 else None
    if problem:
        raise InputError(f"Cannot use the volume file '{path.name}': {problem}. Re-export it "
                         "from the source (e.g. with dcm2niix) with its geometry.")
    volume = volume_from_sitk(image)
    if np.iscomplexobj(volume.array_kji):
        raise InputError(f"'{path.name}' holds complex voxel values; BoneQCT needs a CT volume "
                         "of real CT numbers. Export the CT as a scalar volume.")
    if np.issubdtype(volume.array_kji.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(volume.array_kji)))
        if bad:
            raise InputError(f"{bad} voxels of '{path.name}' are NaN or infinite; BoneQCT needs "
                             "finite values. Re-export the volume from the source.")
    name = path.name.lower()
    volume.metadata.update({"source_format": "nii.gz" if name.endswith(".nii.gz")
                            else path.suffix.lstrip(".").lower()})
    return volume


#: A CT in HU holds air near -1000 HU and thousands of distinct values; a label map a few
#: non-negative integers (TotalSegmentator's 117 structures among the most). Non-negative
#: integer images with at most this many distinct values are taken for label maps.
MAX_LABEL_MAP_VALUES = 256
#: Voxels sampled (evenly strided) when counting an image's distinct values.
LABEL_MAP_SAMPLE_VOXELS = 2_000_000


def refuse_label_map(volume: Volume, name: str) -> None:
    """Refuse (InputError) an image given as the CT that holds only a few (2 to
    MAX_LABEL_MAP_VALUES) non-negative whole numbers: a label map (segmentation) passed in
    place of the CT."""
    array = volume.array_kji
    if array.size == 0 or not np.isrealobj(array) or array.min() < 0:
        return
    sample = array.ravel()[::max(1, array.size // LABEL_MAP_SAMPLE_VOXELS)]
    if not np.issubdtype(array.dtype, np.integer) and not np.all(sample == np.round(sample)):
        return
    values = np.unique(sample)
    if not 2 <= len(values) <= MAX_LABEL_MAP_VALUES:  # one value: an empty image, no labels
        return
    raise InputError(f"'{name}' looks like a label map, not a CT: it holds only {len(values)} "
                     f"distinct whole numbers ({values[0]:g} to {values[-1]:g}) and no air "
                     "(about -1000 HU). Give the CT in HU as the input; a vertebra or femur "
                     "label map goes with --labels.")


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
