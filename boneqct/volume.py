"""The core's image type: a voxel array with its IJK->RAS geometry and exam metadata.

Arrays are stored KJI-ordered (``array[k, j, i]``), as ``SimpleITK.GetArrayFromImage`` and
``slicer.util.arrayFromVolume`` return them: i = column, j = row, k = slice along the
slice normal. The file's voxel order is kept; nothing is reoriented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from boneqct.errors import InputError

#: Diagonal flip between DICOM/ITK patient LPS and Slicer RAS (same for points and matrices).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Volume:
    """A scalar volume.

    Attributes:
        array_kji: voxel values, shape (k, j, i); HU for CT, mg/cm3 for BMD maps,
            integers for label maps.
        ijk_to_ras: 4x4 matrix taking homogeneous (i, j, k, 1) voxel indices to RAS mm.
        metadata: exam metadata (patient, scanner, acquisition); see ``boneqct.io.dicom``.
        warnings: notes made while loading (e.g. which series was chosen).
    """

    array_kji: np.ndarray
    ijk_to_ras: np.ndarray
    metadata: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ijk_to_ras = np.asarray(self.ijk_to_ras, dtype=float)
        if self.ijk_to_ras.shape != (4, 4):
            raise ValueError("ijk_to_ras must be a 4x4 matrix")

    @property
    def size_ijk(self) -> tuple[int, int, int]:
        """Voxel counts along i, j, k."""
        k, j, i = self.array_kji.shape
        return (i, j, k)

    @property
    def spacing_mm(self) -> np.ndarray:
        """Voxel spacing along i, j, k in mm (column norms of the direction-scaled matrix)."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def direction_ras(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit i, j, k axes in RAS."""
        return self.ijk_to_ras[:3, :3] / self.spacing_mm

    @property
    def origin_ras_mm(self) -> np.ndarray:
        """RAS position (mm) of the centre of voxel (0, 0, 0)."""
        return self.ijk_to_ras[:3, 3].copy()

    def ijk_to_ras_points(self, ijk: np.ndarray) -> np.ndarray:
        """Map (N, 3) voxel indices (i, j, k), possibly fractional, to RAS mm."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=float))
        return ijk @ self.ijk_to_ras[:3, :3].T + self.ijk_to_ras[:3, 3]

    def ras_to_ijk_points(self, ras_mm: np.ndarray) -> np.ndarray:
        """Map (N, 3) RAS points (mm) to fractional voxel indices (i, j, k)."""
        ras_mm = np.atleast_2d(np.asarray(ras_mm, dtype=float))
        ras_to_ijk = np.linalg.inv(self.ijk_to_ras)
        return ras_mm @ ras_to_ijk[:3, :3].T + ras_to_ijk[:3, 3]

    def with_array(self, array_kji: np.ndarray) -> Volume:
        """A volume on the same grid with other voxel values (e.g. BMD or a label map)."""
        if array_kji.shape != self.array_kji.shape:
            raise ValueError("array shape differs from the volume's grid")
        return replace(self, array_kji=array_kji, warnings=list(self.warnings))


#: Largest slice thickness, per slice spacing, taken from a scan's header: overlapping
#: reconstructions use about 1.5-2 (a project bound).
MAX_THICKNESS_PER_SPACING = 3.0


def stated_slice_thickness_mm(volume: Volume) -> float | None:
    """The slice thickness (mm, along k) the scan states (``metadata["slice_thickness_mm"]``,
    DICOM SliceThickness) when it is a positive number at most ``MAX_THICKNESS_PER_SPACING``
    times the slice spacing; else None (a header error is more likely than such a scan)."""
    stated = volume.metadata.get("slice_thickness_mm")
    try:
        stated = float(stated)
    except (TypeError, ValueError):
        return None
    return stated if 0.0 < stated <= MAX_THICKNESS_PER_SPACING * volume.spacing_mm[2] else None


def with_stated_slice_thickness(volume: Volume, thickness_mm: float) -> Volume:
    """``volume`` stating slices ``thickness_mm`` (mm) thick, as its reader knows them (a
    NIfTI/NRRD/MHA file states none; a DICOM series states SliceThickness): what the models
    that read a voxel over its slice take (``stated_slice_thickness_mm``), recorded in the
    volume's warnings and its metadata (``slice_thickness_given``).

    Raises:
        InputError: the thickness is not a positive number at most
            ``MAX_THICKNESS_PER_SPACING`` times the slice spacing, or the scan states another
            (a stated thickness ``stated_slice_thickness_mm`` does not take is replaced).
    """
    spacing_mm = float(volume.spacing_mm[2])
    limit_mm = MAX_THICKNESS_PER_SPACING * spacing_mm
    if not (math.isfinite(thickness_mm) and 0.0 < thickness_mm <= limit_mm):
        raise InputError(
            f"A slice thickness of {thickness_mm:g} mm is not possible for slices "
            f"{spacing_mm:g} mm apart (more than 0, at most {limit_mm:g} mm): give the "
            "thickness the slices were reconstructed at.")
    stated = stated_slice_thickness_mm(volume)
    if stated is not None and abs(stated - thickness_mm) > 0.01:
        raise InputError(
            f"The scan states {stated:g} mm slices (DICOM SliceThickness) and "
            f"{thickness_mm:g} mm was given: leave the thickness out, or check which is right.")
    if stated is not None:
        return volume
    header = volume.metadata.get("slice_thickness_mm")
    note = f"slice thickness {thickness_mm:g} mm as given by the user (" + (
        "the file states none)" if header is None else
        f"the scan's header states {header}, not possible for slices {spacing_mm:g} mm apart)")
    return replace(volume, metadata={**volume.metadata, "slice_thickness_mm": thickness_mm,
                                     "slice_thickness_given": True},
                   warnings=[*volume.warnings, note])


def ijk_to_ras_matrix(origin_ras_mm, spacing_mm, direction_ras=None) -> np.ndarray:
    """Build a 4x4 IJK->RAS matrix from origin (RAS mm), spacing (mm) and a direction matrix
    whose columns are the i, j, k axes in RAS (identity when omitted)."""
    direction = np.eye(3) if direction_ras is None else np.asarray(direction_ras, float)
    m = np.eye(4)
    m[:3, :3] = direction * np.asarray(spacing_mm, float)
    m[:3, 3] = origin_ras_mm
    return m


def lps_to_ras(points_lps) -> np.ndarray:
    """Convert (N, 3) LPS points to RAS (and, being an involution, RAS to LPS)."""
    p = np.array(points_lps, dtype=float)
    p[..., :2] *= -1.0
    return p


ras_to_lps = lps_to_ras
