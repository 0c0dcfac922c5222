"""Markups point lists as inputs: the placed control points with their labels.

Shared by the seed points of the spine and finite-element modules (named by level), the L3
point of the tissue analysis and the tissue points of the internal calibration. Only
``slicer.vtkMRML*`` methods are used (no Qt).
"""

from __future__ import annotations

import numpy as np


def defined_points(node) -> list[tuple[str, np.ndarray]]:
    """(label, world RAS position in mm) of the control points whose position is defined, in
    list order (a parent transform of the markups is applied); points still being placed or
    skipped are left out."""
    points = []
    for index in range(node.GetNumberOfControlPoints()):
        if node.GetNthControlPointPositionStatus(index) != node.PositionDefined:
            continue
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(index, position)
        points.append((node.GetNthControlPointLabel(index), np.array(position, dtype=float)))
    return points
