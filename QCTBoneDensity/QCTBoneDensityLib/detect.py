"""Automatic vertebra detection in Slicer (issue 14): the detected level centres as a markups
point list, one named point per level, for the user to check, move or rename before Apply.

Runs under PyPI's ``slicer-core`` as well as inside Slicer; ``boneqct.spine.detect`` is
imported inside the function (the core loads only when used).
"""

from __future__ import annotations

import slicer
import vtk

from BoneQCTLib.volumes import volume_from_node


def detect_levels_to_markups(ct_node, node=None, name: str = "BoneQCT detected levels") -> dict:
    """Detect the vertebral bodies of a CT volume node (HU) and put the centres of the levels
    T4-L5 into a markups point list (RAS mm; labels = level names; each point's description
    says how it was named and its confidence): spine QCT measures T11-L5, the fracture
    assessment grades them all. The points stay editable.

    Returns ``{"result": DetectionResult, "markups": the point list}``.

    Raises:
        boneqct.errors.DetectionError: no spine, not a CT in HU, or no anchor to name the
            levels by (the message says what to give instead).
    """
    from boneqct.spine.detect import detect_vertebrae
    from boneqct.spine.levels import VFA_LEVEL_NAMES

    result = detect_vertebrae(volume_from_node(ct_node))
    if node is None:
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
        node.CreateDefaultDisplayNodes()
    seeds = result.seeds(VFA_LEVEL_NAMES)
    was_modifying = node.StartModify()
    node.RemoveAllControlPoints()
    for level in result.levels:
        if level.level not in seeds:
            continue
        index = node.AddControlPoint(vtk.vtkVector3d(*map(float, level.centroid_ras_mm)),
                                     level.level)
        node.SetNthControlPointDescription(
            index, f"{level.named_by}; confidence {level.confidence:.2f}")
    node.EndModify(was_modifying)
    return {"result": result, "markups": node}
