"""Vertebral inputs from the scene, shared by the spine and finite-element modules.

- seed points: a markups point list whose control points are named by level ("L1");
- vertebra labels: a label map volume in a known numbering, or a segmentation whose segments
  are named by level, exported onto the CT's grid.

Only ``slicer.vtkMRML*``, ``slicer.util`` and ``vtk`` are used (no Qt); ``boneqct.spine.levels``
is imported inside the functions.
"""

from __future__ import annotations

import re

import numpy as np
import vtk

from BoneQCTLib.markups import points_by_name
from BoneQCTLib.volumes import segments_to_volume, volume_from_node


def level_names() -> tuple[str, ...]:
    """The vertebral level names (``boneqct.spine.levels.LEVEL_NAMES``)."""
    from boneqct.spine.levels import LEVEL_NAMES

    return LEVEL_NAMES


def seeds_from_markups_node(node, levels: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Seed points from a markups node: ``{level: RAS position (mm)}``.

    Each control point's label is its level, one of ``levels`` (None: :func:`level_names`;
    "L1", "t12": case and surrounding spaces are ignored). Positions are world RAS (a parent
    transform of the markups is applied), in mm. Control points without a defined position
    are skipped.

    Raises:
        ValueError: no node or no points, a label that is not a level, or a level given twice.
    """
    if node is None:
        raise ValueError("Select the markups point list that holds the seed points.")
    seeds = points_by_name(node, levels or level_names(), "vertebral level")
    if not seeds:
        raise ValueError(f"'{node.GetName()}' has no placed points: place one point per level, "
                         "named by its level (e.g. L1).")
    return seeds


_LEVEL_IN_NAME = re.compile(r"(?:^|[^A-Za-z0-9])([TL]\d{1,2})(?:$|[^0-9])", re.IGNORECASE)


def _segment_label_value(segment, table: dict[int, str]) -> int | None:
    """Label value (in a scheme's ``table``, value -> level) of a segment: from a level in its
    name, else its label value."""
    match = _LEVEL_IN_NAME.search(segment.GetName() or "")
    named = match.group(1).upper() if match else None
    if named in table.values():
        return next(value for value, level in table.items() if level == named)
    value = segment.GetLabelValue()
    return value if value in table else None


def labels_from_node(node, reference_volume_node, label_scheme: str = "totalsegmentator",
                     levels: tuple[str, ...] | None = None):
    """A vertebra label map (core ``Volume``) from a label map volume or segmentation node.

    Args:
        node: a ``vtkMRMLLabelMapVolumeNode`` (or scalar volume) in ``label_scheme`` numbering,
            used on its own grid; or a ``vtkMRMLSegmentationNode``, exported onto the geometry
            of ``reference_volume_node``. A segment is a level when its name contains the level
            ("L1", "vertebrae_L1", "L1 vertebra") and gets that level's label value in
            ``label_scheme``; otherwise its label value is kept when the scheme knows it (a
            label map imported into a segmentation); other segments are left out.
        reference_volume_node: the CT volume node (geometry for a segmentation).
        label_scheme: "totalsegmentator" or "verse".
        levels: the levels a segment may be (None: :func:`level_names`).

    Raises:
        ValueError: no node, or a segmentation with no vertebral level.
    """
    if node is None:
        raise ValueError("Select the vertebra label map or segmentation.")
    if not node.IsA("vtkMRMLSegmentationNode"):
        return volume_from_node(node)
    if reference_volume_node is None:
        raise ValueError("Select the CT volume: the segmentation is exported on its grid.")
    from boneqct.spine.levels import label_schemes

    levels = levels or level_names()
    schemes = label_schemes(levels)
    if label_scheme not in schemes:
        raise ValueError(f"Unknown label scheme '{label_scheme}'; use one of "
                         f"{', '.join(sorted(schemes))}.")
    segmentation = node.GetSegmentation()
    segment_ids, values = vtk.vtkStringArray(), []
    for index in range(segmentation.GetNumberOfSegments()):
        value = _segment_label_value(segmentation.GetNthSegment(index), schemes[label_scheme])
        if value is not None:
            segment_ids.InsertNextValue(segmentation.GetNthSegmentID(index))
            values.append(value)
    if not values:
        raise ValueError(
            f"The segmentation '{node.GetName()}' has no vertebral level: name the segments by "
            f"level ({', '.join(levels)}) or check the label scheme ({label_scheme}).")
    exported = segments_to_volume(node, segment_ids, reference_volume_node)
    # exported voxels are n + 1 for the n-th exported segment: map them to the scheme's values
    lut = np.zeros(len(values) + 1, dtype=np.uint8)
    lut[1:] = values
    return exported.with_array(lut[exported.array_kji.astype(np.intp)])


def name_points_by_level(node, lowest_level: str, levels: tuple[str, ...] | None = None) -> list[str]:
    """Name the placed points of a markups list by level, from their height: the lowest point
    (smallest world S) becomes ``lowest_level`` and each higher point the next level up (L4,
    L3, ... the first of ``levels``, cranial to caudal; None: :func:`level_names`), as the
    user places one point per vertebra in any order and picks the lowest.

    Returns the names in the order of the points in the list.

    Raises:
        ValueError: no placed point, an unknown level, or more points than levels above it.
    """
    levels = levels or level_names()  # cranial to caudal
    lowest = lowest_level.strip().upper()
    if lowest not in levels:
        raise ValueError(f"'{lowest_level}' is not a vertebral level ({', '.join(levels)}).")
    placed = [index for index in range(node.GetNumberOfControlPoints())
              if node.GetNthControlPointPositionStatus(index) == node.PositionDefined]
    if not placed:
        raise ValueError(f"'{node.GetName()}' has no placed points: place one point per vertebra.")
    available = levels[: levels.index(lowest) + 1]
    if len(placed) > len(available):
        raise ValueError(f"{len(placed)} points but only {len(available)} levels from "
                         f"{available[0]} down to {lowest}: pick a lower level, or remove points.")
    position = [0.0, 0.0, 0.0]

    def height_mm(index: int) -> float:
        node.GetNthControlPointPositionWorld(index, position)
        return position[2]

    by_height = sorted(placed, key=height_mm)  # caudal first
    names = {index: available[len(available) - 1 - rank] for rank, index in enumerate(by_height)}
    for index, name in names.items():
        node.SetNthControlPointLabel(index, name)
    return [names[index] for index in placed]
