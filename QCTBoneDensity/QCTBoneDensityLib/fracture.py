"""Vertebral fracture assessment in the scene (no Qt): each level's anterior, middle and
posterior heights as markups lines the reader can move, the grade table, and the grades
recomputed from the moved lines. The spine measurement's levels (T11-L5) are assessed with
it; thoracic levels T4-T10 among the seeds or labels are assessed for fractures only
(``boneqct.spine.vfa.measure_thoracic_levels``), all graded together
(``grade_thoracic_levels``), as ``boneqct vfa`` does.

The core measures and grades (``boneqct.spine.fracture``); this module only puts its points
into line nodes, reads them back, and writes the table. Heights read back are the lengths of
the lines (RAS mm), the points as placed by the reader. Only ``slicer.vtkMRML*`` and ``vtk``
are used (runs under ``slicer-core``); ``boneqct`` is imported inside the function that needs
it, so this file loads before the core's dependencies are installed.
"""

from __future__ import annotations

import json

import numpy as np
import slicer
import vtk

from BoneQCTLib.tables import Column, store_document, table_node_or_new, write_table

HEIGHTS = ("anterior", "middle", "posterior")
#: Attributes naming the level and the height a line node shows.
LEVEL_ATTRIBUTE = "BoneQCT.Fracture.Level"
HEIGHT_ATTRIBUTE = "BoneQCT.Fracture.Height"
#: Node references from the spine table to its fracture table and to its height lines.
FRACTURE_TABLE_ROLE = "BoneQCT.FractureTable"
HEIGHT_LINES_ROLE = "BoneQCT.HeightLines"
#: Attributes keeping, on each line node, the points as measured (JSON: superior, inferior)
#: and its level's quality checks (JSON): a level whose lines are unmoved keeps them.
MEASURED_ATTRIBUTE = "BoneQCT.Fracture.MeasuredPoints"
QUALITY_ATTRIBUTE = "BoneQCT.Fracture.Quality"
#: How far (mm) a line's end may lie from where it was measured and count as unmoved.
UNMOVED_MM = 1e-3
#: What a reader's moved points mean for the quality checks.
READER_QUALITY = {"passed": True, "reason": None, "points": "placed by the reader"}


def _ratio(key: str):
    return lambda row: (row.get("height_ratios") or {}).get(key)


def _height(key: str):
    return lambda row: (row.get("heights_mm") or {}).get(key)


#: The columns of the fracture table (rows: a level's fracture assessment with "level").
FRACTURE_COLUMNS = (
    Column("Level", "level", vtk.vtkStringArray, "", "vertebral level"),
    *(Column(f"{name.capitalize()} height (mm)", _height(name), vtk.vtkDoubleArray, "mm",
             f"{name} height on a line along the body's walls, between the endplates' "
             "cortical mid-surfaces")
      for name in HEIGHTS),
    Column("Ha/Hp", _ratio("anterior_posterior"), vtk.vtkDoubleArray, "",
           "anterior / posterior height (wedge)"),
    Column("Hm/Hp", _ratio("middle_posterior"), vtk.vtkDoubleArray, "",
           "middle / posterior height (biconcave)"),
    Column("Hp/adjacent", _ratio("posterior_adjacent"), vtk.vtkDoubleArray, "",
           "posterior height / mean posterior height of the adjacent levels (crush)"),
    Column("Genant grade", "genant_grade", vtk.vtkIntArray, "",
           "Genant semi-quantitative grade 0-3 (-1: not graded)"),
    Column("Type", "type", vtk.vtkStringArray, "", "wedge, biconcave or crush"),
    Column("Reference height (mm)", "reference_height_mm", vtk.vtkDoubleArray, "mm",
           "height the largest reduction is measured against"),
    Column("Reference", "reference_method", vtk.vtkStringArray, "", "how it was chosen"),
    Column("Not graded because", "reason", vtk.vtkStringArray, "",
           "why the level has no grade, or a note on its assessment"),
)


def height_lines_to_markups(fractures: dict, name: str = "BoneQCT") -> list:
    """One markups line node per level and height (superior point first), named
    "<name> <level> <height> height", with the level and height as node attributes."""
    nodes = []
    for level, fracture in fractures.items():
        if not fracture or not fracture.get("points_ras_mm"):
            continue
        for height in HEIGHTS:
            pair = fracture["points_ras_mm"][height]
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode",
                                                      f"{name} {level} {height} height")
            node.CreateDefaultDisplayNodes()
            for end in ("superior", "inferior"):
                node.AddControlPoint(vtk.vtkVector3d(*map(float, pair[end])), f"{level} {end}")
            node.SetAttribute(LEVEL_ATTRIBUTE, level)
            node.SetAttribute(HEIGHT_ATTRIBUTE, height)
            node.SetAttribute(MEASURED_ATTRIBUTE, json.dumps(pair))
            node.SetAttribute(QUALITY_ATTRIBUTE, json.dumps(fracture.get("quality")))
            nodes.append(node)
    return nodes


def reformat_sagittal(slice_node, fracture: dict, axis_ras, anterior_ras) -> None:
    """Show a level's mid-sagittal plane in a slice view, oriented as Slicer's sagittal views
    (anterior on the left, the body axis up), centred on the level's six points, which lie
    in that plane as measured (near it once a reader moves them out of it). ``axis_ras`` and
    ``anterior_ras`` are the body's unit axis and anterior direction
    (``LevelResult.roi_axis_ras``, ``roi_anterior_ras``)."""
    pairs = fracture["points_ras_mm"].values()
    center = np.mean([p[end] for p in pairs for end in ("superior", "inferior")], axis=0)
    right_of_view = -np.asarray(anterior_ras, float)
    up = np.asarray(axis_ras, float)
    matrix = slice_node.GetSliceToRAS()
    for row in range(3):
        for col, vector in enumerate((right_of_view, up, np.cross(right_of_view, up), center)):
            matrix.SetElement(row, col, float(vector[row]))
    slice_node.UpdateMatrices()


def fractures_from_markups(nodes) -> dict:
    """The fracture assessment recomputed from height line nodes (``height_lines_to_markups``,
    possibly moved by the reader): heights are the lines' lengths (mm, world RAS), grades and
    types from ``boneqct.spine.fracture.grade_levels``. A level whose lines the reader moved
    rests on their points (``READER_QUALITY``); one whose lines are as measured keeps its
    measured quality checks, so a level the measurement did not grade stays ungraded. Levels
    missing a line are left out."""
    from boneqct.spine.fracture import grade_levels

    measured = {level: {"heights_mm": {h: float(np.linalg.norm(np.subtract(
                            pair[h]["superior"], pair[h]["inferior"]))) for h in HEIGHTS},
                        "points_ras_mm": pair, "quality": _quality(nodes, level, pair)}
                for level, pair in line_points(nodes).items()}
    return grade_levels(measured)


def _quality(nodes, level: str, pair: dict) -> dict:
    """A level's quality checks as measured when none of its lines moved (their ends within
    ``UNMOVED_MM`` of the measured points), else the reader's (``READER_QUALITY``)."""
    lines = [n for n in nodes if n.GetAttribute(LEVEL_ATTRIBUTE) == level]
    stored = {n.GetAttribute(HEIGHT_ATTRIBUTE): n.GetAttribute(MEASURED_ATTRIBUTE) for n in lines}
    quality = json.loads(lines[0].GetAttribute(QUALITY_ATTRIBUTE) or "null") if lines else None
    if not quality or any(stored.get(h) is None for h in HEIGHTS):
        return dict(READER_QUALITY)
    unmoved = all(np.allclose(json.loads(stored[h])[end], pair[h][end], atol=UNMOVED_MM)
                  for h in HEIGHTS for end in ("superior", "inferior"))
    return quality if unmoved else dict(READER_QUALITY)


def line_points(nodes) -> dict:
    """``{level: {height: {"superior", "inferior"}}}``: the ends (world RAS mm) of the height
    line nodes as they are now, for the levels that have all three lines."""
    points: dict[str, dict] = {}
    for node in nodes:
        level, height = node.GetAttribute(LEVEL_ATTRIBUTE), node.GetAttribute(HEIGHT_ATTRIBUTE)
        if level is None or height not in HEIGHTS or node.GetNumberOfControlPoints() != 2:
            continue
        ends = [np.zeros(3), np.zeros(3)]
        for index, end in enumerate(ends):
            node.GetNthControlPointPositionWorld(index, end)
        points.setdefault(level, {})[height] = {"superior": ends[0].tolist(),
                                                "inferior": ends[1].tolist()}
    return {level: pair for level, pair in points.items() if set(pair) == set(HEIGHTS)}


def assessed_levels(spine_table) -> list[str]:
    """The levels with all three height lines referenced by ``spine_table``, cranial first as
    measured (empty without a table)."""
    return list(line_points(_height_lines(spine_table))) if spine_table is not None else []


def show_level_in_slice_view(spine_table, level: str, slice_node) -> None:
    """Show ``level``'s height lines, as the reader left them, in ``slice_node`` reformatted
    to their mid-sagittal plane (:func:`reformat_sagittal`): anterior is the mean direction of
    the two endplates (posterior to anterior point: the bisector of a wedge's), the body axis
    perpendicular to it in the lines' plane (a line that follows a leaning wall does not tilt
    the view).

    Raises:
        ValueError: the level has no complete set of height lines, or they do not span a
            plane (ends dragged on top of each other, undefined points).
    """
    pairs = line_points(_height_lines(spine_table)).get(level) if spine_table else None
    if pairs is None:
        raise ValueError(f"{level} has no height lines: measure the spine first.")
    ends = {h: {end: np.asarray(pairs[h][end], float) for end in ("superior", "inferior")}
            for h in HEIGHTS}
    if not all(np.isfinite(point).all() for pair in ends.values() for point in pair.values()):
        raise ValueError(f"{level}'s height lines have undefined points: place them again.")

    def mean_direction(vectors, what: str) -> np.ndarray:
        """The unit mean of the unit vectors (those of zero length left out)."""
        total = sum((v / np.linalg.norm(v) for v in vectors if np.linalg.norm(v) > 1e-6),
                    np.zeros(3))
        if np.linalg.norm(total) < 1e-6:
            raise ValueError(f"{level}'s height lines do not span a plane ({what}): move "
                             "their ends apart.")
        return total / np.linalg.norm(total)

    anterior = mean_direction([ends["anterior"][end] - ends["posterior"][end]
                               for end in ("superior", "inferior")], "no endplate direction")
    lines = mean_direction([pair["superior"] - pair["inferior"] for pair in ends.values()],
                           "no line direction")
    axis = lines - (lines @ anterior) * anterior
    if np.linalg.norm(axis) < 1e-6:
        raise ValueError(f"{level}'s height lines do not span a plane (the lines run along the "
                         "endplates): move their ends apart.")
    reformat_sagittal(slice_node, {"points_ras_mm": pairs}, axis / np.linalg.norm(axis), anterior)


def fractures_to_table_node(fractures: dict, table_node=None, name: str = "BoneQCT fractures"):
    """The fracture table (``FRACTURE_COLUMNS``, one row per level) with the assessment stored
    as its document (``BoneQCT.Fracture.JSON``)."""
    table_node = table_node_or_new(table_node, name)
    rows = [{"level": level, **(fracture or {})} for level, fracture in fractures.items()]
    write_table(table_node, FRACTURE_COLUMNS, rows)
    store_document(table_node, "Fracture", {"levels": fractures})
    return table_node


def _height_lines(spine_table) -> list:
    return [node for node in (spine_table.GetNthNodeReference(HEIGHT_LINES_ROLE, index)
                              for index in range(spine_table.GetNumberOfNodeReferences(
                                  HEIGHT_LINES_ROLE))) if node is not None]


def fractures_to_scene(spine_table, fractures: dict, name: str) -> dict:
    """A fracture assessment (level -> ``boneqct.spine.fracture.grade_levels`` entry, cranial
    first) in the scene, referenced by its spine table: the height lines (replacing those of
    an earlier measurement with this table) and the grade table; returns
    ``{"table": table or None, "lines": [...]}`` (nothing when no level was assessed)."""
    for node in _height_lines(spine_table):
        slicer.mrmlScene.RemoveNode(node)
    spine_table.RemoveNodeReferenceIDs(HEIGHT_LINES_ROLE)
    fractures = {level: fracture for level, fracture in fractures.items() if fracture}
    if not fractures:
        return {"table": None, "lines": []}
    lines = height_lines_to_markups(fractures, name)
    for node in lines:
        spine_table.AddNodeReferenceID(HEIGHT_LINES_ROLE, node.GetID())
    table = fractures_to_table_node(fractures, spine_table.GetNodeReference(FRACTURE_TABLE_ROLE),
                                    name=f"{name} fractures")
    spine_table.SetNodeReferenceID(FRACTURE_TABLE_ROLE, table.GetID())
    return {"table": table, "lines": lines}


def recompute_grades(spine_table) -> dict:
    """The grades recomputed from the spine table's height lines as the reader left them,
    written into its fracture table; returns the assessment by level.

    Raises:
        ValueError: the table has no height lines (measure the spine first).
    """
    fractures = fractures_from_markups(_height_lines(spine_table)) if spine_table else {}
    if not fractures:
        raise ValueError("This spine table has no height lines: measure the spine first.")
    fractures_to_table_node(fractures, spine_table.GetNodeReference(FRACTURE_TABLE_ROLE))
    return fractures
