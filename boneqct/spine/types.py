"""Objects passed between the spine pipeline's steps: a delineated body and its ROI."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


def mask_on_grid(box_kji: tuple[slice, slice, slice], mask_in_box: np.ndarray,
                 grid_shape_kji: tuple[int, int, int]) -> np.ndarray:
    """A bool mask given within a box (slices k, j, i) of a grid, on the whole grid."""
    out = np.zeros(grid_shape_kji, bool)
    out[box_kji] = mask_in_box
    return out


@dataclass
class VertebralBody:
    """A vertebral body delineated on a CT grid (posterior elements excluded).

    The masks are kept within the body's bounding box on the CT grid; ``body_mask_kji`` and
    ``trabecular_mask_kji`` give them on the whole grid.

    Attributes:
        level: level name ("L1", "T12", ...).
        box_kji: slices (k, j, i) of the CT grid holding the body.
        body_in_box: bool array of the box's shape: the body, cortex included.
        trabecular_in_box: bool array of the box's shape: the trabecular interior, inside
            the cortex.
        grid_shape_kji: shape of the CT grid.
        center_ras_mm: centroid of the trabecular interior (RAS mm).
        axis_ras: unit endplate normal (the body axis), pointing superior.
        anterior_ras: unit vector perpendicular to the axis, pointing anterior.
        height_mm: body height along the axis (mm).
        threshold_hu: cortex threshold (HU, on the smoothed image) that closed the interior.
        ball_radius_mm: radius (mm) of the ball that grew the interior.
        work_grid: the isotropic working grid the body was delineated on
            (``boneqct.spine.local_grid.LocalGrid``), finer than coarse CT voxels.
        trabecular_on_work_grid: bool array of ``work_grid``'s shape: the trabecular interior
            at the working grid's resolution (the ROI is placed on it).
        warnings: notes for the report.
    """

    level: str
    box_kji: tuple[slice, slice, slice]
    body_in_box: np.ndarray
    trabecular_in_box: np.ndarray
    grid_shape_kji: tuple[int, int, int]
    center_ras_mm: np.ndarray
    axis_ras: np.ndarray
    anterior_ras: np.ndarray
    height_mm: float
    threshold_hu: float
    ball_radius_mm: float
    work_grid: object
    trabecular_on_work_grid: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @cached_property
    def body_mask_kji(self) -> np.ndarray:
        """Bool array on the volume's grid: the body, cortex included."""
        return mask_on_grid(self.box_kji, self.body_in_box, self.grid_shape_kji)

    @cached_property
    def trabecular_mask_kji(self) -> np.ndarray:
        """Bool array on the volume's grid: the trabecular interior, inside the cortex."""
        return mask_on_grid(self.box_kji, self.trabecular_in_box, self.grid_shape_kji)


@dataclass
class VertebralROI:
    """A trabecular measurement region of one level.

    Attributes:
        level: level name.
        kind: "elliptic-cylinder" (default, mid-height slab) or "trabecular-3d".
        mask_kji: bool array on the volume's grid.
        center_ras_mm: ROI centre (RAS mm).
        axis_ras: unit cylinder axis (the body axis).
        semi_axes_mm: (left-right, antero-posterior) semi-axes of the ellipse (mm);
            None for the 3D kind.
        thickness_mm: slab thickness along the axis (mm); None for the 3D kind.
        warnings: notes for the report.
        box_kji: slices (k, j, i) of the grid outside which ``mask_kji`` is False, so that
            readers can work on that box instead of the whole grid; None when not known.
    """

    level: str
    kind: str
    mask_kji: np.ndarray
    center_ras_mm: np.ndarray
    axis_ras: np.ndarray
    semi_axes_mm: tuple[float, float] | None
    thickness_mm: float | None
    warnings: list[str] = field(default_factory=list)
    box_kji: tuple[slice, slice, slice] | None = None
