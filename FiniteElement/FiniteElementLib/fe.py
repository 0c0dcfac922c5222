"""Finite-element adapters: ``boneqct.fe`` results <-> MRML nodes (no ``qt``/``ctk``).

- the mesh: a ``vtkMRMLModelNode`` holding the ``vtkUnstructuredGrid`` of ``boneqct.fe.vtu``
  (points RAS mm, per-element fields as cell data), coloured by a chosen field;
- the results: a one-row ``vtkMRMLTableNode`` with units and descriptions per column, and
  fe.json as the attribute ``BoneQCT.FEJSON``;
- the load-displacement curve: a table and a ``vtkMRMLPlotChartNode``;
- the report: fe.json, fe.vtu and fe_report.pdf written by the core's ``write_fe_outputs``.
"""

from __future__ import annotations

import json
from pathlib import Path

import slicer
import vtk

ATTRIBUTE_FE_JSON = "BoneQCT.FEJSON"
#: Cell fields offered for colouring the mesh: array name -> display name.
COLOR_FIELDS = {
    "effective_strain": "Effective strain",
    "min_principal_strain": "Minimum principal strain",
    "max_principal_strain": "Maximum principal strain",
    "axial_strain": "Axial strain",
    "von_mises_mpa": "Von Mises stress (MPa)",
    "sed_mpa": "Strain energy density (MPa)",
    "modulus_mpa": "Young's modulus (MPa)",
    "bmd_mg_cm3": "Density (mg/cm3)",
    "yielded": "Yielded",
}
#: (column name, fe.json key, vtk array class, unit label, description)
RESULT_COLUMNS = (
    ("Level", "level", vtk.vtkStringArray, "", "Vertebral level"),
    ("Strength (N)", "strength_n", vtk.vtkDoubleArray, "N",
     "Compressive strength by the criterion of the Criterion column"),
    ("Stiffness (N/mm)", "stiffness_n_mm", vtk.vtkDoubleArray, "N/mm",
     "Axial stiffness of the vertebral body with its PMMA layers"),
    ("Linear strength (N)", "linear_strength_n", vtk.vtkDoubleArray, "N",
     "Stiffness x bone height x 0.68% apparent strain"),
    ("Criterion", "criterion", vtk.vtkStringArray, "",
     "Strength criterion: linear, pistoia or nonlinear (2% apparent strain)"),
    ("Law", "law", vtk.vtkStringArray, "", "Density-modulus law"),
    ("Element size (mm)", "element_mm", vtk.vtkDoubleArray, "mm", "Edge of the cubic elements"),
    ("Elements", "n_elements", vtk.vtkIntArray, "elements", "Bone and PMMA elements"),
    ("DOF", "n_dof", vtk.vtkIntArray, "DOF", "Degrees of freedom"),
    ("Fragile", "fragile", vtk.vtkStringArray, "",
     "Fragile bone strength (<= 4500 N women, <= 6500 N men; Kopperdahl 2014)"),
    ("Converged", "converged", vtk.vtkStringArray, "",
     "Whether every linear solve met its residual tolerance"),
)


def fe_result_to_table_node(result, table_node=None, name: str = "BoneQCT FE"):
    """Write an ``FEResult`` into a one-row table node (units, descriptions, fe.json)."""
    if table_node is None:
        table_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
    doc = result.to_dict()
    values = {**doc, "converged": doc["solver"]["converged"]}
    was_modifying = table_node.StartModify()
    table_node.RemoveAllColumns()
    for column_name, key, array_class, unit, description in RESULT_COLUMNS:
        column = array_class()
        column.SetName(column_name)
        value = values[key]
        if array_class is vtk.vtkStringArray:
            column.InsertNextValue("unknown" if value is None else
                                   ("yes" if value is True else "no" if value is False else str(value)))
        else:
            column.InsertNextValue(value)
        table_node.AddColumn(column)
        table_node.SetColumnUnitLabel(column_name, unit)
        table_node.SetColumnDescription(column_name, description)
    table_node.SetAttribute(ATTRIBUTE_FE_JSON, json.dumps(doc))
    table_node.EndModify(was_modifying)
    return table_node


def fe_document_from_table_node(table_node) -> dict | None:
    """The fe.json document stored in a results table (None when it holds none)."""
    text = None if table_node is None else table_node.GetAttribute(ATTRIBUTE_FE_JSON)
    return None if not text else json.loads(text)


def fe_summary_text(table_node) -> str:
    """Strength, criterion, stiffness and fragile flag of a results table (empty if none)."""
    doc = fe_document_from_table_node(table_node)
    if doc is None:
        return ""
    flag = " - FRAGILE BONE STRENGTH" if doc.get("fragile") else ""
    return (f"{doc['level']}: strength {doc['strength_n']:.0f} N ({doc['criterion']}), "
            f"stiffness {doc['stiffness_n_mm']:.0f} N/mm{flag}")


def export_fe_report(folder, result, metadata: dict | None = None,
                     anonymize: bool = False) -> dict[str, Path]:
    """Write fe.json, fe.vtu and fe_report.pdf of ``result`` (a ``boneqct.fe.vertebra.FEResult``;
    fe.vtu only when it holds its solved model) into ``folder`` (created if needed); returns
    the paths by key "json", "vtu", "report"."""
    from boneqct.fe.vertebra import write_fe_outputs

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return write_fe_outputs(folder, result, dict(metadata or {}), anonymize=anonymize)


def mesh_to_model_node(result, model_node=None, name: str = "BoneQCT FE mesh",
                       color_by: str = "effective_strain"):
    """The solved mesh as a model node (vtkUnstructuredGrid with cell fields), coloured by
    ``color_by`` (a key of ``COLOR_FIELDS``)."""
    from boneqct.fe.vtu import unstructured_grid

    if model_node is None:
        model_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLModelNode", name)
    model_node.SetAndObserveMesh(unstructured_grid(result.model, result.solution))
    if model_node.GetDisplayNode() is None:
        model_node.CreateDefaultDisplayNodes()
    color_model_by(model_node, color_by)
    return model_node


def color_model_by(model_node, field: str) -> None:
    """Colour a mesh model node by one of its cell fields, over the field's range."""
    if field not in COLOR_FIELDS:
        raise ValueError(f"Unknown field '{field}'; choose one of {', '.join(COLOR_FIELDS)}.")
    display = model_node.GetDisplayNode()
    array = model_node.GetMesh().GetCellData().GetArray(field)
    display.SetActiveScalar(field, vtk.vtkAssignAttribute.CELL_DATA)
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeRainbow")
    display.SetScalarRangeFlag(display.UseManualScalarRange)
    display.SetScalarRange(*array.GetRange())
    display.SetScalarVisibility(True)


def load_displacement_plot(result, chart_node=None, name: str = "BoneQCT FE load-displacement"):
    """A chart of force (N) against top-platen displacement (mm); the nonlinear curve, or the
    linear line to the strength for the linear criteria. Returns the chart node."""
    points = result.curve or [{"displacement_mm": 0.0, "force_n": 0.0},
                              {"displacement_mm": result.strength_n / result.stiffness_n_mm,
                               "force_n": result.strength_n}]
    if chart_node is None:
        chart_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    series = chart_node.GetNthPlotSeriesNode(0)
    table = series.GetTableNode() if series is not None else None
    if table is None:
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} table")
    table.RemoveAllColumns()
    for column_name, key, unit, description in (
            ("Displacement (mm)", "displacement_mm", "mm", "Top platen displacement along the axis"),
            ("Force (N)", "force_n", "N", "Compressive reaction force on the top platen")):
        column = vtk.vtkDoubleArray()
        column.SetName(column_name)
        for point in points:
            column.InsertNextValue(float(point[key]))
        table.AddColumn(column)
        table.SetColumnUnitLabel(column_name, unit)
        table.SetColumnDescription(column_name, description)
    if series is None:
        series = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} series")
        chart_node.AddAndObservePlotSeriesNodeID(series.GetID())
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName("Displacement (mm)")
    series.SetYColumnName("Force (N)")
    series.SetPlotType(series.PlotTypeScatter)
    chart_node.SetXAxisTitle("Displacement (mm)")
    chart_node.SetYAxisTitle("Force (N)")
    return chart_node


def run_fe(input_volume_node, calibration_table_node, level: str, options=None, *,
           seeds_node=None, labels_node=None, sex=None, table_node=None, model_node=None,
           chart_node=None, color_by: str = "effective_strain") -> dict:
    """Analyse one level of the scene's CT (``boneqct.fe.pipeline.analyze_fe``) and write the
    results into the scene.

    The body of ``level`` is delineated from its seed in ``seeds_node`` (markups points named
    by level) or from ``labels_node`` (vertebra label map volume, or segmentation with
    segments named by level; ``options.label_scheme`` numbering, see
    ``QCTBoneDensityLib.labels_from_node``); give exactly one of the two. ``options`` is a
    ``boneqct.fe.options.FEOptions`` (None: the defaults). Returns {"result", "table",
    "model", "chart"}.

    Raises:
        ValueError: no input volume, no calibration, no or both body inputs, a segmentation
            without vertebral levels.
        boneqct.errors.BoneQCTError: from the core (no seed for the level, label absent, body
            not found, ...).
    """
    from boneqct.fe.options import FEOptions
    from boneqct.fe.pipeline import analyze_fe
    from BoneQCTLib.calibration import calibration_from_table_node, has_calibration
    from BoneQCTLib.vertebrae import (
        labels_from_node,
        seeds_from_markups_node,
    )
    from BoneQCTLib.volumes import volume_from_node

    options = options or FEOptions()
    if input_volume_node is None:
        raise ValueError("Select the CT volume.")
    if not has_calibration(calibration_table_node):
        raise ValueError("The finite-element model needs calibrated density: calibrate in the "
                         "QCT Bone Density module and select its calibration table.")
    if seeds_node is None and labels_node is None:
        raise ValueError("Select seed points or a vertebra label map / segmentation.")
    if seeds_node is not None and labels_node is not None:
        raise ValueError("Give either seed points or vertebra labels, not both.")
    seeds = labels = None
    if seeds_node is not None:
        seeds = seeds_from_markups_node(seeds_node)
    else:
        labels = labels_from_node(labels_node, input_volume_node, options.label_scheme)
    result = analyze_fe(volume_from_node(input_volume_node),
                        calibration_from_table_node(calibration_table_node), options,
                        level=level, seeds=seeds, labels=labels, sex=sex)
    return {"result": result, "table": fe_result_to_table_node(result, table_node),
            "model": mesh_to_model_node(result, model_node, color_by=color_by),
            "chart": load_displacement_plot(result, chart_node)}
