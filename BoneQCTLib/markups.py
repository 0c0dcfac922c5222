"""Markups point lists as inputs: the placed control points with their labels.

Shared by the seed points of the spine and finite-element modules (named by level), the L3
point of the tissue analysis, the tissue points of the internal calibration and the femoral
head seed of the hip and femur finite-element analyses. Only
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


def points_by_name(node, names, what: str) -> dict[str, np.ndarray]:
    """``{name: world RAS position in mm}`` of the placed points, each labelled by one of
    ``names`` (case and surrounding spaces ignored; a name is matched as written in ``names``);
    ``what`` names the kind in messages ("vertebral level", "internal-calibration tissue").

    Raises:
        ValueError: a label that is none of ``names``, or a name given to two points.
    """
    known = {name.upper(): name for name in names}
    points: dict[str, np.ndarray] = {}
    for label, position in defined_points(node):
        name = known.get(label.strip().upper())
        if name is None:
            raise ValueError(f"The point '{label}' of '{node.GetName()}' is not named by a {what}: "
                             f"name each point by its {what} ({', '.join(names)}).")
        if name in points:
            raise ValueError(f"'{node.GetName()}' has two points named {name}: keep one per {what}.")
        points[name] = position
    return points


def first_point(node, where: str):
    """The first placed point (world RAS mm) of ``node``, or None when ``node`` is None; a
    seed placed ``where`` ("in the femoral head").

    Raises:
        ValueError: the list has no placed point.
    """
    if node is None:
        return None
    points = defined_points(node)
    if not points:
        raise ValueError(f"'{node.GetName()}' has no placed point: place one {where}, or clear "
                         "the seed selection to find it automatically.")
    return points[0][1]
