"""Spine adapters: scene nodes <-> the core spine pipeline (``boneqct.spine``).

Inputs: seed points from a markups point list (control point labels are level names) or a
vertebra label map from a label map volume node or a segmentation node (read by
``BoneQCTLib.vertebrae``, shared with the finite-element module). Outputs: the per-level
table (``BoneQCTLib.tables``: units and descriptions on every column, the spine.json document
on the table), the ROIs
as a label map (one label per level, named by a colour table) and as a segmentation (one
segment per level, named by level), the ROI centres as a markups point list, and the
reference curve as a plot chart when the result holds one.

Only ``slicer.vtkMRML*``, ``slicer.util`` and ``vtk`` are used (no Qt), so everything here runs
under PyPI's ``slicer-core`` as well as inside Slicer. ``boneqct.spine`` is imported inside the
functions that need it, so this file loads before the core's dependencies are installed.
"""

from __future__ import annotations

import re

import numpy as np
import slicer
import slicer.util
import vtk

from BoneQCTLib.tables import (
    add_column,
    columns,
    document_attribute,
    has_document,
    qc_text,
    read_document,
    read_exam,
    referenced_volume,
    store_document,
    store_exam_of,
    table_node_or_new,
    write_table,
    yes_no,
)
from BoneQCTLib.vertebrae import labels_from_node, level_names, seeds_from_markups_node
from BoneQCTLib.volumes import labelmap_to_node, patient_age_and_sex, volume_from_node
from QCTBoneDensityLib.fracture import fractures_to_scene

#: Attributes of the spine table node holding the diagnostic summary.
ATTRIBUTE_SPINE_MEAN_BMD_MG_CM3 = "BoneQCT.Spine.MeanBMDMgCm3"
ATTRIBUTE_SPINE_MEAN_HU = "BoneQCT.Spine.MeanHU"
ATTRIBUTE_SPINE_LEVELS_USED = "BoneQCT.Spine.LevelsUsed"
ATTRIBUTE_SPINE_CATEGORY = "BoneQCT.Spine.Category"
ATTRIBUTE_SPINE_T_SCORE = "BoneQCT.Spine.TScore"
ATTRIBUTE_SPINE_Z_SCORE = "BoneQCT.Spine.ZScore"
ATTRIBUTE_SPINE_CALIBRATED = "BoneQCT.Spine.Calibrated"
ATTRIBUTE_SPINE_MATERIAL = "BoneQCT.Spine.Material"
ATTRIBUTE_SPINE_WARNINGS = "BoneQCT.Spine.Warnings"
#: Document kind of a spine table: ``SpineResult.to_dict()`` (spine.json), saved with the scene.
SPINE_KIND = "Spine"
ATTRIBUTE_SPINE_JSON = document_attribute(SPINE_KIND)
#: Node reference role from the spine table to the reference-curve chart.
REFERENCE_CHART_ROLE = "BoneQCT.ReferenceChart"
#: Node reference roles from the spine table to the CT volume it was measured on and to its ROI
#: label map: with the table's document, what the report is written from (saved with the scene).
CT_VOLUME_ROLE = "BoneQCT.CT"
ROI_LABELMAP_ROLE = "BoneQCT.ROIs"


def spine_columns(result) -> tuple:
    """The columns of the spine table of ``result``, one row per level (a ``LevelResult``);
    missing values are NaN (numbers) or empty (text)."""
    def used(lv) -> str:
        if lv.level in result.levels_used:
            return "yes"
        return "excluded" if getattr(lv, "excluded", False) else ""

    return columns("spine_levels", {
        "voxels": lambda lv: lv.n_voxels or 0, "cement": lambda lv: yes_no(lv.cement_augmentation),
        "qc": lambda lv: qc_text(lv.qc), "used": used})


# ----------------------------------------------------------------------------- outputs

def spine_result_to_table_node(result, table_node=None, name: str = "BoneQCT spine"):
    """Write a ``SpineResult`` into a table node: one row per level, summary as attributes.

    Columns: :func:`spine_columns`, the last "Used" (in the diagnostic mean / excluded). Every
    column has a unit label and a description. Missing values (e.g. BMD when
    uncalibrated) are NaN in number columns and empty in text columns. The node attributes
    ``BoneQCT.Spine.*`` hold the mean BMD, levels used, category, T- and Z-score (empty when
    absent), and ``BoneQCT.Spine.JSON`` the whole spine.json document.
    """
    table_node = table_node_or_new(table_node, name)
    was_modifying = table_node.StartModify()
    write_table(table_node, spine_columns(result), result.levels)
    calibration = getattr(result, "calibration", None)

    def number(value):
        return "" if value is None else repr(float(value))

    table_node.SetAttribute(ATTRIBUTE_SPINE_MEAN_BMD_MG_CM3, number(result.mean_bmd_mg_cm3))
    table_node.SetAttribute(ATTRIBUTE_SPINE_MEAN_HU, number(getattr(result, "mean_hu", None)))
    table_node.SetAttribute(ATTRIBUTE_SPINE_LEVELS_USED, ",".join(result.levels_used))
    table_node.SetAttribute(ATTRIBUTE_SPINE_CATEGORY, result.category or "")
    table_node.SetAttribute(ATTRIBUTE_SPINE_T_SCORE, number(result.t_score))
    table_node.SetAttribute(ATTRIBUTE_SPINE_Z_SCORE, number(result.z_score))
    table_node.SetAttribute(ATTRIBUTE_SPINE_CALIBRATED, "true" if result.calibrated else "false")
    table_node.SetAttribute(ATTRIBUTE_SPINE_MATERIAL, "" if calibration is None else str(calibration.material))
    table_node.SetAttribute(ATTRIBUTE_SPINE_WARNINGS, "\n".join(str(w) for w in result.warnings))
    store_document(table_node, SPINE_KIND, result.to_dict())
    table_node.EndModify(was_modifying)
    return table_node


def has_spine_result(table_node) -> bool:
    """Whether ``table_node`` holds a result written by :func:`spine_result_to_table_node`."""
    return has_document(table_node, SPINE_KIND)


def spine_result_from_table_node(table_node):
    """The ``SpineResult`` stored on a spine table (rebuilt from its document; also after the
    scene was saved and reloaded).

    Raises:
        ValueError: the table holds no spine result.
    """
    if not has_spine_result(table_node):
        raise ValueError("The selected table holds no spine measurement: measure the spine first.")
    from boneqct.spine.pipeline import SpineResult

    return SpineResult.from_dict(read_document(table_node, SPINE_KIND))


def spine_summary_text(table_node) -> str:
    """One or two lines summarising the spine table (empty when it holds no result)."""
    if not has_spine_result(table_node):
        return ""
    used = table_node.GetAttribute(ATTRIBUTE_SPINE_LEVELS_USED) or "-"
    mean_bmd = table_node.GetAttribute(ATTRIBUTE_SPINE_MEAN_BMD_MG_CM3)
    if mean_bmd:
        material = table_node.GetAttribute(ATTRIBUTE_SPINE_MATERIAL)
        text = f"Mean BMD of {used}: {float(mean_bmd):.1f} mg/cm3 {material}".rstrip()
        category = table_node.GetAttribute(ATTRIBUTE_SPINE_CATEGORY)
        if category:
            text += f", category (ACR): {category}"
    else:
        mean_hu = table_node.GetAttribute(ATTRIBUTE_SPINE_MEAN_HU)
        text = f"Uncalibrated: mean of {used}: {float(mean_hu):.1f} HU" if mean_hu else "Uncalibrated"
    for attribute, name in ((ATTRIBUTE_SPINE_T_SCORE, "T-score"), (ATTRIBUTE_SPINE_Z_SCORE, "Z-score")):
        value = table_node.GetAttribute(attribute)
        if value:
            text += f", {name} {float(value):.2f}"
    warnings = table_node.GetAttribute(ATTRIBUTE_SPINE_WARNINGS)
    if warnings:
        text += "\nWarnings: " + warnings.replace("\n", "; ")
    return text


def roi_labelmap_to_node(volume_hu, result, node=None, name: str = "BoneQCT spine ROIs"):
    """The ROIs of ``result`` as a label map volume node on the CT grid.

    Label n + 1 is the n-th measured level (``boneqct.spine.pipeline.roi_label_map``); the node's
    colour table names each label by its level. ``node`` is overwritten when given.
    """
    from boneqct.spine.pipeline import roi_label_map

    names = {0: "Background", **{n + 1: lv.level for n, lv in enumerate(result.measured_levels)}}
    return labelmap_to_node(roi_label_map(volume_hu, result), names, node, name=name,
                            colors_attribute="BoneQCT.SpineROIColors",
                            quantity="Spine ROI labels (label n = n-th level)")


def roi_segmentation_from_labelmap(labelmap_node, segmentation_node=None,
                                   name: str = "BoneQCT spine ROIs"):
    """Import a ROI label map (from :func:`roi_labelmap_to_node`) into a segmentation node.

    One segment per level, named by the level, with the label map's colours; ``segmentation_node``
    is emptied and reused when given.
    """
    if segmentation_node is None:
        segmentation_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segmentation_node.CreateDefaultDisplayNodes()
    segmentation_node.GetSegmentation().RemoveAllSegments()
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(labelmap_node)
    if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            labelmap_node, segmentation_node):
        raise ValueError("The ROI label map could not be imported into a segmentation.")
    display = labelmap_node.GetDisplayNode()
    color_node = display.GetColorNode() if display is not None else None
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        value = segment.GetLabelValue()
        if color_node is not None and 0 < value < color_node.GetNumberOfColors():
            segment.SetName(color_node.GetColorName(value))
            rgba = [0.0, 0.0, 0.0, 0.0]
            color_node.GetColor(value, rgba)
            segment.SetColor(rgba[:3])
    return segmentation_node


def roi_centers_to_markups(result, node=None, name: str = "BoneQCT spine ROI centres"):
    """The ROI centres (RAS mm) as a markups point list, one control point per level, locked."""
    if node is None:
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
        node.CreateDefaultDisplayNodes()
    was_modifying = node.StartModify()
    node.RemoveAllControlPoints()
    for level in result.measured_levels:
        index = node.AddControlPoint(vtk.vtkVector3d(*map(float, level.roi_center_ras_mm)), level.level)
        node.SetNthControlPointLocked(index, True)
        node.SetNthControlPointDescription(index, f"ROI centre of {level.level} (RAS mm)")
    node.EndModify(was_modifying)
    return node


def reference_curve(result) -> dict | None:
    """``{"age_years", "mean_mg_cm3", "sd_mg_cm3"}`` lists from ``result.reference``, or None.

    Reads the pipeline's ``reference["curve"]`` (keys ``age_years``, ``mean``, ``sd``) or the
    same lists at the top level of ``reference`` (``mean_mg_cm3``, ``sd_mg_cm3``).
    """
    reference = getattr(result, "reference", None) or {}
    curve = reference.get("curve") if isinstance(reference.get("curve"), dict) else reference
    ages = curve.get("age_years")
    means = curve.get("mean_mg_cm3", curve.get("mean"))
    sds = curve.get("sd_mg_cm3", curve.get("sd"))
    if not isinstance(ages, (list, tuple, np.ndarray)) or means is None or len(ages) == 0:
        return None
    if len(means) != len(ages) or (sds is not None and len(sds) != len(ages)):
        return None
    return {"age_years": [float(a) for a in ages], "mean_mg_cm3": [float(m) for m in means],
            "sd_mg_cm3": None if sds is None else [float(s) for s in sds]}


def _patient_point(result) -> tuple[float, float] | None:
    reference = getattr(result, "reference", None) or {}
    patient = reference.get("patient") if isinstance(reference.get("patient"), dict) else {}
    age = patient.get("age_years", reference.get("patient_age_years", reference.get("age_years")))
    if isinstance(age, (list, tuple, np.ndarray)):
        age = None
    value = patient.get("bmd_mg_cm3", result.mean_bmd_mg_cm3)
    if age is None or value is None:
        return None
    return float(age), float(value)


def _series(name: str, table_node, x_column: str, y_column: str, color, line=True):
    series = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name)
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetXColumnName(x_column)
    series.SetYColumnName(y_column)
    series.SetPlotType(series.PlotTypeScatter)
    series.SetColor(*color)
    if line:
        series.SetMarkerStyle(series.MarkerStyleNone)
    else:
        series.SetLineStyle(series.LineStyleNone)
        series.SetMarkerStyle(series.MarkerStyleCircle)
        series.SetMarkerSize(12)
    return series


def _double_column(name: str, values, unit: str, description: str, table_node) -> None:
    add_column(table_node, name, vtk.vtkDoubleArray, [float(v) for v in values], unit, description)


def _remove_chart(chart_node) -> None:
    """Remove a chart made by :func:`reference_plot`, with its series and tables."""
    scene = chart_node.GetScene()
    if scene is None:
        return
    all_series = [chart_node.GetNthPlotSeriesNode(i) for i in range(chart_node.GetNumberOfPlotSeriesNodes())]
    for series in all_series:
        if series is not None:
            table = series.GetTableNode()
            if table is not None and table.GetAttribute("BoneQCT.ReferenceCurve") and table.GetScene():
                scene.RemoveNode(table)
            scene.RemoveNode(series)
    scene.RemoveNode(chart_node)


def reference_plot(result, chart_node=None, name: str = "BoneQCT spine reference"):
    """A plot chart of the reference curve (mean and +/- 1 SD by age) with the patient's point.

    Returns the chart node, or None when ``result.reference`` holds no curve (then a given
    ``chart_node`` is removed with its series and tables, so no stale curve stays in the scene).
    The curve is in a table node named "<name> curve" (columns with units and descriptions),
    the patient point in "<name> patient".
    """
    curve = reference_curve(result)
    if curve is None:
        if chart_node is not None:
            _remove_chart(chart_node)
        return None
    if chart_node is not None:
        _remove_chart(chart_node)
    chart_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    curve_table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} curve")
    curve_table.SetAttribute("BoneQCT.ReferenceCurve", "1")
    ages, means, sds = curve["age_years"], curve["mean_mg_cm3"], curve["sd_mg_cm3"]
    _double_column("Age (years)", ages, "years", "Middle of the reference age band", curve_table)
    _double_column("Mean (mg/cm3)", means, "mg/cm3", "Reference mean BMD of the age band", curve_table)
    chart_node.AddAndObservePlotSeriesNodeID(
        _series("Reference mean", curve_table, "Age (years)", "Mean (mg/cm3)", (0.12, 0.31, 0.47)).GetID())
    if sds is not None:
        _double_column("Mean - 1 SD (mg/cm3)", np.subtract(means, sds), "mg/cm3",
                       "Reference mean minus one standard deviation", curve_table)
        _double_column("Mean + 1 SD (mg/cm3)", np.add(means, sds), "mg/cm3",
                       "Reference mean plus one standard deviation", curve_table)
        for column in ("Mean - 1 SD (mg/cm3)", "Mean + 1 SD (mg/cm3)"):
            series = _series(f"Reference {column[5:11]}", curve_table, "Age (years)", column,
                             (0.62, 0.76, 0.90))
            series.SetLineStyle(series.LineStyleDash)
            chart_node.AddAndObservePlotSeriesNodeID(series.GetID())
    point = _patient_point(result)
    if point is not None:
        patient_table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} patient")
        patient_table.SetAttribute("BoneQCT.ReferenceCurve", "1")
        _double_column("Age (years)", [point[0]], "years", "Patient age", patient_table)
        _double_column("BMD (mg/cm3)", [point[1]], "mg/cm3", "Patient's mean spine BMD", patient_table)
        chart_node.AddAndObservePlotSeriesNodeID(
            _series("Patient", patient_table, "Age (years)", "BMD (mg/cm3)", (0.85, 0.15, 0.15),
                    line=False).GetID())
    chart_node.SetTitle("Spine BMD and reference")
    chart_node.SetXAxisTitle("Age (years)")
    chart_node.SetYAxisTitle("BMD (mg/cm3)")
    return chart_node


# ----------------------------------------------------------------------------- whole analysis

def parse_levels(text) -> tuple[str, ...]:
    """Level names from "L1,L2" (or "L1 L2", or a sequence); ValueError for an unknown name."""
    names = re.split(r"[,;\s]+", text.strip()) if isinstance(text, str) else list(text)
    levels, known = [], level_names()
    for name in names:
        if not name:
            continue
        level = str(name).strip().upper()
        if level not in known:
            raise ValueError(f"'{name}' is not a vertebral level; list levels such as L1,L2 "
                             f"(known: {', '.join(known)}).")
        if level not in levels:
            levels.append(level)
    if not levels:
        raise ValueError("List the levels used for the diagnostic mean, e.g. L1,L2.")
    return tuple(levels)


def run_spine(ct_node, calibration_table_node=None, options=None, *, seeds_node=None,
              labels_node=None, age_years: float | None = None, sex: str | None = None,
              reference=None, table_node=None, roi_labelmap_node=None,
              roi_segmentation_node=None, roi_centers_node=None) -> dict:
    """Read the nodes, run ``boneqct.spine.pipeline.analyze_spine``, write the result nodes.

    Args:
        ct_node: CT volume node (HU).
        calibration_table_node: a calibration table (``calibration_to_table_node``); None
            measures HU only (no BMD, category or cement flag).
        options: a ``boneqct.spine.options.SpineOptions`` (levels of the diagnostic mean,
            exclusions, ROI, cement threshold, label scheme); None: the defaults.
        seeds_node: markups point list with one point per level (labels = level names); used
            when given, else ``labels_node`` (label map volume or segmentation node). Levels
            T11-L5 are measured (BMD and fractures); T4-T10 are assessed for fractures only
            (``boneqct.spine.vfa.measure_thoracic_levels``), graded together with T11-L5.
        age_years, sex ("F"/"M"), reference (``boneqct.reference.Reference``): for T/Z-scores.
        table_node, roi_labelmap_node, roi_segmentation_node, roi_centers_node: output nodes
            to overwrite (None creates them).

    Returns:
        ``{"result": SpineResult, "volume": the CT as a core Volume, "table", "roi_labelmap",
        "roi_segmentation", "roi_centers", "chart" (None without a reference curve),
        "fracture_table" and "height_lines" (``QCTBoneDensityLib.fracture.fractures_to_scene``:
        T4-L5), "thoracic" (the ``VFAResult`` of T4-T10, None without them)}``. The
        table references the CT and the ROI label map and holds the exam metadata the report
        shows (series, age, sex), so the report is written from the table alone
        (:func:`export_spine_report`), also after the scene was saved and reloaded.
    """
    if ct_node is None:
        raise ValueError("Select the CT volume to measure.")
    if seeds_node is None and labels_node is None:
        raise ValueError("Select seed points (one per level) or a vertebra label map / segmentation.")
    from boneqct.spine.levels import LEVEL_NAMES, VFA_LEVEL_NAMES
    from boneqct.spine.options import SpineOptions
    from boneqct.spine.pipeline import analyze_spine
    from boneqct.spine.vfa import grade_thoracic_levels, measure_thoracic_levels, thoracic_heights
    from BoneQCTLib.calibration import calibration_from_table_node

    volume_hu = volume_from_node(ct_node)
    calibration = None if calibration_table_node is None else calibration_from_table_node(calibration_table_node)
    options = SpineOptions() if options is None else options
    inputs = ({"seeds": seeds_from_markups_node(seeds_node, VFA_LEVEL_NAMES)}
              if seeds_node is not None else
              {"labels": labels_from_node(labels_node, ct_node, options.label_scheme, VFA_LEVEL_NAMES)})
    spine_inputs = dict(inputs)
    if "seeds" in inputs:
        spine_inputs["seeds"] = {level: p for level, p in inputs["seeds"].items() if level in LEVEL_NAMES}
        if not spine_inputs["seeds"]:
            raise ValueError(f"The seed points name only thoracic levels ({', '.join(inputs['seeds'])}): "
                             "the spine measurement needs a point in at least one of "
                             f"{', '.join(LEVEL_NAMES)} (BMD is measured there; T4-T10 are "
                             "assessed for fractures only).")
    age_years, sex = patient_age_and_sex(volume_hu, age_years, sex)
    # heights first, grades together: T10 and T11 each see the other in their crush ratios
    thoracic = measure_thoracic_levels(volume_hu, **inputs, label_scheme=options.label_scheme)
    result = analyze_spine(volume_hu, calibration, options, **spine_inputs, reference=reference,
                           age_years=None if age_years is None else float(age_years), sex=sex,
                           fracture_neighbours=thoracic_heights(thoracic))
    fractures = {lv.level: lv.fracture for lv in result.levels}
    if thoracic is not None:  # cranial first: T4-T10, then the spine's levels
        thoracic = grade_thoracic_levels(thoracic, fractures)
        fractures = {**{lv["level"]: lv["fracture"] for lv in thoracic.levels}, **fractures}
    name = ct_node.GetName()
    table = spine_result_to_table_node(result, table_node, name=f"{name} spine")
    labelmap = roi_labelmap_to_node(volume_hu, result, roi_labelmap_node, name=f"{name} spine ROIs")
    segmentation = roi_segmentation_from_labelmap(labelmap, roi_segmentation_node,
                                                  name=f"{name} spine ROI segments")
    centers = roi_centers_to_markups(result, roi_centers_node, name=f"{name} spine ROI centres")
    chart = reference_plot(result, table.GetNodeReference(REFERENCE_CHART_ROLE),
                           name=f"{name} spine reference")
    table.SetNodeReferenceID(REFERENCE_CHART_ROLE, None if chart is None else chart.GetID())
    table.SetNodeReferenceID(CT_VOLUME_ROLE, ct_node.GetID())
    table.SetNodeReferenceID(ROI_LABELMAP_ROLE, labelmap.GetID())
    store_exam_of(table, volume_hu, ct_node, age_years, sex)
    fracture = fractures_to_scene(table, fractures, f"{name} spine")
    return {"result": result, "volume": volume_hu, "table": table, "roi_labelmap": labelmap,
            "roi_segmentation": segmentation, "roi_centers": centers, "chart": chart,
            "fracture_table": fracture["table"], "height_lines": fracture["lines"],
            "thoracic": thoracic}


# ----------------------------------------------------------------------------- report

def can_export_spine_report(table_node) -> bool:
    """Whether ``table_node`` holds a spine result and references its CT and ROI label map
    (what :func:`export_spine_report` needs)."""
    return has_spine_result(table_node) and all(
        referenced_volume(table_node, role) is not None for role in (CT_VOLUME_ROLE, ROI_LABELMAP_ROLE))


def _check_roi_labels(roi_labels, volume_hu, result) -> None:
    """ValueError unless ``roi_labels`` holds the ROIs of ``result`` on the CT grid: label n + 1
    has as many voxels as the n-th measured level (a label map overwritten by a later
    measurement does not)."""
    if roi_labels.array_kji.shape != volume_hu.array_kji.shape:
        raise ValueError("The ROI label map is not on the grid of the CT volume: measure the spine again.")
    counts = np.bincount(roi_labels.array_kji.ravel().astype(np.int64),
                         minlength=len(result.measured_levels) + 1)
    expected = [0 if lv.n_voxels is None else int(lv.n_voxels) for lv in result.measured_levels]
    if counts[1:].tolist() != expected:
        raise ValueError("The ROI label map no longer holds the ROIs of this table's measurement "
                         "(it was overwritten by another measurement): measure the spine again.")


def export_spine_report(path, table_node, anonymize: bool = False):
    """Write the spine report PDF of the measurement held by ``table_node``; returns its path.

    Written from the table alone: its document (``SpineResult.from_dict``), its exam metadata,
    and the CT volume and ROI label map it references (see :func:`run_spine`), so a saved and
    reloaded scene gives the same report.

    Raises:
        ValueError: the table holds no spine result, its CT or ROI label map is gone, or the
            label map no longer holds this measurement's ROIs.
    """
    result = spine_result_from_table_node(table_node)
    if not can_export_spine_report(table_node):
        raise ValueError("The spine table no longer references its CT volume and ROI label map "
                         "(deleted from the scene?): measure the spine again.")
    from boneqct.spine.report import write_spine_report

    volume_hu = volume_from_node(referenced_volume(table_node, CT_VOLUME_ROLE))
    roi_labels = volume_from_node(referenced_volume(table_node, ROI_LABELMAP_ROLE))
    _check_roi_labels(roi_labels, volume_hu, result)
    return write_spine_report(path, result, volume_hu, roi_labels, read_exam(table_node),
                              anonymize=anonymize)
