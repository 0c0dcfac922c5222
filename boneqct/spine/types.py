"""Objects passed between the spine pipeline's steps: a delineated body and its ROI."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class VertebralBody:
    """A vertebral body delineated on a CT grid (posterior elements excluded).

    Attributes:
        level: level name ("L1", "T12", ...).
        body_mask_kji: bool array on the volume's grid: the body, cortex included.
        trabecular_mask_kji: bool array: the trabecular interior, inside the cortex.
        center_ras_mm: centroid of the body (RAS mm).
        axis_ras: unit endplate normal (the body axis), pointing superior.
        anterior_ras: unit vector perpendicular to the axis, pointing anterior.
        height_mm: body height along the axis (mm).
        warnings: notes for the report.
    """

    level: str
    body_mask_kji: np.ndarray
    trabecular_mask_kji: np.ndarray
    center_ras_mm: np.ndarray
    axis_ras: np.ndarray
    anterior_ras: np.ndarray
    height_mm: float
    warnings: list[str] = field(default_factory=list)


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
    """

    level: str
    kind: str
    mask_kji: np.ndarray
    center_ras_mm: np.ndarray
    axis_ras: np.ndarray
    semi_axes_mm: tuple[float, float] | None
    thickness_mm: float | None
    warnings: list[str] = field(default_factory=list)
