"""Finite-element adapters: ``boneqct.fe`` results <-> MRML nodes (no ``qt``/``ctk``).

- the mesh: a ``vtkMRMLModelNode`` holding the ``vtkUnstructuredGrid`` of ``boneqct.fe.vtu``
  (points RAS mm, per-element fields as cell data), coloured by a chosen field;
- the results: a one-row ``vtkMRMLTableNode`` with units and descriptions per column, fe.json
  as the attribute ``BoneQCT.FE.JSON`` (``BoneQCT.FEJSON`` in scenes saved before; read too),
  the exam metadata and a reference to the mesh node;
- the load-displacement curve: a table and a ``vtkMRMLPlotChartNode``;
- the report: fe.json, fe_report.pdf (``write_fe_outputs`` of ``FEResult.from_dict`` of the
  table's document: it needs no model, so it is written alike after a scene reload) and fe.vtu
  (the referenced mesh node's grid).
"""

from __future__ import annotations

from pathlib import Path

import slicer
import vtk

from BoneQCTLib.tables import (
    columns,
    has_document,
    read_document,
    read_exam,
    store_document,
    store_exam_of,
    table_node_or_new,
    write_table,
    yes_no,
)

#: Kind of the document on the results table (attribute ``BoneQCT.FE.JSON``).
FE_DOCUMENT = "FE"
#: Node reference of the results table to the mesh model node (fe.vtu of the report).
REFERENCE_MESH = "BoneQCT.Mesh"
#: Node reference of the results table to its load-displacement chart (reused by a new run).
REFERENCE_CHART = "BoneQCT.LoadDisplacementChart"
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


#: Columns of the one-row results table (the row: the fe.json document) and of the
#: load-displacement table (rows: ``FEResult.curve`` points).
RESULT_COLUMNS = columns("fe_result", {"fragile": lambda doc: yes_no(doc["fragile"], "unknown"),
                                       "converged": lambda doc: yes_no(doc["solver"]["converged"], "unknown")})
CURVE_COLUMNS = columns("fe_curve")


def fe_result_to_table_node(result, table_node=None, name: str = "BoneQCT FE"):
    """Write an ``FEResult`` into a one-row table node (units, descriptions) holding its
    document (``BoneQCT.FE.JSON``)."""
    table_node = table_node_or_new(table_node, name)
    document = result.to_dict()
    write_table(table_node, RESULT_COLUMNS, [document])
    store_document(table_node, FE_DOCUMENT, document)
    return table_node


def fe_document_from_table_node(table_node) -> dict | None:
    """The fe.json document stored in a results table (also under its attribute name of
    scenes saved before, ``BoneQCT.FEJSON``); None when it holds none."""
    return read_document(table_node, FE_DOCUMENT)


def fe_summary_text(table_node) -> str:
    """Strength, criterion, stiffness and fragile flag of a results table (empty if none)."""
    doc = fe_document_from_table_node(table_node)
    if doc is None:
        return ""
    flag = " - FRAGILE BONE STRENGTH" if doc.get("fragile") else ""
    return (f"{doc['level']}: strength {doc['strength_n']:.0f} N ({doc['criterion']}), "
            f"stiffness {doc['stiffness_n_mm']:.0f} N/mm{flag}")


def can_export_fe_report(table_node) -> bool:
    """Whether ``table_node`` holds a finite-element result (all the report needs)."""
    return has_document(table_node, FE_DOCUMENT)


def export_fe_report(folder, table_node, anonymize: bool = False) -> dict[str, Path]:
    """Write fe.json and fe_report.pdf of the result held by ``table_node`` (``FEResult.from_dict``
    of its document, with the exam stored beside it) and fe.vtu (the grid of the mesh node it
    references, when that holds one) into ``folder`` (created if needed); returns the paths by
    key "json", "report" and "vtu".

    Raises:
        ValueError: the table holds no finite-element result.
    """
    from boneqct.fe.vertebra import FEResult, write_fe_outputs
    from boneqct.fe.vtu import write_vtu

    document = fe_document_from_table_node(table_node)
    if document is None:
        raise ValueError("Apply first: the report is written from the results table.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = write_fe_outputs(folder, FEResult.from_dict(document), read_exam(table_node),
                             anonymize=anonymize)
    mesh_node = table_node.GetNodeReference(REFERENCE_MESH)
    if mesh_node is not None and mesh_node.GetMesh() is not None:
        paths["vtu"] = write_vtu(mesh_node.GetMesh(), folder / "fe.vtu")
    return paths


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
    table = table_node_or_new(table, f"{name} table")
    write_table(table, CURVE_COLUMNS, points)
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
    ``BoneQCTLib.vertebrae.labels_from_node``); give exactly one of the two. ``options`` is a
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
    from BoneQCTLib.volumes import patient_age_and_sex, volume_from_node

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
    volume_hu = volume_from_node(input_volume_node)
    age_years, sex = patient_age_and_sex(volume_hu, None, sex)
    result = analyze_fe(volume_hu, calibration_from_table_node(calibration_table_node), options,
                        level=level, seeds=seeds, labels=labels, sex=sex)
    if chart_node is None and table_node is not None:  # the chart of the table's last run
        chart_node = table_node.GetNodeReference(REFERENCE_CHART)
    outputs = {"result": result, "table": fe_result_to_table_node(result, table_node),
               "model": mesh_to_model_node(result, model_node, color_by=color_by),
               "chart": load_displacement_plot(result, chart_node)}
    outputs["table"].SetNodeReferenceID(REFERENCE_MESH, outputs["model"].GetID())
    outputs["table"].SetNodeReferenceID(REFERENCE_CHART, outputs["chart"].GetID())
    store_exam_of(outputs["table"], volume_hu, input_volume_node, age_years, sex)
    return outputs
