"""Screw planning adapters: scene nodes <-> the core screw-trajectory measurement
(``boneqct.screw``).

Inputs: markups line nodes (one per planned screw: first control point the entry, second
the tip; the node's name names the screw), optionally seed points or a vertebra label map /
segmentation to name each screw's level. Outputs: the screws table (``BoneQCTLib.tables``,
columns ``screws`` of ``Resources/columns.json``, the screw.json document on the table) and
each screw's cylinder as a model node.

Only ``slicer.vtkMRML*``, ``slicer.util`` and ``vtk`` are used (no Qt), so everything here runs
under PyPI's ``slicer-core`` as well as inside Slicer. ``boneqct.screw`` is imported inside the
functions that need it, so this file loads before the core's dependencies are installed.
"""

from __future__ import annotations

import slicer
import vtk

from BoneQCTLib.markups import defined_points
from BoneQCTLib.tables import (
    columns,
    qc_text,
    store_document,
    table_node_or_new,
    write_table,
    yes_no,
)
from BoneQCTLib.vertebrae import labels_from_node, seeds_from_markups_node
from BoneQCTLib.volumes import volume_from_node

#: Document kind of a screws table: ``ScrewResult.to_dict()`` (screw.json), saved with the scene.
SCREW_KIND = "Screw"
#: Sides of the cylinder models (enough for a round look at a 6.5 mm screw).
MODEL_SIDES = 24
#: Colour of the cylinder models (RGB 0-1).
MODEL_COLOR = (1.0, 0.23, 0.19)


def screw_lines_from_nodes(line_nodes, length_mm: float | None = None) -> list:
    """``boneqct.screw.trajectory.ScrewLine`` of each markups line node (world RAS mm; a
    parent transform is applied), named by the node.

    Raises:
        ValueError: no line given, or a line without two placed points.
    """
    from boneqct.screw.trajectory import screw_line

    if not line_nodes:
        raise ValueError("Select at least one markups line: place one line per screw, from the "
                         "entry point to the tip.")
    lines = []
    for node in line_nodes:
        points = defined_points(node)
        if len(points) != 2:
            raise ValueError(f"'{node.GetName()}' has {len(points)} placed points; a screw line "
                             "needs two (entry, then tip).")
        lines.append(screw_line(node.GetName(), points[0][1], points[1][1], length_mm))
    return lines


def screw_columns() -> tuple:
    """The columns of the screws table, one row per ``ScrewMeasurement``."""
    return columns("screws", {
        "contact": lambda s: None if s.cortical_contact_fraction is None
        else 100.0 * s.cortical_contact_fraction,
        "cement": lambda s: yes_no(s.cement_suggested), "qc": lambda s: qc_text(s.qc)})


def screw_result_to_table_node(result, table_node=None, name: str = "BoneQCT screws"):
    """Write a ``ScrewResult`` into a table node (one row per screw) with the screw.json
    document on it (attribute ``BoneQCT.Screw.JSON``)."""
    table_node = table_node_or_new(table_node, name)
    was_modifying = table_node.StartModify()
    write_table(table_node, screw_columns(), result.screws)
    store_document(table_node, SCREW_KIND, result.to_dict())
    table_node.EndModify(was_modifying)
    return table_node


def cylinder_polydata(screw) -> vtk.vtkPolyData:
    """The closed cylinder of a screw (entry to tip, its diameter), RAS mm."""
    line = vtk.vtkLineSource()
    line.SetPoint1(*screw.entry_ras_mm)
    line.SetPoint2(*screw.tip_ras_mm)
    tube = vtk.vtkTubeFilter()
    tube.SetInputConnection(line.GetOutputPort())
    tube.SetRadius(screw.diameter_mm / 2.0)
    tube.SetNumberOfSides(MODEL_SIDES)
    tube.CappingOn()
    tube.Update()
    polydata = vtk.vtkPolyData()
    polydata.DeepCopy(tube.GetOutput())
    return polydata


#: Attribute naming the screw a cylinder model node shows (reused by a new measurement).
SCREW_ATTRIBUTE = "BoneQCT.Screw"


def screw_model_nodes(result, model_nodes: dict | None = None) -> dict:
    """A model node per screw holding its cylinder, ``{screw name: node}``; nodes in
    ``model_nodes`` (by screw name), else the scene's cylinder of a screw of that name from an
    earlier measurement, are overwritten; the others created."""
    model_nodes = dict(model_nodes or {})
    for node in slicer.util.getNodesByClass("vtkMRMLModelNode"):
        name = node.GetAttribute(SCREW_ATTRIBUTE)
        if name is not None:
            model_nodes.setdefault(name, node)
    for screw in result.screws:
        node = model_nodes.get(screw.name)
        if node is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLModelNode", f"{screw.name} screw")
            node.CreateDefaultDisplayNodes()
            node.GetDisplayNode().SetColor(*MODEL_COLOR)
            node.SetAttribute(SCREW_ATTRIBUTE, screw.name)
        node.SetAndObservePolyData(cylinder_polydata(screw))
        model_nodes[screw.name] = node
    return model_nodes


def run_screws(ct_node, calibration_table_node=None, options=None, *, line_nodes,
               length_mm: float | None = None, seeds_node=None, labels_node=None,
               table_node=None, model_nodes: dict | None = None) -> dict:
    """Read the nodes, run ``boneqct.screw.pipeline.analyze_screws``, write the result nodes.

    Args:
        ct_node: CT volume node (HU).
        calibration_table_node: a calibration table (``calibration_to_table_node``); None
            measures HU only (no BMD, no cement suggestion).
        options: a ``boneqct.screw.options.ScrewOptions``; None: the defaults.
        line_nodes: markups line nodes, one per screw (entry, tip).
        length_mm: screw length along each line from its entry (None: the line's length).
        seeds_node / labels_node: seed points by level, or a vertebra label map or
            segmentation, to name each screw's level (both optional).
        table_node, model_nodes: output nodes to overwrite (None creates them).

    Returns:
        ``{"result": ScrewResult, "table", "models": {screw name: model node}}``.
    """
    if ct_node is None:
        raise ValueError("Select the CT volume to measure.")
    from boneqct.screw.options import ScrewOptions
    from boneqct.screw.pipeline import analyze_screws
    from BoneQCTLib.calibration import calibration_from_table_node

    options = ScrewOptions() if options is None else options
    lines = screw_lines_from_nodes(line_nodes, length_mm)
    calibration = (None if calibration_table_node is None
                   else calibration_from_table_node(calibration_table_node))
    inputs = {}
    if seeds_node is not None:  # the spine's seed list: any level T4-L5 names a screw's level
        from boneqct.spine.levels import VFA_LEVEL_NAMES

        inputs["seeds"] = seeds_from_markups_node(seeds_node, VFA_LEVEL_NAMES)
    elif labels_node is not None:
        inputs["labels"] = labels_from_node(labels_node, ct_node, options.label_scheme)
    result = analyze_screws(volume_from_node(ct_node), calibration, options, lines=lines,
                            **inputs)
    table = screw_result_to_table_node(result, table_node, name=f"{ct_node.GetName()} screws")
    return {"result": result, "table": table, "models": screw_model_nodes(result, model_nodes)}
